"""MLflow tracking of a finished pipeline run (never called by the DVC stages themselves).

One experiment (``eeoffload-benchmark``), declared a model-training experiment (experiment tag
``mlflow.experimentKind = custom_model_development``, the tag MLflow's own UI writes when one picks
the experiment type) and given two saved views of its runs table (experiment tags
``mlflow.sharedViewState.<id>``, the store of the UI's *Views* menu) that show the headline metrics
as columns. MLflow 3.17's UI takes its GenAI / Model-training navigation from a per-browser switch,
not from the tag; :func:`experiment_url` is the link that opens the model-training runs table with
the first view (``?workflowType=machine_learning&viewStateShareKey=...``), logged at the end. Per
pipeline run a parent run and one child run per variant x {conventional,
calibrated}, named ``one-branch conventional``, ``two-branch calibrated``, ..., all children with
the same metric keys so that MLflow's compare view lines them up:

* ``p_device/p0.85``, ``acc_device/p0.85``, ``acc_total/p0.85``, ``outage/p0.85``,
  ``outage_resampled/p0.85`` at p_tar in ``evaluate.deadline_p_tar`` plus 0.8 and 0.9;
* ``missed_deadline/p0.85/t50`` at t_tar in ``DEADLINES_MS`` for every p_tar of
  ``evaluate.deadline_p_tar``;
* ``ece/exit1``, ``mce/exit1``, ``nll/exit1``, ``brier/exit1``, ``accuracy/exit1``,
  ``temperature/exit1`` per exit, and the same for the final exit as ``.../final``;
* where the metrics are aggregated over training seeds (``train.seeds``), evaluate's t-interval of
  the mean over the seeds (NaN below 3 seeds) of the offload and deadline values:
  ``p_device_seed_lo/p0.85``, ``p_device_seed_hi/p0.85``, ...;
  the exit metrics are means over the seeds' tables;
* the training curve ``train/<column>`` with step = epoch (of the first seed).

The curves over p_tar and over the deadline are not step metrics (an MLflow step is an iteration
counter; p_tar is not one): each child carries them as tables logged with ``log_table``
(``curves/offload.json``, ``curves/missed_deadline.json``, ``curves/reliability.json``, rendered and
compared across runs by the UI's artifact view) and as figures (``figures/p_device.png``,
``figures/outage.png``, ``figures/missed_deadline.png``, ``figures/reliability.png``), the same
names in every child. Every run also has ``metrics.json`` at its artifact root (its metrics; the
parent's: the headline): the one root file all runs share, which MLflow's compare view needs.

Params: params.yaml flattened (``network.uplink_mbps``, ...), ``git_commit``, ``dvc_exp_name``,
``n_seeds``; children add ``variant``, ``calibration``. Artifacts on the parent: figures, report,
metrics Parquet, metrics.json, calibration tables, dvc.lock, params.yaml; the trained model of the
first seed through ``mlflow.pytorch`` (an MLflow 3 logged model named after the variant, from its
conventional child; both children carry its ``model_uri`` tag; load with
``mlflow.pytorch.load_model``).

Backend: ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<root>/mlflow.db``; with an SQLite backend the
artifacts go to ``mlartifacts/`` beside the database. The parent run is keyed on the SHA-256 of
dvc.lock: if a finished parent with that key exists, nothing new is logged (a run in which DVC
skipped every stage leaves dvc.lock as it was).

Where the certify stage ran (reports/certify/<variant>/seed<k>/), one more child per variant x
calibrator (``one-branch · isotonic``, tag ``eeoffload_role = method``), every one with the same keys
(means over the splits and the seeds) so the compare view lines the calibrators up: ``ece/exit1``,
``ece_equal_mass/exit1``, ``brier/exit1``, ``nll/exit1`` (test part), ``aurc``, and per target and
procedure ``violation_rate/t0.85/fixed_sequence``, ``p_device/...``, ``acc_device/...``,
``batch_outage/...`` (docs/certify.md).

CLI: ``python -m pipeline tracking [--root DIR] [--exp-name NAME]``. The metrics and tables come from
:mod:`pipeline.orchestration.tracking_tables`, the experiment's kind and views from
:mod:`pipeline.orchestration.tracking_views`.

Length (about 320 lines): the MLflow calls of one logging pass (experiment, parent, children,
model, calibrators); what is logged is in tracking_tables, the experiment's look in tracking_views.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from pipeline.core import params as P
from pipeline.core import registry
from pipeline.orchestration.project import mlflow_store_uri
from pipeline.orchestration.tracking_model import log_pytorch_model
from pipeline.orchestration.tracking_shift import shift_runs
from pipeline.orchestration.tracking_tables import (CALIBRATIONS, child_figures, child_metrics, child_tables,
                                                    seed_method_metrics, seeds_of)
from pipeline.orchestration.tracking_views import (EXPERIMENT, VIEW_TAG_PREFIX, experiment_tags, experiment_url,
                                                   same_view)
from pipeline.core.overlay import flatten

PARENT_ARTIFACTS = ((registry.FIGURES, "figures"), (registry.REPORT_HTML, "report"),
                    (registry.METRICS, "metrics"), (registry.METRICS_JSON, "metrics"),
                    (registry.CALIBRATION_TABLES, "calibration"), (Path("dvc.lock"), "dvc"),
                    (Path("params.yaml"), "dvc"))


#: The file every run (parent, children, calibrators) logs at its artifact root, under this one name:
#: MLflow's compare view shows only the root files that all the compared runs have ("No common
#: artifacts to display" otherwise; every other artifact is in a folder). The run's metrics (the
#: parent: reports/headline.json), an undefined value as "undefined", as in reports/headline.json.
RUN_METRICS_ARTIFACT = "metrics.json"


def _log_run_metrics(client: Any, run_id: str, metrics: dict[str, Any]) -> None:
    def value(v: Any) -> Any:
        return "undefined" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v

    client.log_dict(run_id, {k: value(v) if not isinstance(v, dict) else v for k, v in sorted(metrics.items())},
                    RUN_METRICS_ARTIFACT)


class TrackingError(RuntimeError):
    """MLflow logging failed; the pipeline's own outputs are untouched."""


