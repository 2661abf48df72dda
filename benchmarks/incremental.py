"""Figure 3: incremental recompute. A full `dvc repro` of the pipeline on a tiny synthetic
class-folder zip (scratch project), then only ``network.uplink_mbps`` changed and `dvc repro` again:
its wall time next to the full run's, and which stages ran (goal: only validate, evaluate, trajectory, plots,
report, in at most 15 s).

    python -m benchmarks.incremental
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from benchmarks import figure, note
from pipeline.tools.scratch import dvc_repro, make_scratch_project
from tests.tiny_data import make_class_folder_zip

BENCH = "incremental"
EXPECTED = {"validate", "evaluate", "trajectory", "plots", "report"}
SMALL_PARAMS = {
    "data": {"n_train": 300, "n_val": 100, "n_test": 200},
    "train": {"seeds": [0, 1], "trunk_epochs": 1, "joint_epochs": 1, "batch_size": 64},
    "latency": {"warmup": 1, "repeats": 3},
    "evaluate": {"batch_size": 50},
}


def ran_stages(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="keep the scratch project (printed)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="eeoffload-bench-incremental-"))
    try:
        archive = make_class_folder_zip(work / "tiny-cifar.zip", 40, 30)
        overrides = {**SMALL_PARAMS, "data": {**SMALL_PARAMS["data"], "archive": str(archive)}}
        root = make_scratch_project(work / "project", overrides)
        start = time.perf_counter()
        full = dvc_repro(root)
        full_s = time.perf_counter() - start
        if full.returncode != 0:
            figure(BENCH, f"full dvc repro FAILED: {(full.stdout + full.stderr)[-400:]}", "<= 15 s", False)
            return 1
        params_path = root / "params.yaml"
        params = yaml.safe_load(params_path.read_text())
        params["network"]["uplink_mbps"] = params["network"]["uplink_mbps"] / 2
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))
        start = time.perf_counter()
        again = dvc_repro(root)
        again_s = time.perf_counter() - start
        stages = ran_stages(again.stdout)
        note(BENCH, f"full run ({len(ran_stages(full.stdout))} stages, tiny synthetic zip): {full_s:.1f} s")
        only = set(stages) == EXPECTED and again.returncode == 0
        figure(BENCH, f"after changing network.uplink_mbps: ran {', '.join(stages) or 'nothing'}",
               "only validate, evaluate, trajectory, plots, report", only)
        figure(BENCH, f"dvc repro after the change: {again_s:.1f} s = {100 * again_s / full_s:.0f}% of the full run "
                      f"({full_s:.1f} s)", "<= 15 s", again.returncode == 0 and again_s <= 15)
        timings = []
        for stage in ("evaluate", "plots"):
            path = root / "reports" / "timings" / f"{stage}.json"
            if path.is_file():
                timings.append(f"{stage} {json.loads(path.read_text()).get('seconds', float('nan')):.1f} s")
        if timings:
            note(BENCH, f"in-stage work (reports/timings, without interpreter start and imports): {', '.join(timings)}; "
                        f"the rest is dvc, interpreter start-up and imports")
        if args.keep:
            note(BENCH, f"scratch project kept in {root}")
        return 0 if again.returncode == 0 else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
