"""The train stage with a recipe beyond BranchyNet's (SGD + cosine, the authors' augmentation, early
stopping), on the tests' tiny archive: the model file holds the best epoch's weights (its logits
equal that epoch's snapshot), and a run killed after an epoch resumes to the same file and history."""

from __future__ import annotations

import signal
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from tests.conftest import run_stage
from tests.test_reliability import VARIANT, ok, popen_stage, write_params
from tests.tiny_data import make_class_folder_zip

RECIPE = {"trunk_epochs": 0, "joint_epochs": 6, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True,
          "weight_decay": 0.0005, "schedule": "cosine", "augment": "authors", "early_stopping_patience": 2,
          "snapshot_epochs": [1, 2, 3, 4, 5, 6]}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_class_folder_zip(tmp_path_factory.mktemp("archive") / "tiny.zip", 40, 30)


def _train(root: Path, archive: Path) -> None:
    write_params(root, archive, train=RECIPE)
    ok(run_stage(root, "prepare"))


def _model(root: Path) -> dict:
    return torch.load(root / f"data/models/{VARIANT}/seed0.pt", map_location="cpu", weights_only=True)


def test_early_stopping_keeps_the_best_epoch_and_resumes_exactly(tmp_path: Path, archive: Path) -> None:
    ref = tmp_path / "ref"
    _train(ref, archive)
    out = ok(run_stage(ref, "train", VARIANT, "0")).stdout
    history = pd.read_csv(ref / f"reports/training/{VARIANT}/seed0.csv")
    saved = _model(ref)
    best = int(history["val_nll_final"].idxmin()) + 1
    assert saved["best_epoch"] == best == int(history["best_epoch"].iloc[-1])
    assert saved["epochs_run"] == len(history)
    if len(history) < RECIPE["joint_epochs"]:  # it stopped early
        assert "early stopping after epoch" in out and history["stopped"].iloc[-1] == 1
        assert len(history) - best == RECIPE["early_stopping_patience"]
    assert history["lr"].is_monotonic_decreasing  # cosine
    # the written weights are the best epoch's: their logits are that epoch's snapshot
    ok(run_stage(ref, "logits", VARIANT, "0"))
    logits = pq.read_table(ref / f"data/logits/{VARIANT}/seed0.parquet").to_pandas()
    snapshot = pq.read_table(ref / f"data/snapshots/{VARIANT}/seed0/epoch_{best:03d}.parquet").to_pandas()
    pd.testing.assert_frame_equal(logits, snapshot)

    # killed after epoch 2, then resumed: the same model file and history
    root = tmp_path / "p"
    _train(root, archive)
    proc = popen_stage(root, "train", VARIANT, "0")
    assert proc.stdout is not None
    for line in proc.stdout:
        if f"{VARIANT}/seed0 epoch 2/" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    resumed = ok(run_stage(root, "train", VARIANT, "0"))
    assert f"resuming {VARIANT}/seed0" in resumed.stdout
    again = _model(root)
    assert again["best_epoch"] == saved["best_epoch"] and list(again["state_dict"]) == list(saved["state_dict"])
    for name, value in saved["state_dict"].items():
        assert torch.equal(value, again["state_dict"][name]), name
    pd.testing.assert_frame_equal(history, pd.read_csv(root / f"reports/training/{VARIANT}/seed0.csv"))
