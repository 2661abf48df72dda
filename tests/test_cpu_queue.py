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


def test_confirm_runs_the_named_option_and_packs_a_bundle(tmp_path: Path, tiny_zip: Path) -> None:
    """The CPU confirmation: refused (exit 2, one line) while the search's choice is provisional; with
    ``--option`` it trains and scores every seed x both variants of that candidate, resumes as done,
    and ``confirm-pack`` + ``python -m pipeline paper import`` make a bundle that names how it was made."""
    build = tmp_path / "cpu"
    csv = build / "search" / "b32_none_sgd" / "reports" / "training" / "one_branch" / "seed0.csv"
    csv.parent.mkdir(parents=True)
    csv.write_text(_history(30, 0.76, 1.6))
    overlay = tmp_path / "tiny.yaml"
    overlay.write_text(yaml.safe_dump({"data": {"n_train": 200, "n_val": 96, "n_test": 192},
                                       "train": {"joint_epochs": 1, "snapshot_epochs": [], "num_threads": 1},
                                       "latency": {"warmup": 1, "repeats": 2}}))
    env = dict(scratch_env(ROOT), CIFAR10_ARCHIVE=str(tiny_zip))
    queue = [sys.executable, "-m", "benchmarks.cpu_queue"]
    refused = subprocess.run([*queue, "confirm", "--build", str(build)], cwd=ROOT, env=env, text=True,
                             capture_output=True, timeout=300)
    assert refused.returncode == 2 and "PROVISIONAL" in refused.stderr and "--option" in refused.stderr, refused.stderr
    cmd = [*queue, "confirm", "--option", "b32_none_sgd", "--seeds", "0", "--overlay", str(overlay), "--build", str(build)]
    first = subprocess.run(cmd, cwd=ROOT, env=env, text=True, capture_output=True, timeout=900)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    project = build / "confirm" / "b32_none_sgd"
    assert yaml.safe_load((project / "params.yaml").read_text())["train"]["optimizer"] == "sgd"
    again = subprocess.run(cmd, cwd=ROOT, env=env, text=True, capture_output=True, timeout=300)
    assert again.returncode == 0 and "python -m pipeline train" not in again.stdout
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    refused = subprocess.run([*queue, "confirm-pack", "--option", "b32_none_sgd", "--build", str(build), "--out",
                              str(foreign)], cwd=ROOT, env=env, text=True, capture_output=True, timeout=300)
    assert refused.returncode == 2 and str(foreign) in refused.stderr, refused.stderr
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]  # a folder that is not a pack is left alone
    out = tmp_path / "out"
    pack = subprocess.run([*queue, "confirm-pack", "--option", "b32_none_sgd", "--build", str(build), "--out", str(out)],
                          cwd=ROOT, env=env, text=True, capture_output=True, timeout=300)
    assert pack.returncode == 0, pack.stderr[-2000:]
    bundle = tmp_path / "results" / "b32_none_sgd"
    imp = subprocess.run([sys.executable, "-m", "pipeline", "paper", "import", str(out), "--bundle", str(bundle)],
                         cwd=ROOT, env=env, text=True, capture_output=True, timeout=300)
    assert imp.returncode == 0, imp.stderr[-2000:]
    for v in ("one_branch", "two_branch"):
        assert (bundle / "seed0" / "data" / "logits" / f"{v}.parquet").is_file(), v
    assert "cpu_queue confirm" in (bundle / "provenance.json").read_text()
    assert "b32_none_sgd" in (bundle / "recipe.yaml").read_text()
    assert set(pd.read_csv(bundle / "search" / "search_options.csv")["candidate"]) >= {"b32_none_sgd"}


def test_confirm_takes_its_choice_from_a_shipped_search_table(tmp_path: Path) -> None:
    """``--search-csv``: on a machine whose build/cpu/search is gone, the rule reads the shipped table
    (results/search/); a missing table is one line naming it, exit 2, and nothing is trained."""
    from benchmarks.cpu_confirm import chosen_option, shipped_search_state

    table = ROOT / "results" / "search" / "cpu_search_options.csv"
    state = shipped_search_state(table)
    assert state[2] is not None and state[2].option == "b32_none_sgd"  # eligible (T >= 1.2), most accurate
    assert str(table) in state[3]
    assert chosen_option(tmp_path / "search", "b32_none_sgd", state)[1] == "b32_none_sgd"
    missing = tmp_path / "nowhere.csv"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.cpu_queue", "confirm", "--search-csv", str(missing),
                           "--build", str(tmp_path / "cpu")], cwd=ROOT, env=scratch_env(ROOT), text=True,
                          capture_output=True, timeout=300)
    assert proc.returncode == 2 and str(missing) in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "cpu" / "confirm").exists()
