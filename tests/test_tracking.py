"""MLflow logging of a pipeline's outputs into a temporary SQLite store, read back.

The outputs are a small synthetic set in the layout of pipeline.core.registry (per-run artifacts under
``<variant>/seed<k>``, evaluate's tables aggregated over the seeds), written by
:func:`make_pipeline_outputs`; tests/test_mlflow_ui.py uses it too.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.core import registry

pytestmark = pytest.mark.integration

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("mlflow.pytorch")

VARIANTS = {"one_branch": ["relu1"], "two_branch": ["relu1", "relu2"]}
DEADLINE_P_TAR = [0.75, 0.825, 0.85]
METHODS = ["temperature", "isotonic"]
BANDS = ("seed_lo", "seed_hi", "seed_min", "seed_max", "seed_n")


def _with_bands(frame: pd.DataFrame, cols: Sequence[str], n_seeds: int) -> pd.DataFrame:
    """evaluate's seed-aggregate columns: ``<col>_seed_lo/_hi/_min/_max/_n`` and ``n_seeds``."""
    for col in cols:
        frame[f"{col}_seed_lo"] = frame[col] - 0.02
        frame[f"{col}_seed_hi"] = frame[col] + 0.02
        frame[f"{col}_seed_min"] = frame[col] - 0.01
        frame[f"{col}_seed_max"] = frame[col] + 0.01
        frame[f"{col}_seed_n"] = n_seeds
    frame["n_seeds"] = n_seeds
    return frame


