"""Time to result on a CPU (opt-in, long): the quick recipe (configs/quick.yaml: full 45k/3k/7k
split, both variants) from the archive to the report, in a scratch project; prints epochs,
accuracy per exit and minutes (goal: within 30 minutes on a 2-core machine). Needs
$CIFAR10_ARCHIVE (skipped otherwise). Not part of the default `python -m benchmarks`.

    python -m benchmarks time_to_result [--dest build/time_to_result]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks import ROOT, archive_or_skip, figure, note

BENCH = "time_to_result"
GOAL = "<= 30 min on 2 cores"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", default=str(ROOT / "build" / "time_to_result"))
    ap.add_argument("--overlay", default=str(ROOT / "configs" / "quick.yaml"))
    args = ap.parse_args(argv)
    archive = archive_or_skip(BENCH, GOAL)
    if archive is None:
        return 0
    import pandas as pd

    from pipeline.core.overlay import load_overlay, merge
    from pipeline.tools.scratch import make_scratch_project, scratch_env

    overlay = merge(load_overlay(args.overlay), {"data": {"archive": str(archive)}})
    root = make_scratch_project(Path(args.dest), overlay)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=root, env=scratch_env(root))
    minutes = (time.perf_counter() - start) / 60
    if proc.returncode != 0:
        figure(BENCH, f"dvc repro FAILED (exit {proc.returncode}) after {minutes:.1f} min in {root}", GOAL, False)
        return proc.returncode
    for csv in sorted((root / "reports" / "training").glob("*.csv")):
        history = pd.read_csv(csv)
        last = history.iloc[-1]
        accs = ", ".join(f"{c.removeprefix('val_acc_')} {last[c]:.3f}" for c in history.columns if c.startswith("val_acc_"))
        note(BENCH, f"{csv.stem}: {len(history)} epochs, validation accuracy per exit: {accs}")
        exits = root / "reports" / "calibration" / f"{csv.stem}_exits.parquet"
        if exits.is_file():
            table = pd.read_parquet(exits)
            table = table[table["calibration"] == "conventional"].sort_values("exit")
            note(BENCH, f"{csv.stem}: test accuracy per exit: "
                        + ", ".join(f"exit{int(r.exit)} {r.accuracy:.3f}" for r in table.itertuples()))
    figure(BENCH, f"quick recipe, whole pipeline, both variants: {minutes:.1f} min on {os.cpu_count()} cores "
                  f"(report: {root / 'reports' / 'index.html'})", GOAL, minutes <= 30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
