"""The resumable CPU queue (benchmarks/cpu_queue.py) on the tests' tiny archive: the precision study's
jobs run once, a second call finds them done, and the equivalence table reads their logits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.scratch import scratch_env

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration


def test_precision_queue_resumes_and_tabulates(tmp_path: Path, tiny_zip: Path) -> None:
    overlay = tmp_path / "tiny.yaml"
    overlay.write_text(yaml.safe_dump({"data": {"n_train": 200, "n_val": 96, "n_test": 192},
                                       "train": {"joint_epochs": 1, "snapshot_epochs": [], "num_threads": 1},
                                       "evaluate": {"batch_size": 64}}))
    env = dict(scratch_env(ROOT), CIFAR10_ARCHIVE=str(tiny_zip))
    cmd = [sys.executable, "-m", "benchmarks.cpu_queue", "precision", "--seeds", "0", "1", "--overlay", str(overlay),
           "--build", str(tmp_path / "cpu")]
    first = subprocess.run(cmd, cwd=ROOT, env=env, text=True, capture_output=True, timeout=900)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    for job in ("fp32_seed0", "bf16_seed0", "fp32_seed1", "bf16_seed1"):
        assert (tmp_path / "cpu" / "precision" / job / "data" / "logits" / "one_branch").is_dir(), job
    again = subprocess.run(cmd, cwd=ROOT, env=env, text=True, capture_output=True, timeout=300)
    assert again.returncode == 0 and "python -m pipeline train" not in again.stdout  # every job was done
    table = subprocess.run([sys.executable, "-m", "benchmarks.cpu_queue", "precision-table", "--build",
                            str(tmp_path / "cpu")], cwd=ROOT, env=env, text=True, capture_output=True, timeout=300)
    assert table.returncode == 0, table.stderr[-2000:]
    assert "bf16 accepted on every quantity" in table.stdout and "p_device_mean_calibrated" in table.stdout
    assert (tmp_path / "cpu" / "precision" / "equivalence.csv").is_file()
