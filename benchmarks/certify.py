"""Stage certify's wall time at the default settings, on full-size synthetic logits.

    python -m benchmarks.certify [--variant one_branch two_branch] [--keep DIR]

Writes a scratch project (params.yaml of this checkout, data/logits/<variant>.parquet with
3,000 val + 7,000 test synthetic samples, over-confident side branches) and runs
``python -m pipeline.certify <variant>`` there for every variant (as ``dvc repro`` does): 200 splits
x every method x three targets x both procedures by default. Goal: what the stage adds to
``dvc repro`` (all variants together) <= 60 s on this project's 2-core machine.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from benchmarks import ROOT, figure, note, run_python

BENCH = "certify"
GOAL_S = 60.0
N_VAL, N_TEST, N_CLASSES = 3000, 7000, 10


def synthetic_logits_frame(n_val: int, n_test: int, n_exits: int, seed: int,
                           n_classes: int = N_CLASSES) -> pd.DataFrame:
    """A logits table (docs/interfaces.md) whose exits get better with depth; the side branches'
    logits are scaled up (x1.8), i.e. over-confident as in the paper's Fig. 2."""
    rng = np.random.default_rng(seed)
    n = n_val + n_test
    labels = rng.integers(0, n_classes, n)
    rows = []
    for k in range(n_exits):
        z = rng.normal(0, 1.0, size=(n, n_classes))
        z[np.arange(n), labels] += 0.8 + 1.2 * k / max(n_exits - 1, 1) + rng.normal(0, 1.0, n)
        z *= 1.8 if k < n_exits - 1 else 1.1
        frame = pd.DataFrame(z.astype(np.float32), columns=[f"logit_{c}" for c in range(n_classes)])
        frame.insert(0, "exit", np.int64(k + 1))
        frame.insert(0, "label", labels.astype(np.int64))
        frame.insert(0, "split", np.where(np.arange(n) < n_val, "val", "test"))
        frame.insert(0, "sample_id", np.arange(n, dtype=np.int64))
        rows.append(frame)
    return pd.concat(rows, ignore_index=True)


def write_project(folder: Path, variant: str, n_exits: int) -> None:
    shutil.copy(ROOT / "params.yaml", folder / "params.yaml")
    (folder / "data/logits").mkdir(parents=True, exist_ok=True)
    synthetic_logits_frame(N_VAL, N_TEST, n_exits, seed=0).to_parquet(folder / f"data/logits/{variant}.parquet",
                                                                      index=False)


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
            start = time.perf_counter()
            proc = run_python(["-m", "pipeline.certify", variant], cwd=folder)
            seconds = time.perf_counter() - start
            if proc.returncode != 0:
                figure(BENCH, f"certify stage FAILED: {proc.stderr.strip()[-300:]}", f"<= {GOAL_S:.0f} s", False)
                return 1
            total += seconds
            note(BENCH, f"{variant}: {seconds:.1f} s ({n_exits} exits, {N_VAL + N_TEST} samples, {c['splits']} "
                        f"splits, {len(params['calibration']['methods'])} methods, {len(c['target_accuracy'])} "
                        f"targets, {len(c['procedures'])} procedures)")
        figure(BENCH, f"certify stage wall time, every variant as in dvc repro ({', '.join(variants)}; full-size "
                      f"synthetic logits): {total:.1f} s", f"<= {GOAL_S:.0f} s", total <= GOAL_S)
        return 0
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)

if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
