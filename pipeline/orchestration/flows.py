"""Prefect 3 flows over the DVC pipeline: every stage a task, DVC decides what is up to date.

* ``benchmark``: one task per DVC stage instance, in the order of the DAG that DVC builds from
  ``dvc.yaml`` (pipeline.orchestration.dag); each runs ``dvc repro --single-item <stage>`` and
  streams its output to the Prefect logger. A stage DVC skips ends in a completed state named
  ``Cached``; a failing stage fails its task with the stage's output in the error. The flow ends
  with a markdown artifact (headline metrics, path of ``reports/index.html``) and MLflow logging
  (``pipeline.orchestration.tracking``).
* ``benchmark-experiment``: the parameterised run for the Prefect UI (``make serve``). Its
  parameters become ``dvc exp run -n <name> -S key=value ...``: a named DVC experiment, then the
  same artifact and MLflow runs.

Never two runs in one workspace: every flow takes the workspace lock (pipeline.orchestration.lock)
before touching DVC. The params are checked (pipeline.core.params) before that. The CLI is
pipeline.orchestration.cli (``python -m pipeline flows``).

Length (about 330 lines): the two flows and their tasks (stage runner, summary artifact, MLflow);
the CLI, the lock, the DAG and the sweeps are modules of their own.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed

from pipeline.orchestration.dag import stage_graph
from pipeline.orchestration.dvc_commands import ran_stages, run_dvc, stage_status
from pipeline.orchestration.lock import workspace_lock
from pipeline.orchestration.project import resolve_root
from pipeline.orchestration.settings import check_params, exp_set_args, experiment_settings, with_settings

HEADLINE = ("p_device@0.85", "acc_device@0.85", "acc_total@0.85", "outage@0.85", "min_missed_deadline@0.85")


@task(name="dvc-stage", task_run_name="{stage}", cache_policy=NO_CACHE)
def dvc_stage(root: str, stage: str) -> Any:
    """`dvc repro --single-item <stage>`: DVC runs it only if its deps, params or outs changed."""
    logger = get_run_logger()
    lines = run_dvc(Path(root), ["repro", "--single-item", stage], f"stage {stage}", logger)
    if stage_status(stage, lines) == "cached":
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


@task(name="dvc-exp-run", task_run_name="dvc exp run -n {name}", cache_policy=NO_CACHE)
def dvc_exp_run(root: str, name: str, flat: dict[str, Any]) -> dict[str, str]:
    """`dvc exp run -n <name> -S ...` in the workspace: a named DVC experiment; output to the log.
    A failed experiment puts params.yaml back as it was (DVC leaves the experiment's values there,
    and every later `dvc repro` would fail the same way)."""
    params_file = Path(root) / "params.yaml"
    before = params_file.read_bytes()
    try:
        lines = run_dvc(Path(root), ["exp", "run", "-n", name, *exp_set_args(flat)], f"dvc exp run -n {name}",
                        get_run_logger())
    except BaseException:
        if params_file.read_bytes() != before:
            params_file.write_bytes(before)
            get_run_logger().warning("dvc exp run -n %s failed: params.yaml put back as it was before", name)
        raise
    ran = set(ran_stages(lines))
    return {stage: ("ran" if stage in ran else "cached") for stage, _ in stage_graph(Path(root))}


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
    """Log the pipeline's outputs to MLflow (pipeline.orchestration.tracking); TrackingError says what failed."""
    from pipeline.orchestration.tracking import log_pipeline_run

    return log_pipeline_run(Path(root), dvc_exp_name=dvc_exp_name, log=get_run_logger().info)


# ---------------------------------------------------------------------------------------------
# Flows
# ---------------------------------------------------------------------------------------------

def run_label(root: str | None, exp_name: str | None = None, experiment: bool = False,
              now: dt.datetime | None = None) -> str:
    """A flow run's name in Prefect's UI: the project folder (``smoke`` for build/smoke) and what ran,
    ``smoke · dvc repro · 20261204-190012`` or ``main · dvc exp quick-5mbps``."""
    try:
        project = resolve_root(root).name
    except FileNotFoundError:
        project = Path(root or Path.cwd()).name
    if experiment:
        return f"{project} · dvc exp {exp_name or 'run (auto name)'}"
    return f"{project} · dvc repro · {(now or dt.datetime.now()).strftime('%Y%m%d-%H%M%S')}"


def _benchmark_run_name() -> str:
    from prefect.runtime import flow_run

    return run_label(flow_run.parameters.get("root"))


def _experiment_run_name() -> str:
    from prefect.runtime import flow_run

    params = flow_run.parameters
    return run_label(params.get("root"), params.get("name"), experiment=True)


@flow(name="benchmark", log_prints=True, flow_run_name=_benchmark_run_name)
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


def default_exp_name(prefix: str = "ui") -> str:
    return f"{prefix}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


@flow(name="benchmark-experiment", log_prints=True, flow_run_name=_experiment_run_name)
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
    check_params(with_settings(params, flat), f"params.yaml with {' '.join(exp_set_args(flat))}")
    exp_name = name or default_exp_name()
    with workspace_lock(path, f"flow benchmark-experiment {exp_name}", wait_s):
        statuses = dvc_exp_run(str(path), exp_name, flat)
        publish_summary(str(path), statuses, title=f"DVC experiment {exp_name}")
        if track:
            track_run(str(path), exp_name)
    return statuses


def serve(limit: int = 1) -> None:
    """Serve both flows as deployments (runs from the Prefect UI); one run at a time."""
    from prefect import serve as prefect_serve

    prefect_serve(
        benchmark.to_deployment(name="eeoffload", description="dvc repro, stage by stage, then MLflow"),
        benchmark_experiment.to_deployment(name="eeoffload", description="a named DVC experiment with parameters"),
        limit=limit,
    )
