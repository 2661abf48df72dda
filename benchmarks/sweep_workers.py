"""The work-pool sweep (pipeline.orchestration.workpool): wall time of a 4-point tiny sweep (2 uplink
rates x 2 branch placements of one_branch, one training seed) over 1 process worker vs 2, measured
one after the other in one run, each from an empty DVC remote and empty workspaces, and their ratio.

A real Prefect server (prefect_test_harness), local ``prefect worker start --type process`` workers
(pipeline.orchestration.scaleout), a local directory as DVC remote; no MLflow (the points' own work
only). The second uplink rate of a placement restores its training from the run cache of the first,
so the critical path with 2 workers is: both placements' first points side by side, then both second
points. On a machine with fewer free cores than workers the points compete for the CPU and the
ratio shows that.

    python -m benchmarks.sweep_workers
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from benchmarks import figure, note
from pipeline.tools.scratch import make_scratch_project
from tests.tiny_data import make_class_folder_zip

BENCH = "sweep_workers"
SMALL_PARAMS = {
    "data": {"n_train": 300, "n_val": 100, "n_test": 200},
    "train": {"seeds": [0], "trunk_epochs": 1, "joint_epochs": 1, "batch_size": 64, "num_threads": 1,
              "snapshot_epochs": [1, 2]},
    "latency": {"warmup": 1, "repeats": 3},
    "evaluate": {"batch_size": 50, "resamples": 10},
}


def project(dest: Path, archive: Path) -> Path:
    import subprocess

    root = make_scratch_project(dest, {**SMALL_PARAMS, "data": {**SMALL_PARAMS["data"], "archive": str(archive)}})
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["variants"] = {"one_branch": params["variants"]["one_branch"]}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "commit", "-qam", "one variant"], cwd=root, check=True, capture_output=True)
    return root


def one_sweep(root: Path, work: Path, api_url: str, n_workers: int) -> tuple[float, dict]:
    import psutil

    from pipeline.orchestration import scaleout
    from pipeline.orchestration.workpool import sweep_workers

    pool = f"bench-sweep-{n_workers}w"
    workdir = work / f"ws-{n_workers}"
    procs = [scaleout.start_worker(f"bench-{n_workers}w-{i}", api_url, workdir, pool) for i in range(n_workers)]
    try:
        start = time.perf_counter()
        state = sweep_workers(uplink_mbps=[5.0, 18.8], branch_placements=[["relu1"], ["relu2"]], p_tar=[0.85],
                              t_tar_ms=[50.0], prefix=f"bench{n_workers}", remote=str(work / f"remote-{n_workers}"),
                              pool=pool, stale_s=120, timeout_s=3600, log_model=False, root=str(root),
                              return_state=True)
        seconds = time.perf_counter() - start
        return seconds, (state.result() if state.is_completed() else {"failed": {"flow": state.message}})
    finally:
        for proc in procs:
            try:
                tree = [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]
            except psutil.NoSuchProcess:
                tree = []
            for p in tree:
                try:
                    p.send_signal(signal.SIGTERM)
                except psutil.NoSuchProcess:
                    pass
            proc.wait(timeout=60)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder (printed)")
    args = ap.parse_args(argv)
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    work = Path(tempfile.mkdtemp(prefix="eeoffload-bench-sweep-workers-"))
    os.environ["EEOFFLOAD_SCALEOUT_STATE"] = str(work / "state")
    os.environ.setdefault("PREFECT_WORKER_QUERY_SECONDS", "2")
    try:
        archive = make_class_folder_zip(work / "tiny-cifar.zip", 40, 30)
        root = project(work / "project", archive)
        with prefect_test_harness(server_startup_timeout=180):
            api = PREFECT_API_URL.value()
            times, summaries = {}, {}
            for n in (1, 2):
                times[n], summaries[n] = one_sweep(root, work, api, n)
        ok = all(not s.get("failed") for s in summaries.values())
        for n in (1, 2):
            pts = summaries[n].get("points", [])
            note(BENCH, f"{n} worker(s): {times[n]:.0f} s for {len(pts)} points; per point "
                        + ", ".join(f"{p['name']} {p.get('seconds', '?')} s on {p.get('host', '?')}" for p in pts))
        if not ok:
            figure(BENCH, f"FAILED points: {summaries}", "all 4 points complete", False)
            return 1
        figure(BENCH, f"4-point tiny sweep: 1 worker {times[1]:.0f} s, 2 workers {times[2]:.0f} s, "
                      f"ratio 1w/2w = {times[1] / times[2]:.2f} (cores here: {os.cpu_count()})",
               "ratio > 1 (2 workers faster)", times[1] / times[2] > 1.0)
        if args.keep:
            note(BENCH, f"scratch folder kept: {work}")
        return 0
    finally:
        os.environ.pop("EEOFFLOAD_SCALEOUT_STATE", None)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