def make_pipeline_outputs(root: Path, seeds: Sequence[int] = (0, 1), models: bool = True,
                          certify: bool = True) -> Path:
    """A finished pipeline's outputs under ``root`` (registry layout), small and deterministic."""
    import torch

    from eeoffload.model import BAlexNet

    root.mkdir(parents=True, exist_ok=True)
    params = {
        "data": {"seed": 0},
        "variants": {v: {"branches": b, "exit_weights": [1.0] * (len(b) + 1)} for v, b in VARIANTS.items()},
        "train": {"seeds": list(seeds), "trunk_epochs": 1, "joint_epochs": 1},
        "calibration": {"methods": METHODS},
        "network": {"uplink_mbps": 18.8},
        "evaluate": {"deadline_p_tar": DEADLINE_P_TAR},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "dvc.lock").write_text(f"schema: '2.0'\nstages: {{}}\n# {root.name}\n")
    reports = root / registry.REPORTS
    (root / registry.FIGURES).mkdir(parents=True, exist_ok=True)
    (root / registry.FIGURES / "fig2_p_device.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / registry.REPORT_HTML).write_text("<html><body>report</body></html>")
    n = len(seeds)
    p = np.round(np.arange(0.5, 0.9901, 0.005), 3)
    metrics_json: dict[str, dict[str, dict[str, float]]] = {}
    for vi, (variant, branches) in enumerate(VARIANTS.items()):
        n_exits = len(branches) + 1
        rows, drows = [], []
        for ci, cal in enumerate(("conventional", "calibrated")):
            p_dev = np.clip(0.95 * (1 - p) ** 0.6 + 0.05 - 0.1 * ci, 0, 1)
            rows.append(pd.DataFrame({
                "calibration": cal, "p_tar": p, "p_device": p_dev, "conf_device": p + 0.01,
                "acc_device": np.where(p > 0.985, np.nan, np.minimum(p + 0.02 * ci, 1.0)),  # nothing on the device
                "acc_total": 0.8 + 0.05 * p + 0.01 * ci, "outage": np.clip((p - 0.8) / 0.2, 0, 1) * (1 - 0.5 * ci),
                "n_batches": 10, "outage_resampled": np.clip((p - 0.8) / 0.2, 0, 1)}))
            t = np.arange(0.0, 201.0, 5.0)
            for pt in DEADLINE_P_TAR:
                drows.append(pd.DataFrame({"calibration": cal, "p_tar": pt, "t_tar_ms": t,
                                           "missed_deadline": np.clip(1 - t / (120 + 40 * ci + 10 * vi), 0, 1),
                                           "n_batches": 10, "n_missed_batches": 3}))
        offload = _with_bands(pd.concat(rows, ignore_index=True).round(4),
                              ["p_device", "acc_device", "acc_total", "outage"], n)
        deadline = _with_bands(pd.concat(drows, ignore_index=True).round(4), ["missed_deadline"], n)
        folder = root / registry.metrics_dir(variant)
        folder.mkdir(parents=True, exist_ok=True)
        offload.to_parquet(folder / "offload.parquet", index=False)
        deadline.to_parquet(folder / "deadline.parquet", index=False)
        metrics_json[variant] = {"conventional": {"p_device_mean": 0.5}, "calibrated": {"p_device_mean": 0.4}}
        for si, seed in enumerate(seeds):
            exits = pd.DataFrame([{"exit": k, "calibration": cal, "temperature": 1.0 + ci * (0.5 + si),
                                   "accuracy": 0.6 + 0.1 * k, "ece": 0.1 * (1 - ci) + 0.01 * k + 0.02 * si,
                                   "mce": 0.2, "nll": 1.0 + si, "brier": 0.5}
                                  for k in range(1, n_exits + 1)
                                  for ci, cal in enumerate(("conventional", "calibrated"))])
            path = root / registry.calibration_exits_path(variant, seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            exits.to_parquet(path, index=False)
            lower = np.arange(10) / 10
            rel = pd.DataFrame([{"exit": k, "calibration": cal, "bin": b, "bin_lower": lower[b],
                                 "bin_upper": lower[b] + 0.1, "count": 0 if b < 2 else 10 + si,
                                 "confidence": np.nan if b < 2 else lower[b] + 0.05,
                                 "accuracy": np.nan if b < 2 else lower[b] + 0.05 - 0.1 * (1 - ci)}
                                for k in range(1, n_exits + 1) for ci, cal in enumerate(("conventional", "calibrated"))
                                for b in range(10)])
            rel.to_parquet(root / registry.reliability_path(variant, seed), index=False)
            path = root / registry.training_csv(variant, seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame({"epoch": [1, 2], "phase": ["trunk", "joint"], "train_loss": [2.0, 1.5],
                          "val_loss": [1.9 + seed, 1.6 + seed], "val_acc_exit1": [0.3, 0.4]}).to_csv(path, index=False)
            path = root / registry.calibration_path(variant, seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"method": "temperature",
                                        "temperatures": {str(k): 1.5 for k in range(1, n_exits + 1)}}))
            if models:
                torch.manual_seed(seed)
                path = root / registry.model_path(variant, seed)
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save({"state_dict": BAlexNet(branches).state_dict(), "branches": branches}, path)
            if certify:
                folder = root / registry.certify_dir(variant, seed)
                folder.mkdir(parents=True, exist_ok=True)
                pd.DataFrame([{"method": m, "target": t, "procedure": proc, "violation_rate": 0.05 * si,
                               "mean_p_device": 0.5, "mean_acc_device": 0.9, "mean_batch_outage": 0.1}
                              for m in METHODS for t in (0.85, 0.9) for proc in ("fixed_sequence", "holm")]
                             ).to_parquet(folder / "validity.parquet", index=False)
                pd.DataFrame([{"method": m, "exit": k, "split": s, "ece": 0.01 * (mi + 1) + 0.01 * si,
                               "ece_equal_mass": 0.02, "brier": 0.3, "nll": 0.9}
                              for mi, m in enumerate(METHODS) for k in range(1, n_exits + 1) for s in (0, 1)]
                             ).to_parquet(folder / "exits.parquet", index=False)
                pd.DataFrame([{"method": m, "split": s, "aurc": 0.1} for m in METHODS for s in (0, 1)]
                             ).to_parquet(folder / "aurc.parquet", index=False)
    (reports / "metrics.json").write_text(json.dumps(metrics_json))
    return root


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pipeline_outputs(tmp_path_factory.mktemp("project") / "p")


def test_parent_and_child_runs_with_aligned_metric_keys(outputs: Path, tmp_path: Path) -> None:
    import torch
    from mlflow import MlflowClient

    from pipeline.orchestration.tracking import log_pipeline_run
    from pipeline.orchestration.tracking_views import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, VIEW_TAG_PREFIX

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    lines: list[str] = []
    parent_id = log_pipeline_run(outputs, dvc_exp_name="tiny", uri=uri, log=lines.append)
    assert parent_id
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("eeoffload-benchmark")
    # a model-training experiment, with a saved view of the runs table that shows metric columns
    assert exp.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND == "custom_model_development"
    view = json.loads(exp.tags[VIEW_TAG_PREFIX + "conventional-vs-calibrated"])
    assert view["name"] == "conventional vs calibrated"
    state = json.loads(view["state"])
    assert "metrics.`acc_device/p0.85`" in state["selectedColumns"]
    assert state["searchFilter"] == "tags.eeoffload_role = 'child'"
    assert any(f"/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"
               "&viewStateShareKey=conventional-vs-calibrated" in line for line in lines), lines

    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["dvc_exp_name"] == "tiny" and parent.data.params["n_seeds"] == "2"
    assert "network.uplink_mbps" in parent.data.params and "variants.two_branch.branches" in parent.data.params
    assert parent.data.params["git_commit"] == "unknown"  # not a git repository
    lock_sha = hashlib.sha256((outputs / "dvc.lock").read_bytes()).hexdigest()
    assert parent.data.tags["dvc_lock_sha256"] == lock_sha
    artifacts = {a.path for a in client.list_artifacts(parent_id)}
    assert {"figures", "report", "metrics", "calibration", "dvc"} <= artifacts

    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    children = {c.data.tags["mlflow.runName"]: c for c in runs if c.data.tags["eeoffload_role"] == "child"}
    # the calibrated children are named by their calibrator (calibration.method; the default here)
    assert sorted(children) == ["one-branch calibrated (temperature)", "one-branch conventional",
                                "two-branch calibrated (temperature)", "two-branch conventional"]
    assert {c.data.tags["calibrator"] for c in children.values()} == {"none", "temperature"}
    assert all(c.info.run_name == name for name, c in children.items())
    keys = {name: set(c.data.metrics) for name, c in children.items()}
    for key in ("acc_device/p0.85", "p_device/p0.85", "outage/p0.85", "acc_total/p0.85", "ece/exit1",
                "ece/final", "missed_deadline/p0.85/t50", "missed_deadline/p0.75/t100", "acc_device/p0.9",
                "p_device_seed_lo/p0.85", "p_device_seed_hi/p0.85", "missed_deadline_seed_hi/p0.85/t50"):
        assert all(key in k for k in keys.values()), key
    assert not any(k.startswith(("curve/", "missed_deadline_curve/")) for ks in keys.values() for k in ks)
    # conventional and calibrated of one variant line up key for key in the compare view
    for variant in ("one-branch", "two-branch"):
        assert keys[f"{variant} conventional"] == keys[f"{variant} calibrated (temperature)"]
    child = children["one-branch calibrated (temperature)"]
    assert child.data.params["calibration"] == "calibrated" and child.data.params["n_seeds"] == "2"
    assert child.data.tags["n_seeds"] == "2" and "p_tar" in child.data.tags["mlflow.note.content"]
    assert child.data.metrics["p_device_seed_lo/p0.85"] == pytest.approx(child.data.metrics["p_device/p0.85"] - 0.02)
    # exit metrics: means over the seeds' tables; calibrated temperatures 1.5 and 2.5
    assert child.data.metrics["temperature/exit1"] == pytest.approx(2.0)
    assert child.data.metrics["ece/final"] == pytest.approx(0.02 + 0.01)
    history = client.get_metric_history(child.info.run_id, "train/val_loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 1.9), (2, 1.6)]  # first seed's training curve

    # the curves: the same tables and figures in every child (common artifacts of the compare view)
    def files(run_id: str, path: str) -> set[str]:
        return {a.path for a in client.list_artifacts(run_id, path)}
    for c in children.values():
        assert files(c.info.run_id, "curves") == {"curves/offload.json", "curves/missed_deadline.json",
                                                  "curves/reliability.json"}
        assert files(c.info.run_id, "figures") == {"figures/p_device.png", "figures/outage.png",
                                                   "figures/missed_deadline.png", "figures/reliability.png"}
        logged = json.loads(c.data.tags["mlflow.loggedArtifacts"])  # log_table's record, read by the UI
        assert {"path": "curves/offload.json", "type": "table"} in logged
    local = Path(client.download_artifacts(child.info.run_id, "curves", str(tmp_path / "dl")))
    table = json.loads((local / "offload.json").read_text())
    frame = pd.DataFrame(table["data"], columns=table["columns"])
    assert {"p_tar", "p_device", "p_device_seed_lo", "outage", "n_seeds"} <= set(frame.columns)
    assert len(frame) == 99 and frame["acc_device"].isna().sum() > 0  # NaN where nothing stays on the device
    table = json.loads((local / "reliability.json").read_text())
    rel = pd.DataFrame(table["data"], columns=table["columns"])
    assert sorted(rel["exit"].unique()) == [1, 2] and rel["count"].max() == 10 + 11  # pooled over 2 seeds
    png = client.download_artifacts(child.info.run_id, "figures/outage.png", str(tmp_path / "dl"))
    assert Path(png).read_bytes().startswith(b"\x89PNG")
    assert files(child.info.run_id, "calibration") == {"calibration/seed0.json", "calibration/seed1.json"}

    # the first seed's model, logged once per variant; both children carry its URI
    model_uri = children["one-branch conventional"].data.tags["model_uri"]
    assert child.data.tags["model_uri"] == model_uri and model_uri.startswith("models:/")
    mlflow.set_tracking_uri(uri)
    try:
        model = mlflow.pytorch.load_model(model_uri)
    finally:
        mlflow.set_tracking_uri(None)
    assert model.branch_points == ["relu1"] and model.num_exits == 2
    seed0 = torch.load(outputs / registry.model_path("one_branch", 0), weights_only=True)["state_dict"]
    assert all(torch.equal(v, seed0[k]) for k, v in model.state_dict().items())

    # one child per variant x calibrator of the certify stage, with the same keys (compare view)
    methods = [c for c in runs if c.data.tags["eeoffload_role"] == "method"]
    assert sorted(c.info.run_name for c in methods) == ["one-branch · isotonic", "one-branch · temperature",
                                                        "two-branch · isotonic", "two-branch · temperature"]
    core = {"aurc", "ece/exit1", "ece/exit2", "ece/final", "violation_rate/t0.85/fixed_sequence",
            "p_device/t0.9/holm"}
    assert all(core <= set(c.data.metrics) for c in methods if c.data.tags["variant"] == "two_branch")
    iso = next(c for c in methods if c.info.run_name == "one-branch · isotonic")
    assert iso.data.metrics["violation_rate/t0.85/fixed_sequence"] == pytest.approx(0.025)  # mean over seeds
    assert iso.data.metrics["ece/final"] == pytest.approx(0.025)

    # the same pipeline state again (DVC skipped everything): nothing new is logged
    assert log_pipeline_run(outputs, uri=uri, log=lines.append) is None
    assert len(client.search_runs([exp.experiment_id])) == 1 + len(runs)


def test_existing_experiment_gets_kind_and_views(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from pipeline.orchestration.tracking import log_pipeline_run
    from pipeline.orchestration.tracking_views import EXPERIMENT_KIND_TAG, VIEW_TAG_PREFIX, VIEWS

    root = make_pipeline_outputs(tmp_path / "p", seeds=(3,), models=False, certify=False)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"] = {"seed": 3}  # params before the seed axis: train.seed, no train.seeds
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp_id = client.create_experiment("older", tags={"mlflow.note.content": "kept"})
    assert EXPERIMENT_KIND_TAG not in client.get_experiment(exp_id).tags
    parent_id = log_pipeline_run(root, uri=uri, experiment="older", log=lambda _: None)
    tags = client.get_experiment(exp_id).tags
    assert tags[EXPERIMENT_KIND_TAG] == "custom_model_development"
    assert {VIEW_TAG_PREFIX + key for key in VIEWS} <= set(tags)
    assert tags["mlflow.note.content"] == "kept"  # a description someone wrote stays
    assert client.get_run(parent_id).data.params["n_seeds"] == "1"
    children = client.search_runs([exp_id], filter_string="tags.eeoffload_role = 'child'")
    assert len(children) == 4 and all(math.isfinite(c.data.metrics["p_device/p0.85"]) for c in children)
    # a changed kind is set back; unchanged views keep their creation time
    client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, "genai_development")
    before = client.get_experiment(exp_id).tags[VIEW_TAG_PREFIX + "calibrators"]
    (root / "dvc.lock").write_text("schema: '2.0'\n# changed\n")
    assert log_pipeline_run(root, uri=uri, experiment="older", log=lambda _: None)
    tags = client.get_experiment(exp_id).tags
    assert tags[EXPERIMENT_KIND_TAG] == "custom_model_development"
    assert tags[VIEW_TAG_PREFIX + "calibrators"] == before


def test_unreachable_server_is_a_clear_error_in_seconds(outputs: Path) -> None:
    from pipeline.orchestration.tracking import TrackingError, log_pipeline_run

    start = time.monotonic()
    with pytest.raises(TrackingError, match=r"http://127\.0\.0\.1:9 .*unreachable.*complete and untouched"):
        log_pipeline_run(outputs, uri="http://127.0.0.1:9")
    assert time.monotonic() - start < 30


def test_no_pipeline_outputs_is_a_clear_error(tmp_path: Path) -> None:
    from pipeline.orchestration.tracking import TrackingError, log_pipeline_run

    with pytest.raises(TrackingError, match="run the pipeline before logging"):
        log_pipeline_run(tmp_path, uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def _compare_view_common_artifacts(client: object, run_ids: list[str]) -> list[str]:
    """MLflow's compare view (its JS, mlflow 3): the files (not folders) at the first run's artifact
    root that every other run's root listing has; none: "No common artifacts to display"."""
    first = [a.path for a in client.list_artifacts(run_ids[0]) if not a.is_dir]
    return [p for p in first if all(p in {a.path for a in client.list_artifacts(r)} for r in run_ids[1:])]


def test_compared_runs_have_a_common_artifact(outputs: Path, tmp_path: Path) -> None:
    """Any runs compared in the MLflow UI (children, parent and children, two pipeline states) share
    metrics.json at their artifact root, with an undefined metric written as such."""
    from pipeline.orchestration.tracking import log_pipeline_run

    # the project's store: SQLite, the artifacts as files in mlartifacts/ beside it (MLflow 3 refuses
    # the ./mlruns file tracking store unless MLFLOW_ALLOW_FILE_STORE=true)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent_id = log_pipeline_run(outputs, "tiny", uri=uri, log_model=False, log=lambda _: None)
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_run(parent_id).info.experiment_id])
    children = [r.info.run_id for r in runs if r.data.tags.get("eeoffload_role") == "child"]
    assert len(children) == 4
    assert _compare_view_common_artifacts(client, children) == ["metrics.json"]
    assert _compare_view_common_artifacts(client, [parent_id, *children]) == ["metrics.json"]
    assert (tmp_path / "mlartifacts").is_dir()
    child = next(r for r in runs if r.info.run_id == children[0])
    logged = json.loads(Path(client.download_artifacts(children[0], "metrics.json", str(tmp_path / "dl"))).read_text())
    assert "acc_device/p0.85" in logged and set(logged) <= set(child.data.metrics)
    assert all(isinstance(v, float) or v == "undefined" for v in logged.values())  # valid JSON: no NaN
