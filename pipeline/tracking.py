"""MLflow tracking of a finished pipeline run (never called by the DVC stages themselves).

One experiment (``eeoffload-benchmark``). Per pipeline run, a parent run and one child run per
variant x {conventional, calibrated}, all children with the same metric keys so that MLflow's
compare view lines them up:

* ``p_device/p0.85``, ``acc_device/p0.85``, ``acc_total/p0.85``, ``outage/p0.85``,
  ``outage_resampled/p0.85`` at p_tar in ``evaluate.deadline_p_tar`` plus 0.8 and 0.9;
* ``missed_deadline/p0.85/t50`` at t_tar in ``DEADLINES_MS`` for every p_tar of
  ``evaluate.deadline_p_tar``;
* ``ece/exit1``, ``mce/exit1``, ``nll/exit1``, ``brier/exit1``, ``accuracy/exit1``,
  ``temperature/exit1`` per exit, and the same for the final exit as ``.../final``;
* curves as step metrics: ``curve/<metric>`` with step = round(1000 p_tar),
  ``missed_deadline_curve/p0.85`` with step = t_tar in ms, and the training curve
  ``train/<column>`` with step = epoch.

Params: params.yaml flattened (``network.uplink_mbps``, ...), ``git_commit``, ``dvc_exp_name``;
children add ``variant``, ``calibration``. Artifacts on the parent: figures, report, metrics
Parquet, metrics.json, calibration tables, dvc.lock, params.yaml; the trained model through
``mlflow.pytorch`` (an MLflow 3 logged model named after the variant, from its conventional
child; both children carry its ``model_uri`` tag; load with ``mlflow.pytorch.load_model``).

Backend: ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<root>/mlflow.db``; with an SQLite backend the
artifacts go to ``mlartifacts/`` beside the database. The parent run is keyed on the SHA-256 of
dvc.lock: if a finished parent with that key exists, nothing new is logged (a run in which DVC
skipped every stage leaves dvc.lock as it was).

Where the certify stage ran (reports/certify/<variant>/), one more child per variant x calibrator
(``<variant>/method:<name>``, tag ``eeoffload_role = method``), every one with the same keys so
the compare view lines the calibrators up: ``ece/exit1``, ``ece_equal_mass/exit1``, ``brier/exit1``,
``nll/exit1`` (means over the splits, test part), ``aurc``, and per target and procedure
``violation_rate/t0.85/fixed_sequence``, ``p_device/...``, ``acc_device/...``,
``batch_outage/...`` (docs/certify.md).

CLI: ``python -m pipeline.tracking [--root DIR] [--exp-name NAME]``.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from pipeline.overlay import flatten

EXPERIMENT = "eeoffload-benchmark"
CALIBRATIONS = ("conventional", "calibrated")
EXTRA_P_TAR = (0.8, 0.9)
DEADLINES_MS = (10.0, 25.0, 50.0, 100.0, 150.0)
OFFLOAD_COLUMNS = ("p_device", "acc_device", "acc_total", "outage", "outage_resampled")
EXIT_COLUMNS = ("ece", "mce", "nll", "brier", "accuracy", "temperature")
PARENT_ARTIFACTS = (("reports/figures", "figures"), ("reports/index.html", "report"),
                    ("reports/metrics", "metrics"), ("reports/metrics.json", "metrics"),
                    ("reports/calibration", "calibration"), ("dvc.lock", "dvc"), ("params.yaml", "dvc"))


class TrackingError(RuntimeError):
    """MLflow logging failed; the pipeline's own outputs are untouched."""


def tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root.resolve() / 'mlflow.db'}"


def _after_failure(root: Path) -> str:
    return (f"The pipeline outputs in {root / 'reports'} and {root / 'data'} are complete and untouched; "
            f"log them later with `python -m pipeline.tracking --root {root}`.")


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


def _p(p: float) -> str:
    return f"p{p:g}"


