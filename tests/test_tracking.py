"""MLflow logging of the tiny pipeline's outputs into a temporary SQLite store, read back."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import TinyRun

pytestmark = pytest.mark.integration

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("mlflow.pytorch")


def test_parent_and_child_runs_with_aligned_metric_keys(tiny_run: TinyRun, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from pipeline.tracking import log_pipeline_run

    assert tiny_run.proc.returncode == 0, tiny_run.proc.stderr[-2000:]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent_id = log_pipeline_run(tiny_run.root, dvc_exp_name="tiny", uri=uri)
    assert parent_id
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("eeoffload-benchmark")
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["dvc_exp_name"] == "tiny"
    assert "network.uplink_mbps" in parent.data.params and "variants.two_branch.branches" in parent.data.params
    assert len(parent.data.params["git_commit"]) == 40
    lock_sha = hashlib.sha256((tiny_run.root / "dvc.lock").read_bytes()).hexdigest()
    assert parent.data.tags["dvc_lock_sha256"] == lock_sha
    artifacts = {a.path for a in client.list_artifacts(parent_id)}
    assert {"figures", "report", "metrics", "calibration", "dvc"} <= artifacts

    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    children = [c for c in runs if c.data.tags["eeoffload_role"] == "child"]
    names = sorted(c.data.tags["mlflow.runName"] for c in children)
    assert names == ["one_branch/calibrated", "one_branch/conventional",
                     "two_branch/calibrated", "two_branch/conventional"]
    keys = {c.data.tags["mlflow.runName"]: set(c.data.metrics) for c in children}
    for key in ("acc_device/p0.85", "p_device/p0.85", "outage/p0.85", "acc_total/p0.85", "ece/exit1",
                "ece/final", "missed_deadline/p0.85/t50", "missed_deadline/p0.75/t100"):
        assert all(key in k for k in keys.values()), key
    # conventional and calibrated of one variant line up key for key in the compare view
    for variant in ("one_branch", "two_branch"):
        assert keys[f"{variant}/conventional"] == keys[f"{variant}/calibrated"]
    child = next(c for c in children if c.data.tags["mlflow.runName"] == "one_branch/calibrated")
    assert child.data.params["calibration"] == "calibrated"
    history = client.get_metric_history(child.info.run_id, "train/val_loss")
    assert sorted(m.step for m in history) == [1, 2]  # the training curve, one step per epoch
    conventional = next(c for c in children if c.data.tags["mlflow.runName"] == "one_branch/conventional")
    model_uri = conventional.data.tags["model_uri"]
    assert child.data.tags["model_uri"] == model_uri and model_uri.startswith("models:/")
    mlflow.set_tracking_uri(uri)
    try:
        model = mlflow.pytorch.load_model(model_uri)
    finally:
        mlflow.set_tracking_uri(None)
    assert model.branch_points == ["relu1"] and model.num_exits == 2

    # one child per variant x calibrator of the certify stage, with the same keys (compare view)
    methods = [c for c in runs if c.data.tags["eeoffload_role"] == "method"]
    configured = yaml.safe_load((tiny_run.root / "params.yaml").read_text())["calibration"]["methods"]
    assert sorted(c.data.tags["mlflow.runName"] for c in methods if c.data.tags["variant"] == "one_branch") == \
        sorted(f"one_branch/method:{m}" for m in configured)
    core = {"aurc", "ece/exit1", "ece/exit2", "ece/final", "violation_rate/t0.85/fixed_sequence",
            "p_device/t0.9/holm"}  # defined on any data (accuracy on device is not where nothing is kept)
    assert all(core <= set(c.data.metrics) for c in methods if c.data.tags["variant"] == "two_branch")

    # the same pipeline state again (DVC skipped everything): nothing new is logged
    assert log_pipeline_run(tiny_run.root, uri=uri) is None
    assert len(client.search_runs([exp.experiment_id])) == 1 + len(runs)


def test_unreachable_server_is_a_clear_error_in_seconds(tiny_run: TinyRun) -> None:
    from pipeline.tracking import TrackingError, log_pipeline_run

    start = time.monotonic()
    with pytest.raises(TrackingError, match=r"http://127\.0\.0\.1:9 .*unreachable.*complete and untouched"):
        log_pipeline_run(tiny_run.root, uri="http://127.0.0.1:9")
    assert time.monotonic() - start < 30


def test_no_pipeline_outputs_is_a_clear_error(tmp_path: Path) -> None:
    from pipeline.tracking import TrackingError, log_pipeline_run

    with pytest.raises(TrackingError, match="run the pipeline before logging"):
        log_pipeline_run(tmp_path, uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
