"""The batched train stage (``python -m pipeline train-batched``, issue 23) writes what separate
``pipeline.train`` runs write, resumes exactly, and hands its checkpoints to a separate run.

Tolerances, fixed before the first run: the weights of seed k within 1e-4 (max abs) of the separate
run's and the training losses within 1e-4: the float32 tolerance of the batched trainer against
the pipeline's own (fast LRN) model, tests/test_batched_training.py, measured there; SGD without
momentum (linear in the gradient). A batched run cut after an epoch and resumed batched gives
bit-identical files.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.conftest import run_stage
from tests.test_reliability import VARIANT, assert_one_line_error, ok, popen_stage, write_params
from tests.tiny_data import make_class_folder_zip

SEEDS = ["0", "1"]
RECIPE = {"seeds": [0, 1], "optimizer": "sgd", "lr": 0.01, "momentum": 0.0, "weight_decay": 0.0001,
          "snapshot_epochs": [1, 3]}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_class_folder_zip(tmp_path_factory.mktemp("archive") / "tiny.zip", 40, 30)


def _project(root: Path, archive: Path, **train: object) -> Path:
    write_params(root, archive, train=RECIPE | train)
    ok(run_stage(root, "prepare"))
    return root


def _outputs(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for folder in ("data/models", "data/snapshots", "reports/training",
                                                             "data/checkpoints")
                  for p in (root / folder).rglob("*") if p.is_file())


def _model(root: Path, seed: str) -> dict:
    return torch.load(root / f"data/models/{VARIANT}/seed{seed}.pt", map_location="cpu", weights_only=True)


def _history(root: Path, seed: str) -> pd.DataFrame:
    return pd.read_csv(root / f"reports/training/{VARIANT}/seed{seed}.csv")


@pytest.fixture(scope="module")
def batched(tmp_path_factory: pytest.TempPathFactory, archive: Path) -> Path:
    root = _project(tmp_path_factory.mktemp("batched"), archive)
    out = ok(run_stage(root, "train_batched", VARIANT)).stdout
    assert f"trained {VARIANT} seeds [0, 1] as one batched model" in out
    return root


def test_batched_stage_writes_what_separate_runs_write(tmp_path: Path, archive: Path, batched: Path) -> None:
    separate = _project(tmp_path / "separate", archive)
    for seed in SEEDS:
        ok(run_stage(separate, "train", VARIANT, seed))
    assert _outputs(batched) == _outputs(separate)
    assert not (batched / "data/checkpoints").exists() or not any((batched / "data/checkpoints").rglob("*.pt"))
    for seed in SEEDS:
        mine, theirs = _model(batched, seed), _model(separate, seed)
        assert mine.keys() == theirs.keys() and mine["branches"] == theirs["branches"]
        assert list(mine["state_dict"]) == list(theirs["state_dict"])
        for name, value in theirs["state_dict"].items():
            assert (mine["state_dict"][name] - value).abs().max() <= 1e-4, (seed, name)
        h_mine, h_theirs = _history(batched, seed), _history(separate, seed)
        assert list(h_mine.columns) == list(h_theirs.columns)
        assert h_mine[["epoch", "phase"]].equals(h_theirs[["epoch", "phase"]])
        assert (h_mine["train_loss"] - h_theirs["train_loss"]).abs().max() <= 1e-4
        for epoch in RECIPE["snapshot_epochs"]:
            name = f"data/snapshots/{VARIANT}/seed{seed}/epoch_{epoch:03d}.parquet"
            a, b = pd.read_parquet(batched / name), pd.read_parquet(separate / name)
            assert list(a.columns) == list(b.columns) and len(a) == len(b)
    # two seeds really are two models
    first = next(iter(_model(batched, "0")["state_dict"]))
    assert (_model(batched, "0")["state_dict"][first] - _model(batched, "1")["state_dict"][first]).abs().max() > 1e-3


def _cut_after_epoch(root: Path, epoch: int) -> None:
    proc = popen_stage(root, "train_batched", VARIANT)
    assert proc.stdout is not None
    for line in proc.stdout:
        if f"{VARIANT}/seed1 epoch {epoch}/" in line:  # both seeds' checkpoints of that epoch are written
            proc.send_signal(signal.SIGKILL)
            break
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def test_batched_stage_resumes_exactly_and_hands_over_to_a_separate_run(tmp_path: Path, archive: Path,
                                                                         batched: Path) -> None:
    root = _project(tmp_path / "cut", archive)
    _cut_after_epoch(root, 2)
    other = tmp_path / "handover"
    shutil.copytree(root, other)
    resumed = ok(run_stage(root, "train_batched", VARIANT))
    assert f"resuming {VARIANT} seeds [0, 1] after epoch 2" in resumed.stdout
    for seed in SEEDS:
        a, b = _model(root, seed), _model(batched, seed)
        for name, value in b["state_dict"].items():
            assert torch.equal(a["state_dict"][name], value), (seed, name)
        pd.testing.assert_frame_equal(_history(root, seed), _history(batched, seed))

    # the same cut run, finished seed by seed by the ordinary train stage
    for seed in SEEDS:
        out = ok(run_stage(other, "train", VARIANT, seed)).stdout
        assert f"resuming {VARIANT}/seed{seed}" in out
        for name, value in _model(batched, seed)["state_dict"].items():
            assert (_model(other, seed)["state_dict"][name] - value).abs().max() <= 1e-4, (seed, name)
        assert len(_history(other, seed)) == len(_history(batched, seed))


def test_batched_stage_refuses_what_it_cannot_do(tmp_path: Path, archive: Path) -> None:
    root = tmp_path / "es"  # both are refused before the data are read
    write_params(root, archive, train=RECIPE | {"early_stopping_patience": 2})
    assert_one_line_error(run_stage(root, "train_batched", VARIANT), "train.early_stopping_patience = 2", "allowed")
    root = tmp_path / "seed"
    write_params(root, archive, train=RECIPE)
    assert_one_line_error(run_stage(root, "train_batched", VARIANT, "0", "7"), "train.seeds = [0, 1]", "allowed")
    assert not (root / "data/models").exists()
