"""Shared fixtures: a tiny synthetic archive and the real pipeline run on it once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.tools.scratch import dvc_repro, make_scratch_project, scratch_env
from tests.tiny_data import make_class_folder_zip

ROOT = Path(__file__).resolve().parent.parent

for _key, _value in {"DO_NOT_TRACK": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                     "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1"}.items():
    os.environ.setdefault(_key, _value)
os.environ.pop("CIFAR10_ARCHIVE", None)  # tests pass their own archives

# Tiny sizes: the whole DVC pipeline on 2 cores in well under a minute per stage.
TINY_PARAMS = {
    "data": {"n_train": 300, "n_val": 100, "n_test": 200},
    "train": {"seeds": [0, 1], "trunk_epochs": 1, "joint_epochs": 1, "batch_size": 64, "num_threads": 2, "snapshot_epochs": [1, 2]},
    "latency": {"warmup": 1, "repeats": 3},
    "evaluate": {"batch_size": 50, "resamples": 10},
    # certify's and shift's repetitions are most of a tiny run's time at params.yaml's counts (certify
    # ~170 s a run on a loaded 2-core VM); the tests check their outputs' form, not their statistics
    "certify": {"splits": 20, "bootstrap": 20},
    "shift": {"splits": 10, "resamples": 10, "monitor_streams": 5},
}


@dataclass
class TinyRun:
    root: Path
    proc: subprocess.CompletedProcess[str]


@pytest.fixture(scope="session")
def tiny_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_class_folder_zip(tmp_path_factory.mktemp("archive") / "tiny-cifar.zip", 40, 30)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_zip: Path) -> TinyRun:
    """The real `dvc repro` of the whole pipeline on the tiny archive, once per test session."""
    overrides = {**TINY_PARAMS, "data": {**TINY_PARAMS["data"], "archive": str(tiny_zip)}}
    root = make_scratch_project(tmp_path_factory.mktemp("project") / "p", overrides)
    proc = dvc_repro(root)
    return TinyRun(root=root, proc=proc)


def run_stage(cwd: Path, stage: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m pipeline <stage>` (the stages' one command line) in ``cwd`` with this repo's code."""
    env = scratch_env(ROOT)
    env.pop("CIFAR10_ARCHIVE", None)
    command = {"train_batched": "train-batched"}.get(stage, stage)
    return subprocess.run([sys.executable, "-m", "pipeline", command, *args], cwd=cwd, env=env,
                          text=True, capture_output=True)
