"""`make paper` (pipeline.tools.paper build) runs the distribution-shift stages when the bundle ships
the first seed's weights of every variant (what `paper import` ships: seed<first>/data/models/<v>.pt),
and says in one line why it leaves them out when it does not (results/paper/: logits only)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from eeoffload.layout import ModelSpec
from eeoffload.model import build_model
from pipeline.core import registry as R
from pipeline.tools import paper
from pipeline.tools.scratch import scratch_env
from tests.conftest import ROOT, TINY_PARAMS
from tests.test_paper_project import EXITS, tiny_bundle

SHIFT_STAGES = {"validate", "prepare", "shift", "shift_eval"}


def add_weights(bundle: Path, variants: tuple[str, ...] = tuple(EXITS)) -> None:
    """Untrained weights of ``variants`` where `paper import` puts the first seed's (the forward passes
    cost the same as a trained network's)."""
    params = yaml.safe_load((bundle / "params.yaml").read_text())
    for variant in variants:
        branches = params["variants"][variant]["branches"]
        torch.manual_seed(0)
        model = build_model(ModelSpec(), branches)
        out = bundle / "seed0" / "data" / "models" / f"{variant}.pt"
        out.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": model.state_dict(), "branches": branches}, out)


def test_the_shipped_bundle_has_no_weights_and_make_paper_says_why_shift_is_left_out() -> None:
    seeds = paper.seeds_of(paper.BUNDLE)
    assert paper.shipped_weights(paper.BUNDLE, seeds) == {}
    line = paper.shift_line(paper.BUNDLE, seeds, {})
    assert line.startswith("shift: stages shift and shift_eval left out:") and "\n" not in line
    spec = paper.paper_dvc_yaml(ROOT, seeds, certify=False)
    assert not SHIFT_STAGES & set(spec["stages"]) and str(R.SHIFT) not in spec["stages"]["report"]["deps"]


def test_weights_of_every_variant_bring_the_shift_stages_in(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    tiny_bundle(bundle)
    add_weights(bundle, ("one_branch",))  # one variant's weights only: shift cannot run on every variant
    assert paper.shipped_weights(bundle, [0]) == {}
    add_weights(bundle)
    assert set(paper.shipped_weights(bundle, [0])) == set(EXITS)
    spec = paper.paper_dvc_yaml(ROOT, [0], certify=False, shift=True)
    assert SHIFT_STAGES <= set(spec["stages"]) and "train" not in spec["stages"]
    assert str(R.SHIFT) in spec["stages"]["report"]["deps"]
    assert paper.project_params(bundle, [0, 1], {}, shift=True)["shift"]["seeds"] == [0]


def test_make_paper_runs_shift_on_a_bundle_with_weights(tmp_path: Path, tiny_zip: Path) -> None:
    """A tiny bundle with weights, its data section pointing at the tiny archive: `paper build` runs
    validate, prepare, shift and shift_eval, and the report has the shift section."""
    bundle, dest = tmp_path / "bundle", tmp_path / "build" / "paper"
    tiny_bundle(bundle)
    add_weights(bundle)
    params = yaml.safe_load((bundle / "params.yaml").read_text())
    params["data"] = {**params["data"], **TINY_PARAMS["data"], "archive": str(tiny_zip)}
    (bundle / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    small = ["shift.corruptions=[contrast]", "shift.severities=[1,5]", "shift.max_images=40", "shift.splits=3",
             "shift.monitor_streams=2", "shift.batch_size=20", "shift.resamples=3", "evaluate.batch_size=64",
             "evaluate.resamples=5"]
    env = scratch_env(ROOT)
    env.pop("CIFAR10_ARCHIVE", None)
    built = subprocess.run([sys.executable, "-m", "pipeline", "paper", "build", "--bundle", str(bundle), "--dest",
                            str(dest), *[a for s in small for a in ("-S", s)]], cwd=ROOT, env=env, text=True,
                           capture_output=True, timeout=900)
    log = (tmp_path / "build" / "paper.log")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:] + (log.read_text()[-3000:] if log.is_file() else "")
    assert "shift: stages shift and shift_eval run on seed 0's weights (one_branch, two_branch)" in built.stdout
    assert SHIFT_STAGES <= set(yaml.safe_load((dest / "dvc.yaml").read_text())["stages"])
    for variant in EXITS:
        summary = json.loads((dest / R.shift_dir(variant, 0) / "summary.json").read_text())
        assert {(row["corruption"], row["severity"]) for row in summary["table"]} >= {("contrast", 1), ("contrast", 5)}
    assert "data/models.dvc" in subprocess.run(["git", "ls-files"], cwd=dest, text=True, capture_output=True).stdout
    html = (dest / "reports" / "index.html").read_text()
    assert "Not run here: stages shift and shift_eval" not in html and "one_branch" in html
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=dest, env=scratch_env(dest),
                            text=True, capture_output=True)
    assert status.returncode == 0 and json.loads(status.stdout) == {}, status.stdout + status.stderr


def test_the_search_bundle_ships_seed0_weights_and_no_shift_leaves_the_stages_out() -> None:
    """results/b32_none_sgd/ ships seed 0's weights of both variants (the shift table of the README
    comes from them); ``paper build --no-shift`` (make paper SHIFT=0) leaves the stages out with one line."""
    bundle = ROOT / "results" / "b32_none_sgd"
    seeds = paper.seeds_of(bundle)
    weights = paper.shipped_weights(bundle, seeds)
    assert set(weights) == {"one_branch", "two_branch"}
    assert (bundle / "analysis" / "reports" / "shift" / "one_branch" / "seed0" / "summary.json").is_file()
    assert not list(bundle.rglob(".gitignore"))  # ship drops DVC's, or git would leave the analysis out
    line = paper.shift_line(bundle, seeds, weights, asked=False)
    assert line.startswith("shift: stages shift and shift_eval left out (--no-shift") and "\n" not in line
    proc = subprocess.run([sys.executable, "-m", "pipeline", "paper", "build", "--help"], cwd=ROOT,
                          env=scratch_env(ROOT), text=True, capture_output=True, timeout=120)
    assert proc.returncode == 0 and "--no-shift" in proc.stdout
