"""Stages calibrate and evaluate as subprocesses on small synthetic inputs in a temporary folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from eeoffload.calibration import exit_logits_from_frame
from eeoffload.calibrator_state import run_from_state, run_state
from eeoffload.calibrators import Temperature, exit_top_labels, fit_exit_calibrators
from eeoffload.offload import device_metrics
from eeoffload.temperature import softmax
from pipeline.core.params import evaluate_params, value_grid

ROOT = Path(__file__).resolve().parent.parent
T_SIDE = 3.0  # the side branch's logits are those of a calibrated model times 3 (overconfident)

PARAMS: dict[str, Any] = {
    "variants": {"v": {"branches": ["relu1"], "exit_weights": [1.0, 0.3]}},
    "train": {"seeds": [0]},
    "calibration": {"method": "temperature", "n_bins": 15},
    "network": {"uplink_mbps": 18.8, "rtt_ms": 0.0},
    "evaluate": {
        "p_tar": {"start": 0.5, "stop": 0.99, "step": 0.005},
        "deadline_p_tar": [0.75, 0.825, 0.85],
        "t_tar_ms": {"start": 0.0, "stop": 150.0, "step": 0.5},
        "batch_size": 50,
        "batch_order": "shuffled",
        "resamples": 10,
        "seed": 0,
    },
}
PROFILE = {"device_ms_to_exit": {"1": 1.5}, "offload_edge_ms": 2.0, "upload_bytes": 131072, "cloud_ms": 3.0,
           "partition_layer": "relu1", "edge": {}, "cloud": {}}


def logits_frame(n_val: int = 1500, n_test: int = 400, seed: int = 0) -> pd.DataFrame:
    """Two exits, ten classes; labels drawn from softmax(z); exit 1 logits 3z, exit 2 logits z."""
    rng = np.random.default_rng(seed)
    n = n_val + n_test
    z = rng.normal(0.0, 1.5, size=(n, 10))
    labels = (softmax(z).cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1)
    sample_id = rng.permutation(n)
    split = np.where(np.arange(n) < n_val, "val", "test")
    parts = []
    for exit_, scale in ((1, T_SIDE), (2, 1.0)):
        part = pd.DataFrame({"sample_id": sample_id, "split": split, "label": labels, "exit": exit_})
        logits = pd.DataFrame((z * scale).astype(np.float32), columns=[f"logit_{c}" for c in range(10)])
        parts.append(pd.concat([part, logits], axis=1))
    return pd.concat(parts, ignore_index=True).astype({"sample_id": "int64", "label": "int64", "exit": "int64"})


def write_project(root: Path, params: dict[str, Any] = PARAMS, calibration: bool = False) -> Path:
    (root / "data/logits/v").mkdir(parents=True)
    (root / "data/profile").mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    logits_frame().to_parquet(root / "data/logits/v/seed0.parquet", index=False)
    (root / "data/profile/v.json").write_text(json.dumps(PROFILE))
    if calibration:
        (root / "data/calibration/v").mkdir(parents=True)
        state = run_state("temperature", [Temperature(T_SIDE), Temperature(1.0)])
        (root / "data/calibration/v/seed0.json").write_text(json.dumps(state))
    return root


def run(root: Path, stage: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    return subprocess.run([sys.executable, "-m", "pipeline", stage, *args], cwd=root, env=env,
                          text=True, capture_output=True, timeout=120)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *culprits: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for culprit in culprits:
        assert culprit in lines[0]


def test_calibrate_then_evaluate_write_the_contract_files(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    proc = run(root, "calibrate", "v", "0")
    assert proc.returncode == 0, proc.stderr

    cal = json.loads((root / "data/calibration/v/seed0.json").read_text())
    assert cal["method"] == "temperature" and set(cal["temperatures"]) == {"1", "2"} == set(cal["exits"])
    assert cal["exits"]["1"] == {"temperature": cal["temperatures"]["1"]}
    assert cal["temperatures"]["1"] == pytest.approx(T_SIDE, rel=0.1)
    assert cal["temperatures"]["2"] == pytest.approx(1.0, rel=0.1)

    exits = pd.read_parquet(root / "reports/calibration/v/seed0_exits.parquet")
    assert list(exits.columns) == ["exit", "calibration", "method", "temperature", "accuracy", "ece", "mce", "nll",
                                   "brier"]
    assert exits["method"].tolist() == ["none", "temperature"] * 2
    assert exits["exit"].dtype == np.int64 and len(exits) == 4
    side = exits[exits["exit"] == 1].set_index("calibration")
    assert side.loc["calibrated", "ece"] < side.loc["conventional", "ece"]
    assert side.loc["calibrated", "accuracy"] == side.loc["conventional", "accuracy"]  # T keeps the argmax
    rel = pd.read_parquet(root / "reports/calibration/v/seed0_reliability.parquet")
    assert list(rel.columns) == ["exit", "calibration", "bin", "bin_lower", "bin_upper", "count", "confidence",
                                 "accuracy"]
    assert len(rel) == 2 * 2 * 15 and rel["count"].dtype == np.int64 and rel["bin"].dtype == np.int64
    assert (rel.groupby(["exit", "calibration"])["count"].sum() == 400).all()
    assert (root / "reports/timings/calibrate@v-0.json").exists()

    proc = run(root, "evaluate")
    assert proc.returncode == 0, proc.stderr
    # the seed aggregate begins with the per-seed table's columns, then the seed columns
    aggregate = pd.read_parquet(root / "reports/metrics/v/offload.parquet")
    off = pd.read_parquet(root / "reports/metrics/v/seed0/offload.parquet")
    assert list(aggregate.columns)[:len(off.columns)] == list(off.columns)
    assert {"p_device_seed_min", "outage_seed_lo", "n_seeds"} <= set(aggregate.columns)
    assert (aggregate["n_seeds"] == 1).all()
    pd.testing.assert_frame_equal(aggregate[list(off.columns)], off, check_dtype=False)
    assert list(off.columns) == ["calibration", "p_tar", "p_device", "conf_device", "acc_device", "acc_total",
                                 "outage", "n_batches", "outage_resampled", "outage_low", "outage_high",
                                 "n_samples", "n_device", "p_device_lo", "p_device_hi", "acc_device_lo",
                                 "acc_device_hi", "acc_total_lo", "acc_total_hi", "n_batches_empty",
                                 "n_outage_batches", "outage_lo", "outage_hi"]
    assert (off["n_batches"] + off["n_batches_empty"] == 8).all()  # every full batch is counted or empty
    assert len(off) == 2 * 99 and off["n_batches"].dtype == np.int64
    assert (off["n_batches"] <= 8).all()  # 400 test samples in batches of 50
    conv = off[off["calibration"] == "conventional"].set_index("p_tar")
    calib = off[off["calibration"] == "calibrated"].set_index("p_tar")
    assert (calib["p_device"] <= conv["p_device"] + 1e-12).all()  # T > 1 lowers every confidence
    dl = pd.read_parquet(root / "reports/metrics/v/seed0/deadline.parquet")
    assert list(pd.read_parquet(root / "reports/metrics/v/deadline.parquet").columns)[:8] == list(dl.columns)
    assert list(dl.columns) == ["calibration", "p_tar", "t_tar_ms", "missed_deadline", "n_batches",
                                "n_missed_batches", "missed_lo", "missed_hi"]
    assert len(dl) == 2 * 3 * 301
    assert dl["missed_deadline"].between(0, 1).all()
    headline = json.loads((root / "reports/metrics.json").read_text())
    numbers = headline["v"]["calibrated"]
    assert {"p_device@0.85", "acc_device@0.85", "acc_total@0.875", "outage@0.825",
            "min_missed_deadline@0.75"} <= set(numbers)
    assert numbers["p_device@0.85"] == pytest.approx(float(calib.loc[0.85, "p_device"]))
    assert (root / "reports/timings/evaluate.json").exists()


def test_calibrate_global_method(tmp_path: Path) -> None:
    params = {**PARAMS, "calibration": {"method": "global_temperature", "n_bins": 10}}
    root = write_project(tmp_path, params)
    assert run(root, "calibrate", "v", "0").returncode == 0
    assert json.loads((root / "data/calibration/v/seed0.json").read_text())["method"] == "global_temperature"
    assert len(pd.read_parquet(root / "reports/calibration/v/seed0_reliability.parquet")) == 2 * 2 * 10


def test_calibrate_then_evaluate_with_isotonic_use_its_confidences(tmp_path: Path) -> None:
    """calibration.method = isotonic: calibrate stores the fitted maps, evaluate's calibrated metrics
    are those of the isotonic confidences (recomputed here from the stored state)."""
    root = write_project(tmp_path, {**PARAMS, "calibration": {"method": "isotonic", "n_bins": 15}})
    assert run(root, "calibrate", "v", "0").returncode == 0
    stored = json.loads((root / "data/calibration/v/seed0.json").read_text())
    assert stored["method"] == "isotonic" and "temperatures" not in stored
    exits = pd.read_parquet(root / "reports/calibration/v/seed0_exits.parquet").set_index(["exit", "calibration"])
    assert exits.loc[(1, "calibrated"), "method"] == "isotonic"
    assert np.isnan(exits.loc[(1, "calibrated"), "temperature"]) and np.isnan(exits.loc[(1, "calibrated"), "nll"])
    assert exits.loc[(1, "calibrated"), "ece"] < exits.loc[(1, "conventional"), "ece"]
    assert run(root, "evaluate").returncode == 0

    test = exit_logits_from_frame(logits_frame(), "test")
    method, calibrators = run_from_state(stored, 2)
    conf, correct = exit_top_labels(calibrators, test.logits, test.labels)
    grid = evaluate_params(PARAMS).p_tar
    expected = device_metrics(conf, correct, grid)["p_device"]
    off = pd.read_parquet(root / "reports/metrics/v/seed0/offload.parquet")
    np.testing.assert_allclose(off.loc[off["calibration"] == "calibrated", "p_device"], expected, rtol=0, atol=0)
    # isotonic is not temperature scaling: the curves differ
    val = exit_logits_from_frame(logits_frame(), "val")
    scaled = fit_exit_calibrators("temperature", val.logits, val.labels)
    assert not np.array_equal(conf, exit_top_labels(scaled, test.logits, test.labels)[0])


def test_calibrate_bad_param_names_key_and_writes_nothing(tmp_path: Path) -> None:
    root = write_project(tmp_path, {**PARAMS, "calibration": {"method": "platt", "n_bins": 15}})
    assert_one_line_error(run(root, "calibrate", "v", "0"), "calibration.method", "temperature | global_temperature")
    assert not (root / "data/calibration").exists() and not (root / "reports").exists()


@pytest.mark.parametrize(("old", "new"), [("per_exit", "temperature"), ("global", "global_temperature")])
def test_calibrate_old_method_name_says_the_new_one(tmp_path: Path, old: str, new: str) -> None:
    root = write_project(tmp_path, {**PARAMS, "calibration": {"method": old, "n_bins": 15}})
    assert_one_line_error(run(root, "calibrate", "v", "0"), "calibration.method", "isotonic", f"is now '{new}'")
    assert not (root / "data/calibration").exists()


def test_calibrate_bad_logits_file_names_file_and_writes_nothing(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    path = root / "data/logits/v/seed0.parquet"
    pd.read_parquet(path).astype({"exit": "int32"}).to_parquet(path, index=False)
    assert_one_line_error(run(root, "calibrate", "v", "0"), "data/logits/v/seed0.parquet", "'exit'")
    assert not (root / "data/calibration").exists() and not (root / "reports").exists()


@pytest.mark.parametrize(
    ("section", "key", "value", "culprit"),
    [("network", "uplink_mbps", 0, "network.uplink_mbps"),
     ("evaluate", "batch_order", "random", "evaluate.batch_order")],
)
def test_evaluate_bad_param_names_key_and_writes_nothing(
    tmp_path: Path, section: str, key: str, value: Any, culprit: str
) -> None:
    params = {**PARAMS, section: {**PARAMS[section], key: value}}
    root = write_project(tmp_path, params, calibration=True)
    assert_one_line_error(run(root, "evaluate"), culprit)
    assert not (root / "reports").exists()


def test_evaluate_bad_profile_names_file_and_writes_nothing(tmp_path: Path) -> None:
    root = write_project(tmp_path, calibration=True)
    (root / "data/profile/v.json").write_text(json.dumps({k: v for k, v in PROFILE.items() if k != "cloud_ms"}))
    assert_one_line_error(run(root, "evaluate"), "data/profile/v.json", "cloud_ms")
    assert not (root / "reports").exists()


def test_default_p_tar_grid_contains_the_paper_values() -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    grid = evaluate_params(params).p_tar
    for p in (0.5, 0.75, 0.825, 0.85, 0.875, 0.99):
        assert p in grid.tolist()
    assert np.all(np.diff(grid) > 0) and np.all(np.diff(grid) <= 0.005 + 1e-12)
    assert value_grid({"start": 0.0, "stop": 150.0, "step": 0.5}, "t")[-1] == 150.0
