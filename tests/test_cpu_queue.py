"""The resumable CPU queue (benchmarks/cpu_queue.py) on the tests' tiny archive: the precision study's
jobs run once, a second call finds them done, and the equivalence table reads their logits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.tools.scratch import scratch_env

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


def _history(epochs: int, acc: float, side_t: float) -> str:
    rows = ["epoch,phase,train_loss,val_loss,val_acc_exit1,val_acc_exit2,val_temperature_exit1,val_temperature_exit2,"
            "val_nll_final"]
    rows += [f"{e},joint,1.0,{1.0 - e / 100},0.6,{acc},{side_t},1.1,{1.0 - e / 100}" for e in range(1, epochs + 1)]
    return "\n".join(rows) + "\n"


def test_search_table_applies_the_rule_to_the_runs_so_far(tmp_path: Path) -> None:
    """Synthetic histories of two candidates (one finished, one cut at epoch 12): the table has every
    candidate's two options, and the choice among the finished ones is labelled provisional."""
    search = tmp_path / "cpu" / "search"
    for name, epochs in (("b32_none_adam", 30), ("b32_cropflip_adam", 12)):
        csv = search / name / "reports" / "training" / "one_branch" / "seed0.csv"
        csv.parent.mkdir(parents=True)
        csv.write_text(_history(epochs, 0.75, 1.4))
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.cpu_queue", "search-table", "--build",
                           str(tmp_path / "cpu"), "--out", str(out)], cwd=ROOT, env=scratch_env(ROOT), text=True,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "choice (PROVISIONAL: 1 of " in proc.stdout and "b32_none_adam" in proc.stdout
    options = pd.read_csv(out / "cpu_search_options.csv")
    assert {"b32_none_adam", "b32_none_adam+es", "b32_cropflip_adam", "b32_authors_sgd"} <= set(options["option"])
    assert options.set_index("option").loc["b32_none_adam", "finished"]
    assert not options.set_index("option").loc["b32_cropflip_adam", "finished"]
    assert set(pd.read_csv(out / "cpu_search_histories.csv")["candidate"]) == {"b32_none_adam", "b32_cropflip_adam"}
