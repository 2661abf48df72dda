"""Prefect 3 flows over the DVC pipeline: every stage a task, DVC decides what is up to date.

* ``benchmark``: one task per DVC stage instance (``prepare``, ``train@one_branch``, ...), in the
  order of the DAG that DVC builds from ``dvc.yaml``; each runs ``dvc repro --single-item <stage>``
  and streams its output to the Prefect logger. A stage DVC skips ends in a completed state named
  ``Cached``; a failing stage fails its task with the stage's output in the log. The flow ends
  with a markdown artifact (headline metrics, path of ``reports/index.html``) and MLflow logging
  (``pipeline.tracking``).
* ``benchmark-experiment``: the parameterised run for the Prefect UI (``make serve``). Its
  parameters become ``dvc exp run -n <name> -S key=value ...``: a named DVC experiment, then the
  same artifact and MLflow runs.

Never two runs in one workspace: every flow takes an exclusive file lock
(``.dvc/tmp/eeoffload-flow.lock``) before touching DVC and fails at once with a message naming
the holder (or waits ``wait_s`` seconds); DVC's own repository lock stays underneath.

CLI: ``python -m pipeline.flows run [--no-track] [--wait S]``, ``python -m pipeline.flows serve``,
``python -m pipeline.flows experiment --name N -S network.uplink_mbps=5``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed

LOCK_FILE = Path(".dvc") / "tmp" / "eeoffload-flow.lock"
QUIET_ENV = {
    "DO_NOT_TRACK": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1",
}
HEADLINE = ("p_device@0.85", "acc_device@0.85", "acc_total@0.85", "outage@0.85", "min_missed_deadline@0.85")


class WorkspaceBusy(RuntimeError):
    """Another flow (or DVC command started by one) holds this workspace."""


class StageFailed(RuntimeError):
    """A DVC stage (or `dvc exp run`) exited non-zero."""


def resolve_root(root: str | os.PathLike[str] | None) -> Path:
    """The DVC project: ``root``, else $EEOFFLOAD_ROOT, else the current directory."""
    path = Path(root or os.environ.get("EEOFFLOAD_ROOT") or Path.cwd()).resolve()
    if not (path / "dvc.yaml").is_file():
        raise FileNotFoundError(f"{path}: no dvc.yaml here; run the flow from the project root or pass root=")
    return path


def dvc_env() -> dict[str, str]:
    """Environment for DVC subprocesses: no telemetry, unbuffered stage output (streams line by line)."""
    env = dict(os.environ, **QUIET_ENV)
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def check_params(params: dict[str, Any] | None, source: str) -> None:
    """The typed schema of pipeline.params on the whole file (``params``, or read from the path
    ``source`` if None), before any DVC command runs: a typo fails the flow in a second with one
    line naming the key (not an hour later in a stage)."""
    from pipeline.io import StageError, read_params
    from pipeline.params import validate_params

    try:
        validate_params(read_params(Path(source)) if params is None else params)
    except StageError as e:
        raise ValueError(f"{source}: {e}") from None


def with_settings(params: dict[str, Any], flat: dict[str, Any]) -> dict[str, Any]:
    """``params`` with the dotted ``flat`` settings written in (what `dvc exp run -S` will make)."""
    import copy

    out = copy.deepcopy(params)
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for name in parents:
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise ValueError(f"-S {key}={value!r}: {name} is not a section of params.yaml")
        node[leaf] = value
    return out


# ---------------------------------------------------------------------------------------------
# The workspace lock
# ---------------------------------------------------------------------------------------------

def lock_holder(root: Path) -> dict[str, Any] | None:
    """Who holds the workspace lock ({pid, what, started}), or None if it is free."""
    path = root / LOCK_FILE
    if not path.exists():
        return None
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            try:
                return json.loads(f.read() or "{}")
            except json.JSONDecodeError:
                return {}
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


@contextlib.contextmanager
def workspace_lock(root: Path, what: str, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the workspace's exclusive flow lock; fail at once (or after ``wait_s``) if it is taken.

    ``flock`` is released by the kernel when the holder dies, so a killed flow leaves no stale lock.
    """
    path = root / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held for the whole block)
    try:
        deadline = time.monotonic() + max(wait_s, 0.0)
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    f.seek(0)
                    try:
                        holder = json.loads(f.read() or "{}")
                    except json.JSONDecodeError:
                        holder = {}
                    raise WorkspaceBusy(
                        f"workspace {root} is busy: {holder.get('what', 'another benchmark flow')} "
                        f"(pid {holder.get('pid', '?')}, started {holder.get('started', '?')}) holds {path}. "
                        "DVC cannot run twice in one workspace; wait for that run to finish "
                        "(or pass wait_s / --wait to queue behind it). Nothing was changed."
                    ) from None
                time.sleep(1.0)
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "what": what,
                            "started": dt.datetime.now().isoformat(timespec="seconds")}))
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            f.flush()
            fcntl.flock(f, fcntl.LOCK_UN)
    finally:
        f.close()


