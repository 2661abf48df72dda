"""The real DVC pipeline, end to end, on a tiny synthetic class-folder zip (no mocks)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.tools.scratch import dvc_repro, scratch_env
from tests.conftest import TINY_PARAMS, TinyRun

pytestmark = pytest.mark.integration

LOGIT_SCHEMA = {"sample_id": "int64", "split": None, "label": "int64", "exit": "int64",
                **{f"logit_{c}": "float32" for c in range(10)}}


def ran_stages(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def test_repro_succeeds(tiny_run: TinyRun) -> None:
    assert tiny_run.proc.returncode == 0, tiny_run.proc.stdout[-3000:] + tiny_run.proc.stderr[-3000:]


@pytest.mark.parametrize(("variant", "n_exits"), [("one_branch", 2), ("two_branch", 3)])
def test_logits_parquet_schema(tiny_run: TinyRun, variant: str, n_exits: int) -> None:
    df = pd.read_parquet(tiny_run.root / "data" / "logits" / variant / "seed0.parquet")
    assert list(df.columns) == list(LOGIT_SCHEMA)
    for col, dtype in LOGIT_SCHEMA.items():
        if dtype:
            assert str(df[col].dtype) == dtype, col
    assert set(df["split"]) == {"val", "test"}
    assert sorted(df["exit"].unique()) == list(range(1, n_exits + 1))
    n_val, n_test = TINY_PARAMS["data"]["n_val"], TINY_PARAMS["data"]["n_test"]
    assert len(df) == (n_val + n_test) * n_exits
    for (split, _), group in df.groupby(["split", "exit"]):
        assert group["sample_id"].is_unique
        assert len(group) == (n_val if split == "val" else n_test)
    # val and test are disjoint parts of the CIFAR-10 test set
    ids = df.groupby("split")["sample_id"].apply(set)
    assert not ids["val"] & ids["test"]


def test_second_repro_is_a_no_op(tiny_run: TinyRun) -> None:
    proc = dvc_repro(tiny_run.root)
    assert proc.returncode == 0, proc.stderr
    assert ran_stages(proc.stdout) == []


def test_uplink_change_reruns_only_evaluate_and_below(tiny_run: TinyRun) -> None:
    params_path = tiny_run.root / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["network"]["uplink_mbps"] = 5.0
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    proc = dvc_repro(tiny_run.root)
    assert proc.returncode == 0, proc.stderr
    assert set(ran_stages(proc.stdout)) == {"validate", "evaluate", "trajectory", "plots", "report"}


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.rglob("*")) if f.is_file()}


def test_bad_param_through_dvc_repro_keeps_every_result(tiny_run: TinyRun) -> None:
    """A value only evaluate reads, made invalid: `dvc repro` stops at stage validate with one line
    naming the key, and evaluate's outputs (cache: false, so DVC could not restore them) are
    byte-identical afterwards; the fixed params then re-run validate alone."""
    root = tiny_run.root
    params_path = root / "params.yaml"
    good = params_path.read_text()
    metrics_json = (root / "reports/metrics.json").read_bytes()
    before = {d: _tree_digest(root / d) for d in ("reports/metrics", "reports/plots", "reports/figures")}
    params = yaml.safe_load(good)
    params["network"]["uplink_mbps"] = -5
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        proc = dvc_repro(root)
        assert proc.returncode != 0
        errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "network.uplink_mbps = -5" in line]
        assert len(errors) == 1 and "allowed" in errors[0], proc.stdout + proc.stderr
        assert ran_stages(proc.stdout) == ["validate"]
        assert (root / "reports/metrics.json").read_bytes() == metrics_json
        assert {d: _tree_digest(root / d) for d in before} == before
    finally:
        params_path.write_text(good)
    again = dvc_repro(root)
    assert again.returncode == 0, again.stderr
    assert ran_stages(again.stdout) == ["validate"]


def test_outputs_deleted_by_a_killed_repro_come_back_with_dvc_checkout(tiny_run: TinyRun) -> None:
    """DVC deletes a stage's outputs before it runs the stage; if the stage is then killed, the
    outputs dvc.lock records come back with one command, `dvc checkout` (every output but the two
    git-tracked DVC-experiment files is cached: dvc.yaml)."""
    root = tiny_run.root
    kept = {d: _tree_digest(root / d) for d in ("reports/metrics", "reports/figures", "reports/trajectory")}
    metrics_json = (root / "reports/metrics.json").read_bytes()
    for d in kept:
        shutil.rmtree(root / d)
    (root / "reports/metrics.json").unlink()
    (root / "data/models/one_branch/seed0.pt").unlink()
    proc = subprocess.run([sys.executable, "-m", "dvc", "checkout"], cwd=root, env=scratch_env(root), text=True,
                          capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert {d: _tree_digest(root / d) for d in kept} == kept
    assert (root / "reports/metrics.json").read_bytes() == metrics_json
    assert (root / "data/models/one_branch/seed0.pt").is_file()
    assert ran_stages(dvc_repro(root).stdout) == []  # and the project is up to date again


def test_dvc_metrics_show(tiny_run: TinyRun) -> None:
    proc = subprocess.run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], cwd=tiny_run.root,
                          env=scratch_env(tiny_run.root), text=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert "one_branch" in proc.stdout


def test_dvc_plots_show_loads_every_plot(tiny_run: TinyRun) -> None:
    """Every top-level plot's files exist after a repro and hold its x and y fields, and `dvc plots
    show` reports no failed load (issue 22: the training plots named a file no stage wrote)."""
    root = tiny_run.root
    for entry in yaml.safe_load((root / "dvc.yaml").read_text())["plots"]:
        (name, props), = entry.items()
        for path, fields in props["y"].items():
            frame = pd.read_csv(root / path)
            wanted = {props["x"], *([fields] if isinstance(fields, str) else fields)}
            assert wanted <= set(frame.columns), (name, path, sorted(wanted - set(frame.columns)))
    proc = subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "--json"], cwd=root,
                          env=scratch_env(root), text=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert "errors" not in json.loads(proc.stdout), proc.stdout[:3000]


def test_certify_change_reruns_only_certify_and_the_report(tiny_run: TinyRun) -> None:
    params_path = tiny_run.root / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["certify"]["delta"] = 0.2
    params["calibration"]["methods"] = ["none", "temperature"]
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    proc = dvc_repro(tiny_run.root)
    assert proc.returncode == 0, proc.stderr
    seeds = TINY_PARAMS["train"]["seeds"]
    assert set(ran_stages(proc.stdout)) == {"validate", "report"} | {
        f"certify@{v}-{k}" for v in ("one_branch", "two_branch") for k in seeds}


def test_a_new_seed_trains_that_seed_only(tiny_run: TinyRun, tmp_path: Path) -> None:
    """Adding a seed to train.seeds costs one training per variant: the new seed's runs, then the
    aggregating stages; the other seeds' runs are kept. On a copy of the tiny project (git, DVC
    and its cache included), so the session's project keeps its files."""
    root = tmp_path / "copy"
    shutil.copytree(tiny_run.root, root, symlinks=True)
    params_path = root / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    new = max(params["train"]["seeds"]) + 1
    params["train"]["seeds"] = [*params["train"]["seeds"], new]
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    proc = dvc_repro(root)
    assert proc.returncode == 0, proc.stderr
    per_run = {f"{stage}@{v}-{new}" for stage in ("train", "logits", "calibrate", "certify")
               for v in ("one_branch", "two_branch")}
    assert set(ran_stages(proc.stdout)) == {"validate", "evaluate", "trajectory", "plots", "report"} | per_run
    aggregate = pd.read_parquet(root / "reports/metrics/one_branch/offload.parquet")
    assert (aggregate["n_seeds"] == len(params["train"]["seeds"])).all()
    assert aggregate["p_device_seed_lo"].notna().any()  # a t-interval from 3 seeds on