def tracking_uri(root: Path) -> str:
    """$MLFLOW_TRACKING_URI, else the project's store (the one ``make ui`` serves)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or mlflow_store_uri(root)


def run_name(variant: str, what: str | None = None) -> str:
    """A child run's name as the UI shows it: ``one-branch calibrated (isotonic)``, ``two-branch · isotonic``."""
    label = variant.replace("_", "-")
    return f"{label} {what}" if what else label


def _after_failure(root: Path) -> str:
    return (f"The pipeline outputs in {root / 'reports'} and {root / 'data'} are complete and untouched; "
            f"log them later with `python -m pipeline tracking --root {root}`.")


def check_reachable(uri: str, root: Path, timeout: float = 5.0) -> None:
    """Fail in seconds (not after MLflow's minutes of retries) if an HTTP tracking server is down."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).close()  # noqa: S310
    except urllib.error.HTTPError:
        return  # it answers: reachable
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise TrackingError(
            f"MLflow tracking server {uri} (MLFLOW_TRACKING_URI) is unreachable: {reason}. "
            f"Start it (`make ui`) or unset MLFLOW_TRACKING_URI to use sqlite:///{root / 'mlflow.db'}. "
            + _after_failure(root)) from None


def _git(root: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=root, text=True, capture_output=True)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _params_for_mlflow(flat: dict[str, Any]) -> dict[str, str]:
    return {k: (str(v) if not isinstance(v, (list, dict)) else yaml.safe_dump(v, default_flow_style=True).strip())[:6000]
            for k, v in flat.items()}


def _log_batch(client: Any, run_id: str, metrics: dict[str, float], steps: list[tuple[str, float, int]],
               params: dict[str, str] | None = None, tags: dict[str, str] | None = None) -> None:
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    entries = [Metric(k, v, now, 0) for k, v in metrics.items()] + [Metric(k, v, now, s) for k, v, s in steps]
    for i in range(0, len(entries), 900):
        client.log_batch(run_id, metrics=entries[i:i + 900])
    items = list((params or {}).items())
    for i in range(0, len(items), 90):
        client.log_batch(run_id, params=[Param(k, v) for k, v in items[i:i + 90]])
    if tags:
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])


def _experiment_id(client: Any, uri: str, name: str) -> str:
    """The experiment's id, created with its tags, or, existing, with its kind and views (re)set."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        for key, value in experiment_tags().items():
            current = experiment.tags.get(key)
            if key == "mlflow.note.content" and current:
                continue  # a description edited in the UI stays
            if key.startswith(VIEW_TAG_PREFIX) and current and same_view(current, value):
                continue  # unchanged view: keep its creation time
            if current != value:
                client.set_experiment_tag(experiment.experiment_id, key, value)
        return experiment.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=location, tags=experiment_tags())


