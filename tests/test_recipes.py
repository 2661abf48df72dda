"""Named recipes (pipeline.tools.recipes, configs/recipes/): the names every entry point takes, the one-line
error for an unknown one, where each recipe's bundle lives."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core.overlay import flatten, load_overlay
from pipeline.tools.recipes import RECIPES_DIR, RecipeError, bundle_dir, recipe_names, recipe_overlay, recipe_settings
from pipeline.tools.scratch import scratch_env

ROOT = Path(__file__).resolve().parent.parent


def test_the_recipes_and_their_bundles() -> None:
    assert {"branchynet", "authors"} <= set(recipe_names())
    assert "search" not in recipe_names()
    assert bundle_dir("branchynet") == ROOT / "results" / "paper"
    assert bundle_dir("authors") == ROOT / "results" / "authors"
    assert recipe_settings("authors")["model.arch"] == "alexnet224"
    assert recipe_overlay("branchynet") == load_overlay(RECIPES_DIR / "branchynet.yaml")


def test_an_unknown_recipe_is_one_line_naming_the_recipes() -> None:
    with pytest.raises(RecipeError, match="recipe 'alexnet' does not exist; allowed: authors, b32_none_sgd, branchynet"):
        recipe_overlay("alexnet")
    for cmd in ([sys.executable, "-m", "pipeline", "recipes", "alexnet"],
                [sys.executable, "-m", "pipeline", "paper", "build", "--recipe", "alexnet"]):
        proc = subprocess.run(cmd, cwd=ROOT, env=scratch_env(ROOT), text=True, capture_output=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "recipe 'alexnet' does not exist; allowed: authors, b32_none_sgd, branchynet" in lines[0]


def test_the_printed_arguments_apply_the_recipe_through_a_shell() -> None:
    """`make run RECIPE=...` evals the printed -S arguments: the shell must give DVC one argument per
    setting, lists included."""
    out = subprocess.run([sys.executable, "-m", "pipeline", "recipes", "authors"], cwd=ROOT, env=scratch_env(ROOT),
                         text=True, capture_output=True, timeout=120, check=True).stdout
    args = shlex.split(out)
    settings = dict(a.split("=", 1) for a in args[1::2])
    assert args[::2] == ["-S"] * len(settings)
    assert set(settings) == set(flatten(recipe_overlay("authors")))
    assert settings["variants.two_branch.branches"] == "[pool1, pool2]"


def test_a_recipe_without_a_bundle_says_which_bundles_exist() -> None:
    proc = subprocess.run([sys.executable, "-m", "pipeline", "paper", "build", "--recipe", "authors"], cwd=ROOT,
                          env=scratch_env(ROOT), text=True, capture_output=True, timeout=120)
    assert proc.returncode == 2 and "has no shipped bundle yet (results/authors); bundles: b32_none_sgd, paper" in proc.stderr