# ---------------------------------------------------------------------------------------------
# The DAG, read from DVC
# ---------------------------------------------------------------------------------------------

def stage_graph(root: Path) -> list[tuple[str, list[str]]]:
    """[(stage, [upstream stages])] in a topological order of DVC's own graph (dvc.yaml order on ties)."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph  # edges: stage -> the stages it depends on
        position = {stage: i for i, stage in enumerate(repo.index.stages)}
        order = list(nx.lexicographical_topological_sort(graph.reverse(copy=True), key=lambda s: position.get(s, 0)))

        def address(stage: Any) -> str:  # as `dvc repro` takes it in root (Stage.addressing is cwd-relative)
            if Path(stage.path).resolve() == (root / "dvc.yaml").resolve():
                return stage.name
            return f"{os.path.relpath(stage.path, root)}:{stage.name}" if stage.name else os.path.relpath(stage.path, root)

        return [(address(s), sorted(address(d) for d in graph.successors(s))) for s in order]


# ---------------------------------------------------------------------------------------------
# Running DVC commands with their output in the Prefect log
# ---------------------------------------------------------------------------------------------

def _stream(cmd: list[str], root: Path, logger: Any) -> tuple[int, list[str]]:
    """Run ``cmd`` in ``root``, every output line to ``logger``; (exit status, all lines)."""
    logger.info("$ %s", " ".join(cmd[2:] if cmd[:2] == [sys.executable, "-m"] else cmd))
    proc = subprocess.Popen(cmd, cwd=root, env=dvc_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1, errors="replace")
    lines: list[str] = []
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.rstrip()
        if line.strip():
            lines.append(line)
            logger.info("%s", line)
    return proc.wait(), lines


def _failure(what: str, rc: int, lines: list[str]) -> StageFailed:
    tail = list(deque(lines, maxlen=25))
    text = "\n".join(tail)
    if "Unable to acquire lock" in text:
        hint = ("DVC's repository lock is held by another DVC command in this workspace "
                "(a `dvc repro` or `dvc exp run` started outside this flow); wait for it and rerun.")
    else:
        hint = "the stage's last output lines follow."
    return StageFailed(f"{what} failed (exit status {rc}): {hint}\n{text}")


def stage_status(stage: str, lines: list[str]) -> str:
    """'ran' if DVC ran the stage's command, else 'cached' (up to date, or restored from run cache)."""
    return "ran" if any(line.startswith(f"Running stage '{stage}'") for line in lines) else "cached"


@task(name="dvc-stage", task_run_name="{stage}", cache_policy=NO_CACHE)
def dvc_stage(root: str, stage: str) -> Any:
    """`dvc repro --single-item <stage>`: DVC runs it only if its deps, params or outs changed."""
    logger = get_run_logger()
    rc, lines = _stream([sys.executable, "-m", "dvc", "repro", "--single-item", stage], Path(root), logger)
    if rc != 0:
        err = _failure(f"stage {stage}", rc, lines)
        logger.error("%s", err)
        raise err
    status = stage_status(stage, lines)
    if status == "cached":
        logger.info("stage %s is up to date: DVC skipped it (cached)", stage)
        return Completed(name="Cached", message=f"DVC skipped {stage}: up to date",
                         data={"stage": stage, "status": "cached"})
    return {"stage": stage, "status": "ran"}


def run_stages(root: Path) -> dict[str, str]:
    """Every stage as a task in DAG order, upstream task runs as wait_for (the UI draws the DAG)."""
    states: dict[str, Any] = {}
    statuses: dict[str, str] = {}
    for stage, upstream in stage_graph(root):
        state = dvc_stage(str(root), stage, wait_for=[states[u] for u in upstream if u in states],
                          return_state=True)
        states[stage] = state
        statuses[stage] = state.result()["status"]  # raises the stage's error if it failed
    return statuses


# ---------------------------------------------------------------------------------------------
# Summary artifact and tracking
# ---------------------------------------------------------------------------------------------

def _fmt(value: Any) -> str:
    return "n/a" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))