def child_label(calibration: str, method: str) -> str:
    """A child's calibration as its name shows it: ``conventional``, ``calibrated (isotonic)`` (the
    calibrator of calibration.method)."""
    return f"{calibration} ({method})" if calibration == "calibrated" else calibration


def _child_description(variant: str, calibration: str, n_seeds: int) -> str:
    return (f"{variant}, {calibration} exits, metrics over {n_seeds} training seed(s) (mean; "
            "`*_seed_lo`/`*_seed_hi`: t-interval over the seeds, NaN below 3). `p0.85` = target confidence p_tar 0.85, "
            "`t50` = deadline 50 ms. Curves: artifacts `curves/*.json` (tables) and `figures/*.png`.")


def log_pipeline_run(root: Path, dvc_exp_name: str | None = None, uri: str | None = None,
                     experiment: str = EXPERIMENT, log_model: bool = True,
                     log: Callable[[str], Any] = print) -> str | None:
    """Log the outputs of the pipeline in ``root``; the parent run's id, or None if already logged."""
    root = Path(root).resolve()
    uri = uri or tracking_uri(root)
    lock = root / "dvc.lock"
    if not lock.exists() or not (root / registry.METRICS_JSON).exists():
        raise TrackingError(f"{root}: no dvc.lock or {registry.METRICS_JSON}; run the pipeline before logging it")
    lock_sha = hashlib.sha256(lock.read_bytes()).hexdigest()
    params = yaml.safe_load((root / "params.yaml").read_text())
    seeds, variants = seeds_of(params), P.variants_params(params)  # typed (StageError on a bad value) before any run
    check_reachable(uri, root)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

    try:
        client = MlflowClient(tracking_uri=uri)
        exp_id = _experiment_id(client, uri, experiment)
        done = client.search_runs(
            [exp_id], filter_string=f"tags.dvc_lock_sha256 = '{lock_sha}' and tags.eeoffload_role = 'parent' "
                                    "and attributes.status = 'FINISHED'", max_results=1)
        if done:
            log(f"MLflow: this pipeline state (dvc.lock {lock_sha[:12]}) is already logged as run "
                f"{done[0].info.run_id}; nothing new to log")
            return None
        commit = _git(root, "rev-parse", "HEAD") or "unknown"
        dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
        exp_label = dvc_exp_name or "workspace"
        flat = _params_for_mlflow(flatten(params))
        calibration_method = str((params.get("calibration") or {}).get("method", "temperature"))
        common = {**flat, "git_commit": commit, "dvc_exp_name": exp_label, "n_seeds": str(len(seeds))}
        tags = {"dvc_lock_sha256": lock_sha, "git_commit": commit, "git_dirty": str(dirty).lower(),
                "dvc_exp_name": exp_label, "project_root": str(root), "n_seeds": str(len(seeds))}
        parent = client.create_run(exp_id, run_name=f"{exp_label} {lock_sha[:8]}", tags={
            **tags, "eeoffload_role": "parent", "mlflow.note.content":
                f"Pipeline state dvc.lock {lock_sha[:12]} ({exp_label}), {len(seeds)} training seed(s) "
                f"{list(seeds)}. Children: one per variant x calibration; their metric keys and curve "
                "artifacts are described on the experiment and in docs/orchestration.md."})
        parent_id = parent.info.run_id
        try:
            _log_batch(client, parent_id, {}, [], params=common)
            headline = root / registry.HEADLINE_JSON
            _log_run_metrics(client, parent_id, json.loads(headline.read_text()) if headline.is_file() else {})
            for rel, dest in PARENT_ARTIFACTS:
                path = root / rel
                if path.is_dir():
                    client.log_artifacts(parent_id, str(path), dest)
                elif path.is_file():
                    client.log_artifact(parent_id, str(path), dest)
            for variant, spec in variants.items():
                model_uri = None
                for calibration in CALIBRATIONS:
                    metrics, steps = child_metrics(root, params, variant, calibration)
                    tables = child_tables(root, params, variant, calibration)
                    calibrator = calibration_method if calibration == "calibrated" else "none"
                    name = run_name(variant, child_label(calibration, calibration_method))
                    child = client.create_run(exp_id, run_name=name, tags={
                        **tags, "eeoffload_role": "child", MLFLOW_PARENT_RUN_ID: parent_id,
                        MLFLOW_RUN_NAME: name, "variant": variant, "calibration": calibration,
                        "calibrator": calibrator,
                        "mlflow.note.content": _child_description(variant, calibration, len(seeds))})
                    cid = child.info.run_id
                    _log_batch(client, cid, metrics, steps,
                               params={**common, "variant": variant, "calibration": calibration})
                    _log_run_metrics(client, cid, metrics)
                    for file, table in tables.items():
                        client.log_table(cid, data=table, artifact_file=file)
                    for file, figure in child_figures(tables, name).items():
                        client.log_figure(cid, figure, file)
                    if calibration == "calibrated":
                        for seed in seeds:
                            if (cal_file := root / registry.calibration_path(variant, seed)).is_file():
                                client.log_artifact(cid, str(cal_file), "calibration")  # seed<k>.json
                    if log_model and (root / registry.model_path(variant, seeds.first)).exists():
                        if model_uri is None:  # one model per variant (its first seed), on its first child
                            model_uri = log_pytorch_model(root, uri, cid, variant, seeds.first, list(spec.branches))
                        client.set_tag(cid, "model_uri", model_uri)
                    client.set_terminated(cid)
                    log(f"MLflow: child run {name!r} ({cid}): {len(metrics)} metrics, {len(tables)} curve "
                        f"tables, {len(steps)} training-curve points")
                methods = seed_method_metrics(root, variant, seeds)
                for method, metrics in methods.items():
                    name = run_name(variant, f"· {method.replace('_', ' ')}")
                    child = client.create_run(exp_id, run_name=name, tags={
                        **tags, "eeoffload_role": "method", MLFLOW_PARENT_RUN_ID: parent_id,
                        MLFLOW_RUN_NAME: name, "variant": variant, "method": method})
                    _log_batch(client, child.info.run_id, metrics, [],
                               params={**common, "variant": variant, "method": method})
                    _log_run_metrics(client, child.info.run_id, metrics)
                    client.set_terminated(child.info.run_id)
                if methods:
                    log(f"MLflow: one child run per calibrator of {variant} (certify)")
                # --- distribution shift (docs/shift.md): one child per shifted seed
                for seed, metrics in shift_runs(root, variant, seeds).items():
                    name = run_name(variant, f"· shift seed {seed}")
                    child = client.create_run(exp_id, run_name=name, tags={
                        **tags, "eeoffload_role": "shift", MLFLOW_PARENT_RUN_ID: parent_id,
                        MLFLOW_RUN_NAME: name, "variant": variant, "seed": str(seed)})
                    _log_batch(client, child.info.run_id, metrics, [], params={**common, "variant": variant})
                    client.log_artifact(child.info.run_id, str(root / registry.shift_dir(variant, seed) / "summary.json"),
                                        "shift")
                    client.set_terminated(child.info.run_id)
                    log(f"MLflow: child run {name!r}: {len(metrics)} shift metrics")
                # --- end distribution shift
        except BaseException:
            client.set_terminated(parent_id, status="FAILED")
            raise
        client.set_terminated(parent_id)
        log(f"MLflow: parent run {parent_id} in experiment {experiment!r} at {uri}")
        ui = (uri if uri.startswith(("http://", "https://"))
              else f"http://127.0.0.1:{os.environ.get('MLFLOW_PORT', 5000)}")  # make ui's port
        log(f"MLflow UI ({'the tracking server' if ui == uri else 'make ui'}): {experiment_url(ui, exp_id)}")
        return parent_id
    except MlflowException as e:
        raise TrackingError(f"MLflow logging to {uri} failed: {str(e).splitlines()[0]}. "
                            + _after_failure(root)) from e
    except OSError as e:
        raise TrackingError(f"MLflow logging to {uri} failed: {e}. " + _after_failure(root)) from e


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pipeline tracking", description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=".")
    ap.add_argument("--exp-name", default=None, help="DVC experiment name to record (default: workspace)")
    ap.add_argument("--no-model", action="store_true", help="skip mlflow.pytorch model logging")
    args = ap.parse_args(argv)
    root = Path(args.root).resolve()
    sys.path.insert(0, str(root / "src"))
    try:
        log_pipeline_run(root, args.exp_name, log_model=not args.no_model)
    except TrackingError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
