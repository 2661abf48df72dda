"""Sweeps that outgrow one machine: one flow run per point in a Prefect work pool (flow ``benchmark-sweep-workers``).

``python -m pipeline workpool sweep --uplink 5 18.8 --branches relu1 relu2 pool2
[--seeds 0 1 2] [--variant one_branch] [--remote DIR|s3://...] [--tracking-uri URL] [--workers N]``
(``make sweep-workers WORKERS=2 SEEDS="0 1 2" BRANCHES="relu1 relu2 pool2" UPLINK="5 18.8"``)

* **Points.** uplink rates x branch placements of ``--variant`` (and ``train.seeds`` = ``--seeds``
  for all), checked by the typed params schema before anything is submitted.
* **Submission.** The deployment ``benchmark-sweep-point/eeoffload`` (flow of
  pipeline.orchestration.sweep_point, entrypoint by module path, so every worker runs its own
  checkout's code) is registered in the work pool (type ``process``; created if missing), and one
  flow run per point is created with the point's overrides, the project's git URL and HEAD commit,
  the DVC remote and the MLflow tracking URI as parameters. Any worker of the pool, on any machine,
  picks it up.
* **Reuse before parallelism.** Points that differ only in ``network.*`` share everything upstream
  of evaluate. Of such a group, one point (the first) is submitted first; the others after it
  finished, so they restore train, logits, calibrate, ... from the run cache it pushed instead of
  training the same model again. Different groups run at the same time.
* **Faults.** A run that ends Crashed (its process died), or whose heartbeat (sweep_point.Heartbeat)
  is older than ``stale_s`` while Pending/Running (its worker or machine died: it is then set
  Crashed here), is submitted again, up to ``attempts`` times in all; the retry works in the same
  per-point workspace when it lands on the same machine, so training resumes from its epoch
  checkpoint. A point that Fails (a stage error) is not retried: it is reported, the others go on.
* **Gathering.** The rows of every finished point (table artifacts ``sweep-point-<point>``, read
  from the Prefect server: the workers need not share a disk with the sweep) go through
  pipeline.orchestration.sweep.write_comparison: ``reports/sweeps/<prefix>/comparison.csv`` and
  ``missed_deadline_vs_uplink.png``, the markdown artifact ``benchmark-sweep`` with a line per
  point (worker host, workspace, stages run and restored, attempts, failures) and
  ``reports/sweeps/<prefix>/points.json``.

Workers and the tracking server on this machine: pipeline.orchestration.scaleout (``make workers``,
``make tracking-server``). docs/scale-out.md: the multi-machine set-up.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pipeline.orchestration.pool import POOL, online_workers, register_deployment
from pipeline.orchestration.project import resolve_root
from pipeline.orchestration.settings import check_params, exp_set_args, experiment_settings, with_settings
from pipeline.orchestration.sweep import point_name, write_comparison
from pipeline.orchestration.sweep_point import artifact_key, heartbeat_name

DEFAULT_REMOTE = Path("build") / "dvc-remote"


# ---------------------------------------------------------------------------------------------
# Points
# ---------------------------------------------------------------------------------------------

@dataclass
class Point:
    name: str
    overrides: dict[str, Any]
    group: str  # the overrides outside network.*: points of one group share their upstream outputs
    run_ids: list[str] = field(default_factory=list)
    status: str = "waiting"  # waiting, submitted, completed, failed
    message: str = ""
    result: dict[str, Any] | None = None
    submitted_at: float = 0.0


def make_points(params: dict[str, Any], uplink_mbps: list[float], placements: list[list[str]] | None,
                variant: str, seeds: list[int] | None, prefix: str) -> list[Point]:
    """The points (uplink x placement), each checked against the typed params schema."""
    points = []
    for branches in placements or [None]:
        for rate in uplink_mbps:
            flat = experiment_settings(uplink_mbps=rate, branches={variant: branches} if branches else None,
                                       params=params)
            if seeds:
                flat["train.seeds"] = [int(s) for s in seeds]
                shifted = (params.get("shift") or {}).get("seeds") or []
                if not set(shifted) <= set(flat["train.seeds"]):  # shift runs seeds of train.seeds (as make paper)
                    flat["shift.seeds"] = [int(seeds[0])]
            check_params(with_settings(params, flat), f"sweep point {' '.join(exp_set_args(flat))}")
            placement = list(branches or params["variants"][variant]["branches"])
            group = json.dumps({k: v for k, v in flat.items() if not k.startswith("network.")}, sort_keys=True)
            points.append(Point(point_name(prefix, rate, placement), flat, group))
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        raise ValueError(f"sweep points with the same name: {names}")
    return points


def git_source(root: Path) -> tuple[str, str]:
    """(the repository the workers clone, its HEAD commit)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, text=True, capture_output=True, check=True).stdout.strip()

    rev = git("rev-parse", "HEAD")
    try:
        url = git("remote", "get-url", "origin")
    except subprocess.CalledProcessError:
        url = str(root)
    return url, rev


