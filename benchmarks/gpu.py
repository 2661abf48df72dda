"""Figure 5: the full default pipeline (paper-length recipe, both variants) from scratch on a CUDA
device, data already local (goal: under 3 minutes on one H100). Skipped without a CUDA device or
without $CIFAR10_ARCHIVE.

    python -m benchmarks.gpu [--dest build/bench-gpu]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks import ROOT, archive_or_skip, figure

BENCH = "gpu"
GOAL = "full default pipeline (both variants, from scratch) < 3 min on one H100"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", default=str(ROOT / "build" / "bench-gpu"))
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        figure(BENCH, "skipped: no CUDA device", GOAL)
        return 0
    archive = archive_or_skip(BENCH, GOAL)
    if archive is None:
        return 0
    from pipeline.scratch import make_scratch_project, scratch_env

    device = torch.cuda.get_device_name(0)
    root = make_scratch_project(Path(args.dest), {"data": {"archive": str(archive)}, "train": {"device": "cuda"}})
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=root, env=scratch_env(root))
    minutes = (time.perf_counter() - start) / 60
    ok = proc.returncode == 0 and minutes < 3 and "H100" in device
    figure(BENCH, f"full default pipeline on {device}: {minutes:.1f} min (exit {proc.returncode}, "
                  f"{os.cpu_count()} CPU cores)", GOAL, ok if proc.returncode == 0 else False)
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
