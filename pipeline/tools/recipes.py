"""Named training recipes (configs/recipes/<name>.yaml): params overlays that say how the network is
built and trained, and where each recipe's shipped results bundle lives.

    python -m pipeline recipes                # the recipes, one line each
    python -m pipeline recipes NAME           # `dvc exp run -S ...` arguments (shell-quoted: eval them)

``make run RECIPE=NAME``, ``make flow RECIPE=NAME``, ``make sweep RECIPE=NAME`` and ``make paper
RECIPE=NAME`` take a name from this folder; an unknown name is one line listing the recipes
(exit status 2). ``branchynet`` is params.yaml as it is (its bundle: results/paper/).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from pipeline.core.overlay import flatten, load_overlay, set_args

ROOT = Path(__file__).resolve().parents[2]
RECIPES_DIR = ROOT / "configs" / "recipes"
#: configs/recipes/ files that are not recipes: the search's definition.
NOT_RECIPES = ("search",)
#: The recipe of params.yaml as it is, whose bundle predates the per-recipe folders.
DEFAULT_RECIPE = "branchynet"


class RecipeError(ValueError):
    """An unknown recipe name."""


def recipe_names(folder: Path = RECIPES_DIR) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml") if p.stem not in NOT_RECIPES)


def recipe_overlay(name: str, folder: Path = RECIPES_DIR) -> dict[str, Any]:
    """The params overlay of recipe ``name``; RecipeError naming the recipes if there is none."""
    if name not in recipe_names(folder):
        raise RecipeError(f"recipe {name!r} does not exist; allowed: {', '.join(recipe_names(folder))} "
                          f"(files in {folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder})")
    return load_overlay(folder / f"{name}.yaml")


def recipe_settings(name: str) -> dict[str, Any]:
    """The recipe as flat ``{section.key: value}`` settings (``dvc exp run -S``)."""
    return flatten(recipe_overlay(name))


def bundle_dir(name: str) -> Path:
    """Where recipe ``name``'s shipped results bundle lives: results/paper/ for the default recipe,
    results/<name>/ for the others."""
    recipe_overlay(name)  # the name must exist
    return ROOT / "results" / ("paper" if name == DEFAULT_RECIPE else name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline recipes", description=__doc__.splitlines()[0])
    ap.add_argument("name", nargs="?", help="a recipe: print its `dvc exp run -S` arguments (default: list them)")
    name = ap.parse_args(argv).name
    if name is None:
        for name in recipe_names():
            first = (RECIPES_DIR / f"{name}.yaml").read_text().splitlines()[0].lstrip("# ")
            print(f"{name:12s} {first}")
        return 0
    try:
        print(" ".join(shlex.quote(a) for a in set_args(recipe_overlay(name))))
    except RecipeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