# ---------------------------------------------------------------------------------------------
# Submitting and watching
# ---------------------------------------------------------------------------------------------

def _heartbeat(client: Any, run_id: str) -> float | None:
    var = client.read_variable_by_name(heartbeat_name(run_id))
    return float(var.value) if var is not None else None


def _result_of(client: Any, run_id: str, point: str) -> dict[str, Any] | None:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    arts = client.read_artifacts(artifact_filter=ArtifactFilter(
        flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]), key=ArtifactFilterKey(any_=[artifact_key(point)])))
    if not arts:
        return None
    data = arts[0].data
    rows = json.loads(data) if isinstance(data, str) else data
    info = json.loads(arts[0].description or "{}")
    return {**info, "rows": rows}


def _mark_crashed(client: Any, run_id: str, message: str) -> None:
    from prefect.states import Crashed

    client.set_flow_run_state(run_id, Crashed(message=message), force=True)


@task(name="submit-and-watch", cache_policy=NO_CACHE)
def submit_and_watch(points: list[Point], deployment: str, common: dict[str, Any], attempts: int, stale_s: float,
                     poll_s: float, timeout_s: float, prefix: str) -> list[Point]:
    """Submit the points (a group's first point first), watch their runs, resubmit crashed ones."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    logger = get_run_logger()
    leaders: dict[str, Point] = {}
    for p in points:
        leaders.setdefault(p.group, p)
    began = time.monotonic()
    last_note = 0.0

    def submit(p: Point, why: str) -> None:
        run = run_deployment(deployment, parameters={**common, "point": p.name, "overrides": p.overrides},
                             timeout=0, as_subflow=False, tags=[f"sweep:{prefix}"])
        p.run_ids.append(str(run.id))
        p.status, p.submitted_at = "submitted", time.time()
        logger.info("point %s: submitted flow run %s (attempt %d/%d%s)", p.name, run.name, len(p.run_ids), attempts,
                    f", {why}" if why else "")

    with get_client(sync_client=True) as client:
        while True:
            for p in points:
                leader = leaders[p.group]
                if p.status == "waiting" and (leader is p or leader.status in ("completed", "failed")):
                    submit(p, "" if leader is p else f"after {leader.name}: reuses its upstream outputs")
            active = [p for p in points if p.status == "submitted"]
            if not active and all(p.status in ("completed", "failed") for p in points):
                return points
            for p in active:
                run_id = p.run_ids[-1]
                run = client.read_flow_run(run_id)
                state = run.state
                kind = state.type.value if state else "SCHEDULED"
                if kind == "COMPLETED":
                    p.result = _result_of(client, run_id, p.name)
                    p.status = "completed" if p.result else "failed"
                    p.message = "" if p.result else "completed without its result artifact"
                    logger.info("point %s: completed (%s)", p.name, (p.result or {}).get("workspace", "?"))
                elif kind in ("FAILED", "CANCELLED", "CANCELLING"):
                    p.status, p.message = "failed", f"{state.name}: {(state.message or '').splitlines()[0][:300]}"
                    logger.warning("point %s: %s (not retried; the other points go on)", p.name, p.message)
                elif kind in ("PENDING", "RUNNING"):
                    beat = _heartbeat(client, run_id)
                    since = beat or (state.timestamp.timestamp() if state.timestamp else p.submitted_at)
                    allowed = stale_s if kind == "RUNNING" else 3 * stale_s  # Pending: process start, imports
                    if time.time() - since > allowed:
                        _mark_crashed(client, run_id, f"no heartbeat for {time.time() - since:.0f} s: its worker "
                                                      "or machine is gone")
                        kind = "CRASHED"
                        state = client.read_flow_run(run_id).state
                if kind == "CRASHED":
                    why = (state.message or "crashed").splitlines()[0][:200] if state else "crashed"
                    if len(p.run_ids) < attempts:
                        logger.warning("point %s: run crashed (%s); submitting it again", p.name, why)
                        submit(p, f"retry after: {why}")
                    else:
                        p.status, p.message = "failed", f"crashed {len(p.run_ids)} times, last: {why}"
                        logger.warning("point %s: %s", p.name, p.message)
            if time.monotonic() - began > timeout_s:
                for p in points:
                    if p.status in ("waiting", "submitted"):
                        p.status, p.message = "failed", f"not finished after {timeout_s:.0f} s"
                return points
            if time.monotonic() - last_note > 60:
                last_note = time.monotonic()
                counts = {s: sum(p.status == s for p in points) for s in ("waiting", "submitted", "completed", "failed")}
                logger.info("sweep %s: %s", prefix, ", ".join(f"{v} {k}" for k, v in counts.items()))
            time.sleep(poll_s)


def cleanup_heartbeats(points: list[Point]) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for p in points:
            for run_id in p.run_ids:
                try:
                    client.delete_variable_by_name(heartbeat_name(run_id))
                except Exception:  # noqa: BLE001 - never written, or already gone
                    pass


@task(name="gather", cache_policy=NO_CACHE)
def gather(root: str, prefix: str, points: list[Point]) -> dict[str, Any]:
    """The comparison table and figure of the finished points (sweep.write_comparison), points.json."""
    rows = [row for p in points if p.result for row in p.result["rows"]]
    lines = ["| point | status | attempts | host | stages ran | restored from run cache | note |",
             "|---|---|---|---|---|---|---|"]
    for p in points:
        r = p.result or {}
        lines.append(f"| {p.name} | {p.status} | {len(p.run_ids)} | {r.get('host', '')} | "
                     f"{len(r.get('stages_ran', []))} | {len(r.get('stages_restored', []))} | {p.message} |")
    out = write_comparison(Path(root), prefix, pd.DataFrame(rows), "\n".join(lines) + "\n\n")
    summary = {"prefix": prefix, "comparison": str(out / "comparison.csv"),
               "completed": [p.name for p in points if p.status == "completed"],
               "failed": {p.name: p.message for p in points if p.status != "completed"},
               "points": [{"name": p.name, "status": p.status, "message": p.message, "run_ids": p.run_ids,
                           "overrides": p.overrides, **{k: v for k, v in (p.result or {}).items() if k != "rows"}}
                          for p in points]}
    (out / "points.json").write_text(json.dumps(summary, indent=1, default=str))
    for p in points:
        print(f"  {p.name}: {p.status}" + (f" ({p.message})" if p.message else "")
              + (f" in {p.result['workspace']} on {p.result['host']}" if p.result else ""))
    return summary


@flow(name="benchmark-sweep-workers", log_prints=True)
def sweep_workers(uplink_mbps: list[float], branch_placements: list[list[str]] | None = None,
                  variant: str = "one_branch", seeds: list[int] | None = None, p_tar: list[float] | None = None,
                  t_tar_ms: list[float] | None = None, prefix: str = "sweep", remote: str | None = None,
                  tracking_uri: str = "", pool: str = POOL, workdir: str | None = None, attempts: int = 3,
                  stale_s: float = 60.0, poll_s: float = 2.0, timeout_s: float = 24 * 3600.0,
                  repo: str | None = None, rev: str | None = None, log_model: bool = True,
                  root: str | None = None, checkpoint_push_s: float = 60.0) -> dict[str, Any]:
    """Uplink rates x branch placements as one flow run per point in the work pool ``pool``; the summary.

    remote: the DVC remote every point pulls from and pushes to (default build/dvc-remote of the
    project). tracking_uri: the MLflow tracking server the points log to ("" = no tracking).
    workdir: where workers without $EEOFFLOAD_SWEEP_WORKDIR make the point workspaces. repo/rev:
    what the workers clone (default: the project's origin URL, else its path, and its HEAD).
    """
    path = resolve_root(root)
    params = yaml.safe_load((path / "params.yaml").read_text())
    points = make_points(params, uplink_mbps, branch_placements, variant, seeds, prefix)
    url, head = git_source(path)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path, text=True,
                           capture_output=True, check=False).stdout.strip()
    if dirty and not rev:
        print(f"note: the points run the committed HEAD {head[:12]} of {path}; uncommitted changes are not in them")
    remote_url = remote or str((path / DEFAULT_REMOTE).resolve())
    if "://" not in remote_url:
        Path(remote_url).mkdir(parents=True, exist_ok=True)
    common = {"repo": repo or url, "rev": rev or head, "remote": remote_url, "tracking_uri": tracking_uri,
              "variant": variant, "p_tar": [float(p) for p in (p_tar or [0.85])],
              "t_tar_ms": [float(t) for t in (t_tar_ms or [50.0, 100.0])], "workdir": workdir,
              "log_model": log_model, "checkpoint_push_s": checkpoint_push_s}
    deployment = register_deployment(pool)
    print(f"sweep {prefix}: {len(points)} points to work pool {pool!r} ({len(online_workers(pool))} worker(s) "
          f"online), deployment {deployment}, DVC remote {remote_url}, MLflow {tracking_uri or 'off'}")
    try:
        done = submit_and_watch(points, deployment, common, attempts, stale_s, poll_s, timeout_s, prefix)
    finally:
        cleanup_heartbeats(points)
    summary = gather(str(path), prefix, done)
    if summary["failed"]:
        print(f"sweep {prefix}: {len(summary['failed'])} of {len(points)} point(s) did not finish: "
              + "; ".join(f"{k}: {v}" for k, v in summary["failed"].items()))
    return summary


def main(argv: list[str] | None = None, prog: str = "python -m pipeline workpool",
         on_cancel: Any = None) -> None:
    """The CLI; Ctrl-C (SIGINT) or SIGTERM during a sweep cancels its flow runs
    (pipeline.orchestration.sweep_cancel), then calls ``on_cancel()`` (e.g. stop the workers)."""
    from pipeline.orchestration.cli import run_flow
    from pipeline.orchestration.sweep_cancel import cancellable

    ap = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("sweep", help="submit the points to the work pool and gather them")
    sp.add_argument("--uplink", type=float, nargs="+", required=True, help="uplink rates in Mbps")
    sp.add_argument("--branches", nargs="*", default=[], help="placements, e.g. relu1 relu2 relu1+relu2")
    sp.add_argument("--seeds", type=int, nargs="*", default=[], help="train.seeds of every point")
    sp.add_argument("--variant", default="one_branch")
    sp.add_argument("--p-tar", type=float, nargs="+", default=[0.85])
    sp.add_argument("--t-tar", type=float, nargs="+", default=[50.0, 100.0], help="deadlines in ms")
    sp.add_argument("--prefix", default="sweep")
    sp.add_argument("--remote", default=None, help="DVC remote (directory or s3://...; default build/dvc-remote)")
    sp.add_argument("--tracking-uri", default="", help="MLflow tracking server, e.g. http://127.0.0.1:5001")
    sp.add_argument("--pool", default=POOL)
    sp.add_argument("--workdir", default=None, help="point workspaces of workers without $EEOFFLOAD_SWEEP_WORKDIR")
    sp.add_argument("--attempts", type=int, default=3, help="runs per point in all when it crashes")
    sp.add_argument("--stale", type=float, default=60.0, help="seconds without heartbeat before a run counts as crashed")
    sp.add_argument("--timeout", type=float, default=24 * 3600.0)
    sp.add_argument("--no-model", action="store_true", help="do not log the trained models to MLflow")
    sp.add_argument("--repo", default=None, help="what the workers clone (default: origin's URL, else this path)")
    sp.add_argument("--checkpoint-push", type=float, default=60.0, metavar="SECONDS",
                    help="push training checkpoints to the remote at most this often (-1: never)")
    sp.add_argument("--stop-workers", action="store_true", help="on Ctrl-C also stop this machine's `make workers`")
    sp.add_argument("--root", default=None)
    sp.add_argument("--verbose", action="store_true")
    sub.add_parser("cancel", help="cancel a sweep's open flow runs (make sweep-cancel)").add_argument(
        "--prefix", default="sweep")
    sub.add_parser("deploy", help="create the work pool and register the point deployment").add_argument(
        "--pool", default=POOL)
    args = ap.parse_args(argv)
    if args.command == "deploy":
        print(f"registered {register_deployment(args.pool)} in work pool {args.pool}")
        return
    if args.command == "cancel":
        from pipeline.orchestration.sweep_cancel import cancel_runs

        print(f"sweep {args.prefix}: {len(cancel_runs(args.prefix))} flow run(s) cancelled")
        return
    if args.stop_workers and on_cancel is None:
        from pipeline.orchestration.scaleout import workers_stop as on_cancel
    cancellable(lambda: run_flow(lambda: sweep_workers(
        uplink_mbps=args.uplink, branch_placements=[b.split("+") for b in args.branches] or None,
        variant=args.variant, seeds=args.seeds or None, p_tar=args.p_tar, t_tar_ms=args.t_tar, prefix=args.prefix,
        remote=args.remote, tracking_uri=args.tracking_uri, pool=args.pool, workdir=args.workdir,
        attempts=args.attempts, stale_s=args.stale, timeout_s=args.timeout, log_model=not args.no_model,
        root=args.root, repo=args.repo, checkpoint_push_s=args.checkpoint_push, return_state=True),
        prog, args.root, args.verbose), args.prefix, on_cancel)
