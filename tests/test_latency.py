"""Latency model (paper section IV-E), edge CSV validation and the profile stage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from eeoffload import latency_measure
from eeoffload.latency import (
    COLUMNS,
    LatencyProfile,
    ProfileError,
    cloud_layer_names,
    edge_layer_names,
    edge_profile_from_csv,
    exit_latency_ms,
    latency_model,
    offloaded_sample_ms,
    per_exit_ms,
    upload_ms,
)
from eeoffload.latency_measure import measure_layers
from eeoffload.model import BAlexNet

ROOT = Path(__file__).resolve().parents[1]

# Hand-picked edge times (ms) for the first trunk layers and the branches; every other layer 0.5.
EDGE_MS = {"conv1": 1.0, "relu1": 2.0, "pool1": 4.0, "lrn1": 8.0, "conv2": 16.0, "relu2": 32.0,
           "branch1": 100.0, "branch2": 200.0}
ELEMENTS = {"relu1": 32 * 32 * 32, "relu2": 64 * 16 * 16}


def _table(model: BAlexNet, ms: dict[str, float], default: float, with_elements: bool = True):
    names = [n for n, _ in model.trunk.named_children()] + ["branch1", "branch2"]
    df = pd.DataFrame({
        "layer": names,
        "part": ["trunk"] * (len(names) - 2) + ["branch1", "branch2"],
        "ms": [ms.get(n, default) for n in names],
    })
    if with_elements:
        df["output_elements"] = [ELEMENTS.get(n, 1) for n in names]
    return df


def test_latency_model_two_branches():
    model = BAlexNet(["relu2", "relu1"])  # given out of order: branches are numbered in trunk order
    edge = _table(model, EDGE_MS, 0.5)
    cloud = _table(model, {}, 0.25)
    out = latency_model(edge, cloud, model, bytes_per_element=4)
    assert out["device_ms_to_exit"] == {
        "1": 1 + 2 + 100,  # conv1, relu1, branch1
        "2": 1 + 2 + 4 + 8 + 16 + 32 + 100 + 200,  # trunk to relu2, branch1 (failed), branch2
    }
    assert out["offload_edge_ms"] == 363.0
    assert out["upload_bytes"] == 64 * 16 * 16 * 4
    assert out["upload_bytes"] == 65536
    # pool2 .. fc3: 17 layers after relu2 at 0.25 ms
    assert len(cloud_layer_names(model)) == 17
    assert out["cloud_ms"] == pytest.approx(17 * 0.25)


def test_latency_model_one_branch_and_bytes():
    model = BAlexNet(["relu1"])
    edge = _table(model, EDGE_MS, 0.5).query("layer != 'branch2'")
    cloud = _table(model, {}, 0.5)
    out = latency_model(edge, cloud, model, bytes_per_element=4)
    assert out["device_ms_to_exit"] == {"1": 103.0}
    assert out["offload_edge_ms"] == 103.0  # the edge runs conv1, relu1 and branch1 only
    assert out["upload_bytes"] == 32 * 32 * 32 * 4
    assert out["cloud_ms"] == pytest.approx(21 * 0.5)  # pool1 .. fc3
    half = latency_model(edge, cloud, model, bytes_per_element=2)
    assert half["upload_bytes"] == 32 * 32 * 32 * 2
    # without an output_elements column the partition layer's size comes from the model
    bare = latency_model(edge.drop(columns="output_elements"), cloud, model, 4)
    assert bare["upload_bytes"] == 131072


def test_latency_model_missing_layer():
    model = BAlexNet(["relu1", "relu2"])
    edge = _table(model, EDGE_MS, 0.5).query("layer != 'branch2'")
    with pytest.raises(ProfileError, match="branch2"):
        latency_model(edge, _table(model, {}, 0.5), model)


def test_layer_table_schema_and_threads():
    model = BAlexNet(["relu1", "pool2"])
    before = torch.get_num_threads()
    lines = []
    df = measure_layers(model, "cpu", threads=1, warmup=0, repeats=3, log=lines.append).table()
    assert torch.get_num_threads() == before
    assert list(df.columns) == COLUMNS
    assert list(df.columns) == ["layer", "part", "ms", "output_elements", "p10_ms", "p90_ms", "spread"]
    assert str(df["ms"].dtype) == "float64" and str(df["output_elements"].dtype) == "int64"
    assert (df["ms"] > 0).all() and (df["p10_ms"] <= df["ms"]).all() and (df["ms"] <= df["p90_ms"]).all()
    assert (df["spread"] >= 0).all()
    # one progress line per part, through the log callable (nothing printed)
    assert [line.split()[1] for line in lines] == ["trunk", "branch1", "branch2"]
    rows = dict(zip(df["layer"], df["part"]))
    assert rows["branch1"] == "branch1" and rows["branch2"] == "branch2" and rows["conv1"] == "trunk"
    elements = dict(zip(df["layer"], df["output_elements"]))
    assert elements["relu1"] == 32 * 32 * 32 and elements["pool2"] == 64 * 8 * 8
    assert elements["branch1"] == 10 and elements["fc3"] == 10
    only = measure_layers(model, "cpu", 1, 0, 1, only=set(cloud_layer_names(model))).table()
    assert list(only["layer"]) == cloud_layer_names(model)


def test_measure_layers_keeps_every_call_and_restores_threads(monkeypatch):
    model = BAlexNet(["relu1"])
    before = torch.get_num_threads()
    times = measure_layers(model, "cpu", threads=1, warmup=0, repeats=4, only={"conv1", "branch1"})
    assert times.layer == ["conv1", "branch1"] and times.part == ["trunk", "branch1"]
    assert times.samples_ms.shape == (2, 4) and (times.samples_ms > 0).all()
    assert times.threads == 1 and times.device == "cpu"
    table = times.table(scale=2.0)
    assert table["ms"].tolist() == pytest.approx(2 * np.median(times.samples_ms, axis=1))
    assert times.subset({"branch1"}).layer == ["branch1"]
    # the thread count is restored when the timing fails half-way
    other = 1 if before != 1 else 2

    def boom(*args):
        assert torch.get_num_threads() == other
        raise RuntimeError("boom")

    monkeypatch.setattr(latency_measure, "_time_once", boom)
    with pytest.raises(RuntimeError, match="boom"):
        measure_layers(model, "cpu", threads=other, warmup=0, repeats=1)
    assert torch.get_num_threads() == before


def test_exit_latency_formula():
    """Section IV-E: a device exit costs its edge time; an offloaded sample edge + upload + RTT + cloud."""
    assert upload_ms(23500, 18.8) == pytest.approx(10.0)  # 23500 bytes at 18.8 Mbit/s
    assert upload_ms(131072, 18.8) == pytest.approx(1048576 / 18.8e3)
    assert offloaded_sample_ms(3.0, 23500, 18.8, 2.0, 5.0) == pytest.approx(3.0 + 10.0 + 2.0 + 5.0)
    assert per_exit_ms([1.5, 4.0], 20.0).tolist() == [1.5, 4.0, 20.0]
    profile = LatencyProfile(device_ms_to_exit=[1.5, 4.0], offload_edge_ms=3.0, upload_bytes=23500, cloud_ms=5.0)
    expected = [1.5, 4.0, 20.0]
    assert exit_latency_ms(profile, 18.8, 2.0).tolist() == pytest.approx(expected)
    assert profile.exit_ms(18.8, 2.0).tolist() == pytest.approx(expected)  # the method is that function
    as_json = {"device_ms_to_exit": {"2": 4.0, "1": 1.5}, "offload_edge_ms": 3.0, "upload_bytes": 23500,
               "cloud_ms": 5.0}
    assert exit_latency_ms(as_json, 18.8, 2.0).tolist() == pytest.approx(expected)
    assert exit_latency_ms(profile, 18.8, 0.0)[-1] == pytest.approx(18.0)


def _csv_rows(model: BAlexNet) -> pd.DataFrame:
    names = edge_layer_names(model)
    return pd.DataFrame({"layer": names, "ms": [float(i + 1) for i in range(len(names))]})


def test_edge_csv_valid():
    model = BAlexNet(["relu1", "relu2"])
    csv = _csv_rows(model)
    extra = pd.concat([csv, pd.DataFrame({"layer": ["fc3", "branch3"], "ms": [9.0, 9.0]})])
    table = edge_profile_from_csv(extra.iloc[::-1], model)  # order and extra rows do not matter
    assert list(table["layer"]) == edge_layer_names(model)
    assert list(table["ms"]) == [float(i + 1) for i in range(len(table))]
    assert list(table.columns) == COLUMNS and table[["p10_ms", "p90_ms", "spread"]].isna().all().all()
    parts = dict(zip(table["layer"], table["part"]))
    assert parts["branch2"] == "branch2" and parts["conv2"] == "trunk"
    assert dict(zip(table["layer"], table["output_elements"]))["relu2"] == 64 * 16 * 16


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d[d["layer"] != "branch2"], "branch2"),
        (lambda d: d[d["layer"] != "conv2"], "conv2"),
        (lambda d: d.assign(ms=[-1.0] + list(d["ms"][1:])), ">= 0"),
        (lambda d: d.assign(ms=["fast"] + list(d["ms"][1:])), "conv1"),
        (lambda d: d.assign(ms=[float("nan")] + list(d["ms"][1:])), "conv1"),
        (lambda d: pd.concat([d, d.iloc[:1]]), "duplicate"),
        (lambda d: pd.concat([d, pd.DataFrame({"layer": ["conv9"], "ms": [1.0]})]), "conv9"),
        (lambda d: d.rename(columns={"ms": "millis"}), "layer,ms"),
    ],
)
def test_edge_csv_invalid(mutate, message):
    model = BAlexNet(["relu1", "relu2"])
    with pytest.raises(ProfileError, match=message):
        edge_profile_from_csv(mutate(_csv_rows(model)), model)


# --- the stage, run as a subprocess in tmp_path ------------------------------------------------

LATENCY = {
    "warmup": 1, "repeats": 2, "edge_threads": 1, "edge_slowdown": 2.0, "edge_profile": "",
    "cloud_device": "cpu", "cloud_speedup": 4.0, "bytes_per_element": 4, "remeasure": 0,
}
VARIANTS = {"one_branch": {"branches": ["relu1"], "exit_weights": [1.0, 0.3]},
            "two_branch": {"branches": ["relu1", "relu2"], "exit_weights": [1.0, 0.65, 0.3]}}


def _run(tmp_path: Path, variant: str, **latency):
    params = {"variants": VARIANTS, "latency": {**LATENCY, **latency}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "profile", variant],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )


def test_stage_writes_profile(tmp_path):
    result = _run(tmp_path, "two_branch")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "data/profile/two_branch.json").read_text())
    assert list(summary) == ["device_ms_to_exit", "offload_edge_ms", "upload_bytes", "cloud_ms",
                             "partition_layer", "edge", "cloud", "spread", "checks", "warnings"]
    assert isinstance(summary["warnings"], list) and all(isinstance(w, str) for w in summary["warnings"])
    assert summary["checks"]["measurements"] == 1 and summary["checks"]["max_measurements"] == 1
    assert summary["checks"]["cloud_compared_with_edge"] is True
    assert summary["spread"]["edge"] >= 0 and summary["spread"]["cloud"] >= 0
    assert "profile two_branch: timed trunk on cpu" in result.stdout
    assert list(summary["device_ms_to_exit"]) == ["1", "2"]
    assert summary["partition_layer"] == "relu2"
    assert summary["upload_bytes"] == 64 * 16 * 16 * 4
    assert summary["edge"]["threads"] == 1 and summary["edge"]["slowdown"] == 2.0
    assert summary["cloud"]["speedup"] == 4.0
    layers = pd.read_parquet(tmp_path / "data/profile/two_branch_layers.parquet")
    assert list(layers.columns) == ["layer", "part", "location", "ms", "output_elements", "p10_ms", "p90_ms",
                                    "spread"]
    assert layers[["p10_ms", "p90_ms", "spread"]].notna().all().all()
    assert (layers["p10_ms"] <= layers["ms"]).all() and (layers["ms"] <= layers["p90_ms"]).all()
    assert str(layers["ms"].dtype) == "float64"
    assert str(layers["output_elements"].dtype) == "int64"
    edge = layers[layers["location"] == "edge"]
    cloud = layers[layers["location"] == "cloud"]
    assert set(layers["location"]) == {"edge", "cloud"}
    assert list(edge["layer"]) == ["conv1", "relu1", "branch1", "pool1", "lrn1", "conv2", "relu2",
                                   "branch2"]
    assert list(cloud["layer"]) == cloud_layer_names(BAlexNet(["relu1", "relu2"]))
    # the JSON is the latency model of the Parquet's times
    model = BAlexNet(["relu1", "relu2"])
    again = latency_model(edge, cloud, model, 4)
    assert summary["offload_edge_ms"] == pytest.approx(again["offload_edge_ms"])
    assert summary["cloud_ms"] == pytest.approx(again["cloud_ms"])
    assert summary["device_ms_to_exit"]["2"] == pytest.approx(summary["offload_edge_ms"])


def test_stage_edge_csv(tmp_path):
    model = BAlexNet(["relu1"])
    _csv_rows(model).to_csv(tmp_path / "edge.csv", index=False)
    result = _run(tmp_path, "one_branch", edge_profile="edge.csv")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "data/profile/one_branch.json").read_text())
    assert summary["edge"] == {"source": "csv", "csv": "edge.csv"}
    assert summary["spread"]["edge"] is None and summary["checks"]["cloud_compared_with_edge"] is False
    layers = pd.read_parquet(tmp_path / "data/profile/one_branch_layers.parquet")
    assert layers.loc[layers["location"] == "edge", "spread"].isna().all()
    assert summary["device_ms_to_exit"] == {"1": 1.0 + 2.0 + 3.0}  # conv1, relu1, branch1
    assert summary["upload_bytes"] == 32 * 32 * 32 * 4


@pytest.mark.parametrize(
    "variant, latency, key",
    [
        ("one_branch", {"repeats": 0}, "latency.repeats"),
        ("one_branch", {"warmup": -1}, "latency.warmup"),
        ("one_branch", {"edge_threads": 0}, "latency.edge_threads"),
        ("one_branch", {"edge_slowdown": 0}, "latency.edge_slowdown"),
        ("one_branch", {"cloud_speedup": -1.0}, "latency.cloud_speedup"),
        ("one_branch", {"bytes_per_element": 3}, "latency.bytes_per_element"),
        ("one_branch", {"cloud_device": "tpu"}, "latency.cloud_device"),
        ("one_branch", {"repeats": 2.5}, "latency.repeats"),
        ("one_branch", {"edge_slowdown": True}, "latency.edge_slowdown"),
        ("one_branch", {"repeat": 5}, "latency.repeat"),
        ("one_branch", {"remeasure": -1}, "latency.remeasure"),
        ("three_branch", {}, "three_branch"),
        ("one_branch", {"edge_profile": "nowhere.csv"}, "nowhere.csv"),
        ("one_branch", {"edge_profile": "bad.csv"}, "bad.csv"),
    ],
)
def test_stage_bad_params(tmp_path, variant, latency, key):
    (tmp_path / "bad.csv").write_text("layer,ms\nconv1,1.0\n")  # relu1 and branch1 missing
    result = _run(tmp_path, variant, **latency)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], result.stderr
    assert not (tmp_path / "data").exists()