def _t(t: float) -> str:
    return f"t{t:g}"


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def child_metrics(root: Path, params: dict[str, Any], variant: str, calibration: str) -> tuple[
        dict[str, float], list[tuple[str, float, int]]]:
    """(single-value metrics, [(key, value, step)] curves) of one variant x calibration."""
    metrics: dict[str, float] = {}
    steps: list[tuple[str, float, int]] = []
    deadline_p = [float(p) for p in params["evaluate"]["deadline_p_tar"]]

    offload = pd.read_parquet(root / "reports" / "metrics" / variant / "offload.parquet")
    offload = offload[offload["calibration"] == calibration].sort_values("p_tar")
    for p in sorted(set(deadline_p) | set(EXTRA_P_TAR)):
        row = offload[np.isclose(offload["p_tar"], p, atol=1e-6)]
        if row.empty:
            continue
        for col in OFFLOAD_COLUMNS:
            if col in row:  # NaN (e.g. accuracy on the device when nothing stays there) kept: same keys
                v = _finite(row[col].iloc[0])
                metrics[f"{col}/{_p(p)}"] = math.nan if v is None else v
    for _, row in offload.iterrows():  # NaN points kept, so every child has every curve key
        for col in OFFLOAD_COLUMNS:
            if col in row:
                v = _finite(row[col])
                steps.append((f"curve/{col}", math.nan if v is None else v, int(round(1000 * row["p_tar"]))))

    deadline = pd.read_parquet(root / "reports" / "metrics" / variant / "deadline.parquet")
    deadline = deadline[deadline["calibration"] == calibration]
    for p in deadline_p:
        curve = deadline[np.isclose(deadline["p_tar"], p, atol=1e-6)].sort_values("t_tar_ms")
        for t in DEADLINES_MS:
            row = curve[np.isclose(curve["t_tar_ms"], t)]
            if not row.empty:
                v = _finite(row["missed_deadline"].iloc[0])
                metrics[f"missed_deadline/{_p(p)}/{_t(t)}"] = math.nan if v is None else v
        for t, v in zip(curve["t_tar_ms"], curve["missed_deadline"], strict=True):
            if float(t).is_integer():
                v = _finite(v)
                steps.append((f"missed_deadline_curve/{_p(p)}", math.nan if v is None else v, int(t)))

    exits = pd.read_parquet(root / "reports" / "calibration" / f"{variant}_exits.parquet")
    exits = exits[exits["calibration"] == calibration]
    final = int(exits["exit"].max()) if not exits.empty else None
    for _, row in exits.iterrows():
        names = [f"exit{int(row['exit'])}"] + (["final"] if int(row["exit"]) == final else [])
        for col in EXIT_COLUMNS:
            if col in row and (v := _finite(row[col])) is not None:
                for name in names:
                    metrics[f"{col}/{name}"] = v

    training = root / "reports" / "training" / f"{variant}.csv"
    if training.exists():
        curve = pd.read_csv(training)
        for _, row in curve.iterrows():
            for col in curve.columns:
                if col in ("epoch", "phase"):
                    continue
                if (v := _finite(row[col])) is not None:
                    steps.append((f"train/{col}", v, int(row["epoch"])))
    return metrics, steps


def method_metrics(folder: Path) -> dict[str, dict[str, float]]:
    """{calibrator: {metric key: value}} from a certify folder (validity, exits and aurc tables)."""
    validity = pd.read_parquet(folder / "validity.parquet")
    exits = pd.read_parquet(folder / "exits.parquet").groupby(["method", "exit"]).mean(numeric_only=True)
    aurc = pd.read_parquet(folder / "aurc.parquet").groupby("method")["aurc"].mean()
    n_exits = int(exits.index.get_level_values("exit").max())
    out: dict[str, dict[str, float]] = {}
    for method in dict.fromkeys(validity["method"]):
        m: dict[str, float] = {"aurc": float(aurc.get(method, float("nan")))}
        for k in range(1, n_exits + 1):
            name = "final" if k == n_exits else f"exit{k}"
            for col in ("ece", "ece_equal_mass", "brier", "nll"):
                m[f"{col}/{name}"] = float(exits.loc[(method, k), col])
        for row in validity[validity["method"] == method].itertuples():
            key = f"t{row.target:g}/{row.procedure}"
            m |= {f"violation_rate/{key}": row.violation_rate, f"p_device/{key}": row.mean_p_device,
                  f"acc_device/{key}": row.mean_acc_device, f"batch_outage/{key}": row.mean_batch_outage}
        out[method] = {k: v for k, v in m.items() if _finite(v) is not None}
    return out


def _git(root: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=root, text=True, capture_output=True)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _params_for_mlflow(flat: dict[str, Any]) -> dict[str, str]:
    return {k: (str(v) if not isinstance(v, (list, dict)) else yaml.safe_dump(v, default_flow_style=True).strip())[:6000]
            for k, v in flat.items()}


def _log_batch(client: Any, run_id: str, metrics: dict[str, float], steps: list[tuple[str, float, int]],
               params: dict[str, str] | None = None, tags: dict[str, str] | None = None) -> None:
    import time

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
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=location)


