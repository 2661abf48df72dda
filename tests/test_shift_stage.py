"""Stages shift and shift_eval on a tiny project made here: prepared val/test images (synthetic), an
untrained model file, the repo's params.yaml with a tiny shift section. Runs the real commands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from eeoffload.layout import ModelSpec
from eeoffload.model import build_model
from eeoffload.severity import STATISTICS
from pipeline.core.atomic import write_npz
from pipeline.core.io import StageError
from pipeline.core.params_shift import shift_params
from tests.conftest import ROOT, run_stage
from tests.tiny_data import class_images

SHIFT = {"seeds": [0], "corruptions": ["gaussian_noise", "contrast"], "severities": [1, 5], "max_images": 60,
         "splits": 4, "monitor_streams": 3, "batch_size": 20, "resamples": 5}


def make_project(root: Path, with_model: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"]["seeds"] = [0]
    params["shift"] = dict(SHIFT)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rng = np.random.default_rng(0)
    prepared = root / "data" / "prepared"
    prepared.mkdir(parents=True)
    for split, n in (("val", 8), ("test", 9)):  # per class: 80 and 90 images, more than max_images
        images = np.stack([img for label in range(10) for img in class_images(label, n, rng)])
        labels = np.repeat(np.arange(10, dtype=np.int64), n)
        write_npz(prepared / f"{split}.npz", {"images": images, "labels": labels,
                                              "sample_id": np.arange(len(labels), dtype=np.int64)})
    if with_model:
        torch.manual_seed(0)
        model = build_model(ModelSpec(), ["relu1"])
        (root / "data" / "models" / "one_branch").mkdir(parents=True)
        torch.save({"state_dict": model.state_dict(), "branches": ["relu1"]}, root / "data/models/one_branch/seed0.pt")
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_project(tmp_path_factory.mktemp("shift"))
    proc = run_stage(root, "shift", "one_branch", "0")
    assert proc.returncode == 0, proc.stderr
    return root


def test_shift_writes_the_logits_schema_with_corruption_and_severity(project: Path) -> None:
    frame = pd.read_parquet(project / "data/shift/one_branch/seed0.parquet")
    settings = {("none", 0), ("gaussian_noise", 1), ("gaussian_noise", 5), ("contrast", 1), ("contrast", 5)}
    assert set(map(tuple, frame[["corruption", "severity"]].drop_duplicates().to_numpy().tolist())) == settings
    assert len(frame) == 2 * len(settings) * 60 * 2  # splits x settings x images x exits
    assert frame["severity"].dtype == np.int64 and frame["sample_id"].dtype == np.int64
    assert {f"logit_{c}" for c in range(10)} | {f"stat_{s}" for s in STATISTICS} <= set(frame.columns)
    # the same images in every setting; corrupted logits differ from clean ones
    ids = frame.groupby(["split", "corruption", "severity"])["sample_id"].apply(lambda s: tuple(sorted(set(s))))
    assert ids.groupby(level=0).nunique().eq(1).all()
    clean = frame[(frame["corruption"] == "none")]["logit_0"].to_numpy()
    noisy = frame[(frame["corruption"] == "gaussian_noise") & (frame["severity"] == 5)]["logit_0"].to_numpy()
    assert not np.allclose(clean, noisy)


def test_shift_is_deterministic(project: Path, tmp_path: Path) -> None:
    other = make_project(tmp_path / "again")
    assert run_stage(other, "shift", "one_branch", "0").returncode == 0
    a = pd.read_parquet(project / "data/shift/one_branch/seed0.parquet")
    b = pd.read_parquet(other / "data/shift/one_branch/seed0.parquet")
    pd.testing.assert_frame_equal(a, b)


def test_shift_eval_writes_its_tables(project: Path) -> None:
    proc = run_stage(project, "shift_eval", "one_branch", "0")
    assert proc.returncode == 0, proc.stderr
    out = project / "reports/shift/one_branch/seed0"
    rules = pd.read_parquet(out / "rules.parquet")
    assert set(rules["rule"]) == {"conventional", "calibrated", "recalibrated", "estimated"}
    assert len(rules) == 5 * 4 and rules["outage_resampled"].dropna().between(0, 1).all()
    certified = pd.read_parquet(out / "certified.parquet")
    assert set(certified["rule"]) == {"certified", "certified_recalibrated"}
    assert (certified["splits"] == 4).all() and certified["violation_rate"].between(0, 1).all()
    monitor = pd.read_parquet(out / "monitor.parquet")
    assert len(monitor) == 5 * 3 and {"alarm", "delay", "false_alarm", "outage_share_monitored"} <= set(monitor.columns)
    trace = pd.read_parquet(out / "monitor_trace.parquet")
    assert (trace.groupby(["corruption", "severity"]).size() == 60).all()
    exits = pd.read_parquet(out / "exits.parquet")
    assert set(exits["exit"]) == {1, 2} and exits["ece"].between(0, 1).all()
    assert len(pd.read_parquet(out / "severity.parquet")) == 5
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["table"]) == 5 and 0 <= summary["monitor"]["clean_false_alarm_rate"] <= 1


def test_report_fragment(project: Path) -> None:
    from pipeline.shift_report import shift_html

    folder = project / "reports/shift/one_branch/seed0"
    if not (folder / "summary.json").is_file():
        assert run_stage(project, "shift_eval", "one_branch", "0").returncode == 0
    fragment = shift_html(folder)
    assert fragment.count("<img") == 2 and "violation certified" in fragment and "false alarms" in fragment


def test_without_weights_one_line_and_status_2(tmp_path: Path) -> None:
    root = make_project(tmp_path / "noweights", with_model=False)
    proc = run_stage(root, "shift", "one_branch", "0")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and "no trained weights" in lines[0], proc.stderr


def test_seed_outside_shift_seeds_is_refused(project: Path) -> None:
    proc = run_stage(project, "shift_eval", "one_branch", "1")
    assert proc.returncode == 2 and "shift.seeds" in proc.stderr


@pytest.mark.parametrize(("key", "value", "needle"), [
    ("corruptions", ["fog"], "shift.corruptions = ['fog']; allowed: a non-empty list of distinct values of gaussian_noise"),
    ("severities", [0, 3], "shift.severities = [0, 3]; allowed: a non-empty list of distinct integers in 1..5"),
    ("seeds", [7], "shift.seeds = [7]; allowed: seeds of train.seeds"),
    ("monitor_alpha", 1.5, "shift.monitor_alpha = 1.5; allowed: a number in (0, 1)"),
    ("colour", 1, "shift.colour is not a known key"),
])
def test_bad_shift_params_name_the_key(key: str, value: object, needle: str) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["shift"][key] = value
    with pytest.raises(StageError, match=None) as e:
        shift_params(params)
    assert needle in str(e.value)


def test_shift_section_is_optional() -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    del params["shift"]
    assert shift_params(params).severities == (1, 3, 5)
