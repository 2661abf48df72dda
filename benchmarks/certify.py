"""Stage certify's wall time at the default settings, on full-size synthetic logits.

    python -m benchmarks.certify [--variant one_branch two_branch] [--keep DIR]

Writes a scratch project (params.yaml of this checkout, data/logits/<variant>/seed0.parquet with
3,000 val + 7,000 test synthetic samples, over-confident side branches) and runs
``python -m pipeline certify <variant> 0`` there for every variant (as ``dvc repro`` does for each
seed): 200 splits x every method x three targets x both procedures by default. Goal: what the stage
adds to ``dvc repro`` per training seed (all variants together) <= 60 s on this project's 2-core
machine.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml

from benchmarks import ROOT, figure, note, timed_stage
from pipeline.core import registry
from tests.synthetic_logits import synthetic_logits_frame

BENCH = "certify"
GOAL_S = 60.0
N_VAL, N_TEST, N_CLASSES = 3000, 7000, 10


def write_project(folder: Path, variant: str, n_exits: int) -> None:
    """params.yaml and one run's logits (seed 0: the certify stage runs per variant x seed)."""
    shutil.copy(ROOT / "params.yaml", folder / "params.yaml")
    path = folder / registry.logits_path(variant, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    synthetic_logits_frame(N_VAL, N_TEST, n_exits, seed=0).to_parquet(path, index=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.certify")
    parser.add_argument("--variant", nargs="+", default=None, help="default: every variant of params.yaml")
    parser.add_argument("--keep", type=Path, default=None, help="scratch folder to keep (default: a temporary one)")
    args = parser.parse_args(list(argv or []))
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    variants = args.variant or list(params["variants"])
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-certify-"))
    folder.mkdir(parents=True, exist_ok=True)
    c = params["certify"]
    try:
        total = 0.0
        for variant in variants:
            n_exits = len(params["variants"][variant]["branches"]) + 1
            write_project(folder, variant, n_exits)
            timed = timed_stage(BENCH, ["certify", variant, "0"], folder, f"<= {GOAL_S:.0f} s", "certify stage")
            if timed is None:
                return 1
            seconds, _ = timed
            total += seconds
            note(BENCH, f"{variant}: {seconds:.1f} s ({n_exits} exits, {N_VAL + N_TEST} samples, {c['splits']} "
                        f"splits, {len(params['calibration']['methods'])} methods, {len(c['target_accuracy'])} "
                        f"targets, {len(c['procedures'])} procedures)")
        figure(BENCH, f"certify stage wall time, one seed of every variant as in dvc repro ({', '.join(variants)}; "
                      f"full-size synthetic logits): {total:.1f} s", f"<= {GOAL_S:.0f} s", total <= GOAL_S)
        return 0
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)

if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
