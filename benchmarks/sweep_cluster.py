"""The work-pool sweep on the cluster (pipeline.orchestration.cluster) beside the single machine:
wall time of the 4-point tiny sweep of benchmarks.sweep_workers (2 uplink rates x 2 placements of
one_branch, one seed) over 1 worker vs 2 on this machine (Prefect's test server on SQLite, a
directory remote) and over 1 worker vs 2 on the cluster (PostgreSQL behind the Prefect server,
each worker in its own network namespace and working directory, the DVC remote and the git
repository over SSH, checkpoints pushed every 60 s), each from an empty remote and empty
workspaces; no MLflow, as in sweep_workers. The cluster part needs root and the Debian packages
postgresql, openssh-server, iproute2 (else it is reported as skipped).

    python -m benchmarks sweep_cluster [--no-single]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks import ROOT, figure, note
from benchmarks.sweep_workers import one_sweep, project
from tests.tiny_data import make_class_folder_zip

BENCH = "sweep_cluster"


def single_machine(root: Path, work: Path) -> dict[int, tuple[float, dict]]:
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        api = PREFECT_API_URL.value()
        return {n: one_sweep(root, work, api, n) for n in (1, 2)}


def on_cluster(root: Path, base: Path) -> dict[int, tuple[float, dict]]:
    from pipeline.orchestration import cluster as cl
    from pipeline.orchestration.cluster_hosts import Net, net_up
    from pipeline.orchestration.cluster_services import Services

    s = Services(Net("eeb", "10.79.0"), base)
    cl.down(s)
    out = {}
    try:
        cl.up(s, workers=0, code_root=ROOT)
        for n in (1, 2):
            hosts = [f"w{i}" for i in range(1, n + 1)]
            net_up(s.net, hosts)
            for host in hosts:
                s.worker_up(host, ROOT, pool=f"bench-cluster-{n}w")
            with cl.on_cluster(s):
                from pipeline.orchestration.workpool import sweep_workers

                start = time.perf_counter()
                state = sweep_workers(uplink_mbps=[5.0, 18.8], branch_placements=[["relu1"], ["relu2"]],
                                      p_tar=[0.85], t_tar_ms=[50.0], prefix=f"cluster{n}",
                                      remote=f"ssh://{s.net.addr('store')}{base / f'remote-{n}'}",
                                      pool=f"bench-cluster-{n}w", stale_s=120, timeout_s=3600, log_model=False,
                                      root=str(root), repo=s.repo_url(root), return_state=True)
                seconds = time.perf_counter() - start
            out[n] = (seconds, state.result() if state.is_completed() else {"failed": {"flow": state.message}})
            cl.stop_workers(s)
    finally:
        cl.down(s)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-single", action="store_true", help="only the cluster (not the single-machine figure)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folders (printed)")
    args = ap.parse_args(argv)
    from pipeline.orchestration.cluster_hosts import missing_requirements
    from pipeline.orchestration.cluster_services import missing_packages

    work = Path(tempfile.mkdtemp(prefix="eeoffload-bench-sweep-cluster-"))
    base = ROOT / "build" / "bench-cluster"  # PostgreSQL (user postgres) must reach its data folder
    shutil.rmtree(base, ignore_errors=True)
    os.environ["EEOFFLOAD_SCALEOUT_STATE"] = str(work / "state")
    os.environ.setdefault("PREFECT_WORKER_QUERY_SECONDS", "2")
    results: dict[str, dict[int, tuple[float, dict]]] = {}
    try:
        archive = make_class_folder_zip(work / "tiny-cifar.zip", 40, 30)
        root = project(work / "project", archive)
        if not args.no_single:
            results["single machine"] = single_machine(root, work)
        why = missing_requirements() + [f"no {p}" for p in missing_packages()]
        if why:
            figure(BENCH, f"cluster: skipped ({'; '.join(why)})")
        else:
            results["cluster"] = on_cluster(root, base)
        ok = True
        for where, res in results.items():
            for n, (seconds, summary) in res.items():
                pts = summary.get("points", [])
                note(BENCH, f"{where}, {n} worker(s): {seconds:.0f} s for {len(pts)} points; per point "
                            + ", ".join(f"{p['name']} {p.get('seconds', '?')} s" for p in pts))
                ok = ok and not summary.get("failed")
        if not ok:
            figure(BENCH, "FAILED points (see the lines above)", "all 4 points complete", False)
            return 1
        load = os.getloadavg()
        for where, res in results.items():
            t1, t2 = res[1][0], res[2][0]
            figure(BENCH, f"{where}: 4-point tiny sweep, 1 worker {t1:.0f} s, 2 workers {t2:.0f} s, ratio 1w/2w = "
                          f"{t1 / t2:.2f} (cores {os.cpu_count()}, load {load[0]:.1f})", "ratio > 1", t1 / t2 > 1.0)
        if "cluster" in results and "single machine" in results:
            c, m = results["cluster"], results["single machine"]
            figure(BENCH, f"cluster / single machine wall time: 1 worker {c[1][0] / m[1][0]:.2f}, "
                          f"2 workers {c[2][0] / m[2][0]:.2f} (PostgreSQL, SSH remote, pushed checkpoints; one run each: noisy)")
        return 0
    finally:
        os.environ.pop("EEOFFLOAD_SCALEOUT_STATE", None)
        if args.keep:
            note(BENCH, f"scratch folders kept: {work}, {base}")
        else:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(base, ignore_errors=True)