def summary_markdown(root: Path, statuses: dict[str, str], title: str = "Benchmark") -> str:
    """Markdown: headline metrics per variant and calibration, stage statuses, path of the report."""
    lines = [f"# {title}", ""]
    metrics_path = root / "reports" / "metrics.json"
    if metrics_path.exists():
        metrics = json.loads(metrics_path.read_text())
        lines += ["| variant | calibration | " + " | ".join(HEADLINE) + " |",
                  "|---|---|" + "---|" * len(HEADLINE)]
        for variant, by_cal in metrics.items():
            for calibration, values in by_cal.items():
                lines.append(f"| {variant} | {calibration} | "
                             + " | ".join(_fmt(values.get(k)) for k in HEADLINE) + " |")
    else:
        lines.append("reports/metrics.json is missing.")
    report = root / "reports" / "index.html"
    lines += ["", f"Report: `{report}`" + ("" if report.exists() else " (missing)"), ""]
    if statuses:
        ran = [s for s, v in statuses.items() if v == "ran"]
        cached = [s for s, v in statuses.items() if v != "ran"]
        lines += [f"Stages run: {', '.join(ran) or 'none'}", "",
                  f"Stages cached (skipped by DVC): {', '.join(cached) or 'none'}"]
    return "\n".join(lines) + "\n"


@task(name="summary", task_run_name="summary", cache_policy=NO_CACHE)
def publish_summary(root: str, statuses: dict[str, str], title: str = "Benchmark") -> str:
    markdown = summary_markdown(Path(root), statuses, title)
    create_markdown_artifact(markdown=markdown, key="benchmark-summary",
                             description="Headline metrics (reports/metrics.json) and the report's path")
    get_run_logger().info("report: %s", Path(root) / "reports" / "index.html")
    return markdown


@task(name="mlflow", task_run_name="mlflow", cache_policy=NO_CACHE)
def track_run(root: str, dvc_exp_name: str | None = None) -> str | None:
    """Log the pipeline's outputs to MLflow (pipeline.tracking); a clear error if that fails."""
    from pipeline.tracking import TrackingError, log_pipeline_run

    logger = get_run_logger()
    try:
        run_id = log_pipeline_run(Path(root), dvc_exp_name=dvc_exp_name, log=logger.info)
    except TrackingError as e:
        logger.error("%s", e)
        raise
    return run_id


# ---------------------------------------------------------------------------------------------
# Flows
# ---------------------------------------------------------------------------------------------