def _log_model(root: Path, uri: str, run_id: str, variant: str, branches: list[str]) -> str:
    """Log data/models/<variant>.pt as an MLflow PyTorch model of run ``run_id``; its model URI."""
    import mlflow
    import mlflow.pytorch
    import torch

    from eeoffload.model import BAlexNet

    state = torch.load(root / "data" / "models" / f"{variant}.pt", map_location="cpu", weights_only=True)
    model = BAlexNet(state.get("branches", branches))
    model.load_state_dict(state["state_dict"])
    model.eval()
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run(run_id=run_id):
            # pickle with the model code beside it (pt2 needs a TensorSpec signature, and forward
            # returns a list of exits); load with mlflow.pytorch.load_model
            info = mlflow.pytorch.log_model(model, name=f"{variant}", serialization_format="pickle",
                                     code_paths=[str(root / "src" / "eeoffload")],
                                     pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
    finally:
        mlflow.set_tracking_uri(previous)
    return info.model_uri


def log_pipeline_run(root: Path, dvc_exp_name: str | None = None, uri: str | None = None,
                     experiment: str = EXPERIMENT, log_model: bool = True,
                     log: Callable[[str], Any] = print) -> str | None:
    """Log the outputs of the pipeline in ``root``; the parent run's id, or None if already logged."""
    root = Path(root).resolve()
    uri = uri or tracking_uri(root)
    lock = root / "dvc.lock"
    if not lock.exists() or not (root / "reports" / "metrics.json").exists():
        raise TrackingError(f"{root}: no dvc.lock or reports/metrics.json; run the pipeline before logging it")
    lock_sha = hashlib.sha256(lock.read_bytes()).hexdigest()
    params = yaml.safe_load((root / "params.yaml").read_text())
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
        common = {**flat, "git_commit": commit, "dvc_exp_name": exp_label}
        tags = {"dvc_lock_sha256": lock_sha, "git_commit": commit, "git_dirty": str(dirty).lower(),
                "dvc_exp_name": exp_label, "project_root": str(root)}
        parent = client.create_run(exp_id, run_name=f"{exp_label} {lock_sha[:8]}",
                                   tags={**tags, "eeoffload_role": "parent"})
        parent_id = parent.info.run_id
        try:
            _log_batch(client, parent_id, {}, [], params=common)
            for rel, dest in PARENT_ARTIFACTS:
                path = root / rel
                if path.is_dir():
                    client.log_artifacts(parent_id, str(path), dest)
                elif path.is_file():
                    client.log_artifact(parent_id, str(path), dest)
            for variant, spec in params["variants"].items():
                model_uri = None
                for calibration in CALIBRATIONS:
                    metrics, steps = child_metrics(root, params, variant, calibration)
                    child = client.create_run(exp_id, run_name=f"{variant}/{calibration}", tags={
                        **tags, "eeoffload_role": "child", MLFLOW_PARENT_RUN_ID: parent_id,
                        MLFLOW_RUN_NAME: f"{variant}/{calibration}", "variant": variant,
                        "calibration": calibration})
                    cid = child.info.run_id
                    _log_batch(client, cid, metrics, steps,
                               params={**common, "variant": variant, "calibration": calibration})
                    cal_file = root / "data" / "calibration" / f"{variant}.json"
                    if calibration == "calibrated" and cal_file.exists():
                        client.log_artifact(cid, str(cal_file), "calibration")
                    if log_model and (root / "data" / "models" / f"{variant}.pt").exists():
                        if model_uri is None:  # one model per variant, on its first child
                            model_uri = _log_model(root, uri, cid, variant, list(spec["branches"]))
                        client.set_tag(cid, "model_uri", model_uri)
                    client.set_terminated(cid)
                    log(f"MLflow: child run {variant}/{calibration} ({cid}): {len(metrics)} metrics, "
                        f"{len(steps)} curve points")
                certify = root / "reports" / "certify" / variant
                if (certify / "validity.parquet").is_file():
                    for method, metrics in method_metrics(certify).items():
                        name = f"{variant}/method:{method}"
                        child = client.create_run(exp_id, run_name=name, tags={
                            **tags, "eeoffload_role": "method", MLFLOW_PARENT_RUN_ID: parent_id,
                            MLFLOW_RUN_NAME: name, "variant": variant, "method": method})
                        _log_batch(client, child.info.run_id, metrics, [],
                                   params={**common, "variant": variant, "method": method})
                        client.set_terminated(child.info.run_id)
                    log(f"MLflow: one child run per calibrator of {variant} (certify)")
        except BaseException:
            client.set_terminated(parent_id, status="FAILED")
            raise
        client.set_terminated(parent_id)
        log(f"MLflow: parent run {parent_id} in experiment {experiment!r} at {uri}")
        return parent_id
    except MlflowException as e:
        raise TrackingError(f"MLflow logging to {uri} failed: {str(e).splitlines()[0]}. "
                            + _after_failure(root)) from e
    except OSError as e:
        raise TrackingError(f"MLflow logging to {uri} failed: {e}. " + _after_failure(root)) from e


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pipeline.tracking", description=__doc__.splitlines()[0])
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


if __name__ == "__main__":
    main()