@flow(name="benchmark", log_prints=True)
def benchmark(root: str | None = None, track: bool = True, wait_s: float = 0.0) -> dict[str, str]:
    """The DVC pipeline as Prefect tasks (one per stage), then the summary artifact and MLflow runs.

    root: the project (default: current directory). track: log to MLflow ($MLFLOW_TRACKING_URI,
    default sqlite:///<root>/mlflow.db). wait_s: wait this long for a run already in progress in
    the workspace instead of failing at once.
    """
    path = resolve_root(root)
    check_params(None, str(path / "params.yaml"))
    with workspace_lock(path, "flow benchmark", wait_s):
        statuses = run_stages(path)
        publish_summary(str(path), statuses)
        if track:
            track_run(str(path))
    return statuses


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def experiment_settings(uplink_mbps: float | None = None, rtt_ms: float | None = None,
                        p_tar: dict[str, float] | None = None, deadline_p_tar: list[float] | None = None,
                        branches: dict[str, list[str]] | None = None, trunk_epochs: int | None = None,
                        joint_epochs: int | None = None, extra: dict[str, Any] | None = None,
                        params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Flat {dotted.key: value} for `dvc exp run -S`; a branch list of a new length gets matching
    exit_weights (1.0 for the first branch down to 0.3 for the final exit)."""
    flat: dict[str, Any] = {}
    if uplink_mbps is not None:
        flat["network.uplink_mbps"] = float(uplink_mbps)
    if rtt_ms is not None:
        flat["network.rtt_ms"] = float(rtt_ms)
    if p_tar:
        for k, v in p_tar.items():
            flat[f"evaluate.p_tar.{k}"] = float(v)
    if deadline_p_tar:
        flat["evaluate.deadline_p_tar"] = [float(v) for v in deadline_p_tar]
    if trunk_epochs is not None:
        flat["train.trunk_epochs"] = int(trunk_epochs)
    if joint_epochs is not None:
        flat["train.joint_epochs"] = int(joint_epochs)
    for variant, names in (branches or {}).items():
        names = list(names)
        flat[f"variants.{variant}.branches"] = names
        current = ((params or {}).get("variants") or {}).get(variant) or {}
        if len(current.get("exit_weights") or []) != len(names) + 1:
            n = len(names) + 1
            flat[f"variants.{variant}.exit_weights"] = [round(1.0 - 0.7 * i / max(n - 1, 1), 3) for i in range(n)]
    flat.update(extra or {})
    return flat


def set_args(flat: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for key, value in flat.items():
        args += ["-S", f"{key}={_yaml_value(value)}"]
    return args


def ran_stages(lines: list[str]) -> list[str]:
    return [m.group(1) for line in lines if (m := re.match(r"Running stage '([^']+)'", line))]


@task(name="dvc-exp-run", task_run_name="dvc exp run -n {name}", cache_policy=NO_CACHE)
def dvc_exp_run(root: str, name: str, flat: dict[str, Any]) -> dict[str, str]:
    """`dvc exp run -n <name> -S ...` in the workspace: a named DVC experiment; output to the log."""
    logger = get_run_logger()
    rc, lines = _stream([sys.executable, "-m", "dvc", "exp", "run", "-n", name, *set_args(flat)], Path(root), logger)
    if rc != 0:
        err = _failure(f"dvc exp run -n {name}", rc, lines)
        logger.error("%s", err)
        raise err
    ran = set(ran_stages(lines))
    return {stage: ("ran" if stage in ran else "cached") for stage, _ in stage_graph(Path(root))}


def default_exp_name(prefix: str = "ui") -> str:
    return f"{prefix}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


@flow(name="benchmark-experiment", log_prints=True)
def benchmark_experiment(
    name: str | None = None,
    uplink_mbps: float | None = None,
    rtt_ms: float | None = None,
    p_tar: dict[str, float] | None = None,
    deadline_p_tar: list[float] | None = None,
    branches: dict[str, list[str]] | None = None,
    trunk_epochs: int | None = None,
    joint_epochs: int | None = None,
    extra: dict[str, Any] | None = None,
    track: bool = True,
    wait_s: float = 0.0,
    root: str | None = None,
) -> dict[str, str]:
    """A named DVC experiment (`dvc exp run -n <name> -S ...`) from these parameters, then MLflow.

    Empty parameters keep params.yaml's values. p_tar: e.g. {"start": 0.5, "stop": 0.99, "step":
    0.01}; branches: e.g. {"one_branch": ["relu2"]}; extra: any other {"section.key": value}.
    """
    path = resolve_root(root)
    params = yaml.safe_load((path / "params.yaml").read_text())
    flat = experiment_settings(uplink_mbps, rtt_ms, p_tar, deadline_p_tar, branches, trunk_epochs, joint_epochs,
                               extra, params)
    check_params(with_settings(params, flat), f"params.yaml with {' '.join(set_args(flat))}")
    exp_name = name or default_exp_name()
    with workspace_lock(path, f"flow benchmark-experiment {exp_name}", wait_s):
        statuses = dvc_exp_run(str(path), exp_name, flat)
        publish_summary(str(path), statuses, title=f"DVC experiment {exp_name}")
        if track:
            track_run(str(path), exp_name)
    return statuses


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

def serve(limit: int = 1) -> None:
    """Serve both flows as deployments (runs from the Prefect UI); one run at a time."""
    from prefect import serve as prefect_serve

    prefect_serve(
        benchmark.to_deployment(name="eeoffload", description="dvc repro, stage by stage, then MLflow"),
        benchmark_experiment.to_deployment(name="eeoffload", description="a named DVC experiment with parameters"),
        limit=limit,
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pipeline.flows", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the benchmark flow in this workspace")
    run.add_argument("--no-track", action="store_true", help="skip MLflow logging")
    run.add_argument("--wait", type=float, default=0.0, help="seconds to wait for a run already in progress")
    run.add_argument("--root", default=None)
    exp = sub.add_parser("experiment", help="run a named DVC experiment through the flow")
    exp.add_argument("--name", default=None)
    exp.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE")
    exp.add_argument("--no-track", action="store_true")
    exp.add_argument("--root", default=None)
    sub.add_parser("serve", help="serve the deployments for the Prefect UI (needs PREFECT_API_URL)")
    sub.add_parser("dag", help="print the stage order read from DVC")
    args = ap.parse_args(argv)
    if args.cmd == "serve":
        serve()
        return
    if args.cmd == "dag":
        for stage, upstream in stage_graph(resolve_root(None)):
            print(stage, "<-", ", ".join(upstream) or "-")
        return
    if args.cmd == "run":
        state = benchmark(root=args.root, track=not args.no_track, wait_s=args.wait, return_state=True)
    else:
        extra = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.set)}
        state = benchmark_experiment(name=args.name, extra=extra, track=not args.no_track, root=args.root,
                                     return_state=True)
    if not state.is_completed():
        print(f"flow failed: {state.message}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
