"""Issue 11: BranchyNet-faithful defaults, snapshots along training and the trajectory stage, the
paper-length bundle rebuilt without training, plain_run's --parallel/--only, the cost estimate."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from eeoffload.model import BAlexNet, LocalResponseNorm
from pipeline.core import params as P
from pipeline.core.io import StageError
from pipeline.tools.plain_run import plan, stage_groups
from pipeline.tools.scratch import scratch_env
from tests.conftest import ROOT, TINY_PARAMS, TinyRun

LOGIT_COLUMNS = ["sample_id", "split", "label", "exit", *[f"logit_{c}" for c in range(10)]]


def test_lrn_is_branchynets() -> None:
    """networks/alex_cifar10.py in kunglab/branchynet: Chainer LRN n=3, alpha=5e-5, beta=0.75, k=2;
    torch divides alpha by the window size, Chainer does not."""
    lrns = [m for m in BAlexNet(["relu1", "relu2"]).modules() if isinstance(m, LocalResponseNorm)]
    assert lrns
    for m in lrns:
        assert (m.size, m.beta, m.k) == (3, 0.75, 2.0)
        assert m.alpha / m.size == pytest.approx(5e-5)
    x = torch.rand(2, 8, 5, 5)
    chainer = x / (2.0 + 5e-5 * torch.nn.functional.avg_pool3d(
        torch.nn.functional.pad((x * x).unsqueeze(1), (0, 0, 0, 0, 1, 1)), (3, 1, 1), stride=1).squeeze(1) * 3) ** 0.75
    torch.testing.assert_close(lrns[0](x.contiguous(memory_format=torch.channels_last)), chainer, rtol=1e-5, atol=1e-6)


def test_default_recipe_is_branchynets() -> None:
    train = P.train_params(yaml.safe_load((ROOT / "params.yaml").read_text()))
    assert (train.trunk_epochs, train.joint_epochs, train.batch_size, train.augment) == (50, 100, 512, "none")
    assert train.snapshot_epochs[-1] == 150


@pytest.mark.parametrize("value", [[3, 2], [0, 5], ["5"], 5, [1, 1]])
def test_bad_snapshot_epochs_name_the_key(value: object) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"]["snapshot_epochs"] = value
    with pytest.raises(StageError, match=r"train.snapshot_epochs = .*; allowed: a list of strictly increasing"):
        P.train_params(params)


def test_snapshot_epochs_past_the_schedule_are_dropped() -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"] |= {"trunk_epochs": 0, "joint_epochs": 30, "snapshot_epochs": [10, 25, 50, 150]}
    assert P.train_params(params).snapshot_epochs == (10, 25)


def test_parallel_groups_foreach_instances_only() -> None:
    groups = [[s.name for s in g] for g in stage_groups(plan(ROOT), {"train", "logits"})]
    runs = [f"{v}-{k}" for v in ("one_branch", "two_branch") for k in (0, 1, 2)]  # variant x seed
    assert [f"train@{r}" for r in runs] in groups
    assert [f"logits@{r}" for r in runs] in groups
    assert ["calibrate@one_branch-0"] in groups and ["prepare"] in groups


def test_plain_run_only_and_unknown_stage(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pipeline", "plain-run", *args], cwd=ROOT, env=scratch_env(ROOT),
                              text=True, capture_output=True)

    proc = run("--dry-run", "--only", "evaluate", "trajectory")
    assert proc.returncode == 0, proc.stderr
    assert [line.split(":")[0] for line in proc.stdout.splitlines()] == ["== evaluate", "== trajectory"]
    bad = run("--dry-run", "--only", "evaluat")
    assert bad.returncode == 2 and bad.stderr.count("--only 'evaluat': no such stage") == 1


# --------------------------------------------------------------------------- the real pipeline


@pytest.mark.integration
@pytest.mark.parametrize(("variant", "n_exits"), [("one_branch", 2), ("two_branch", 3)])
def test_snapshots_and_history(tiny_run: TinyRun, variant: str, n_exits: int) -> None:
    assert tiny_run.proc.returncode == 0, tiny_run.proc.stderr[-2000:]
    files = sorted((tiny_run.root / "data" / "snapshots" / variant / "seed0").glob("*.parquet"))
    assert [f.name for f in files] == ["epoch_001.parquet", "epoch_002.parquet"]
    final = pd.read_parquet(tiny_run.root / "data" / "logits" / variant / "seed0.parquet")
    last = pd.read_parquet(files[-1])
    assert list(last.columns) == LOGIT_COLUMNS and len(last) == len(final)
    # the last snapshot is the trained model: the same logits as the logits stage's (float tolerance)
    pd.testing.assert_frame_equal(last, final, check_exact=False, atol=1e-4, rtol=1e-4)
    history = pd.read_csv(tiny_run.root / "reports" / "training" / variant / "seed0.csv")
    assert [f"val_temperature_exit{k}" for k in range(1, n_exits + 1)] == \
        [c for c in history.columns if c.startswith("val_temperature")]
    assert not (tiny_run.root / "data" / "checkpoints" / f"{variant}_seed0_snapshots").exists()


@pytest.mark.integration
def test_trajectory_tables(tiny_run: TinyRun) -> None:
    folder = tiny_run.root / "reports" / "trajectory"
    exits = pd.read_parquet(folder / "exits.parquet")
    assert sorted(set(zip(exits["variant"], exits["epoch"], strict=True))) == \
        [(v, e) for v in ("one_branch", "two_branch") for e in (1, 2)]
    assert len(exits) == 2 * 2 + 2 * 3
    trunk = exits[exits["epoch"] == 1]  # trunk_epochs = 1: side branches untrained then
    assert list(trunk["trained"]) == [k == n for k, n in zip(trunk["exit"], trunk["variant"].map(
        {"one_branch": 2, "two_branch": 3}), strict=True)]
    seeds = TINY_PARAMS["train"]["seeds"]
    assert (exits["n_seeds"] == len(seeds)).all()  # means over the seeds; per seed beside them
    by_seed = pd.read_parquet(folder / "exits_by_seed.parquet")
    assert len(by_seed) == len(seeds) * len(exits) and sorted(by_seed["seed"].unique()) == seeds
    offload = pd.read_parquet(folder / "offload.parquet")
    assert len(offload) == 2 * 2 * 2 and {"p_device_mean", "outage@0.875", "outage@0.9"} <= set(offload.columns)
    claims = pd.read_parquet(folder / "claims.parquet")
    assert sorted(claims["epoch"].unique()) == [1, 2]
    html = (tiny_run.root / "reports" / "index.html").read_text()
    assert 'id="trajectory"' in html and "Claims per snapshot" in html


@pytest.mark.integration
def test_paper_build_from_a_bundle(tiny_run: TinyRun, tmp_path: Path) -> None:
    """A bundle laid out as results/paper/ (here from the tiny run) rebuilds without training."""
    bundle = tmp_path / "bundle"
    for seed in (0, 1):  # the bundle's layout: seed<s>/data/logits/<variant>.parquet, ...
        for v in ("one_branch", "two_branch"):
            out = bundle / f"seed{seed}"
            (out / "data" / "logits").mkdir(parents=True, exist_ok=True)
            shutil.copy(tiny_run.root / "data" / "logits" / v / f"seed{seed}.parquet", out / "data" / "logits" / f"{v}.parquet")
            (out / "reports" / "training").mkdir(parents=True, exist_ok=True)
            shutil.copy(tiny_run.root / "reports" / "training" / v / f"seed{seed}.csv",
                        out / "reports" / "training" / f"{v}.csv")
            if seed == 0:
                shutil.copytree(tiny_run.root / "data" / "snapshots" / v / "seed0", out / "data" / "snapshots" / v)
    shutil.copytree(tiny_run.root / "data" / "profile", bundle / "seed0" / "data" / "profile")
    (bundle / "seed0" / "data" / "snapshots" / "one_branch" / "epoch_002.parquet").unlink()  # shipped once, as logits
    shutil.copy(tiny_run.root / "params.yaml", bundle / "params.yaml")
    dest = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "pipeline", "paper", "build", "--bundle", str(bundle), "--dest",
                           str(dest), "-S", "network.uplink_mbps=5", "-S", f"evaluate.batch_size="
                           f"{TINY_PARAMS['evaluate']['batch_size']}"], cwd=ROOT, env=scratch_env(ROOT),
                          text=True, capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (dest / "reports" / "index.html").is_file()
    params = yaml.safe_load((dest / "params.yaml").read_text())
    assert params["network"]["uplink_mbps"] == 5 and params["train"]["seeds"] == [0, 1]
    assert (dest / "data" / "snapshots" / "one_branch" / "seed0" / "epoch_002.parquet").is_file()
    assert (pd.read_parquet(dest / "reports" / "metrics" / "one_branch" / "offload.parquet")["n_seeds"] == 2).all()
    assert "| one_branch | calibrated | outage@0.85 |" in (dest / "headline.md").read_text()


def test_paper_build_refuses_a_folder_that_is_no_bundle(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pipeline", "paper", "build", "--bundle", str(tmp_path), "--dest",
                           str(tmp_path / "out")], cwd=ROOT, env=scratch_env(ROOT), text=True, capture_output=True)
    assert proc.returncode == 2 and proc.stderr.count("not a results bundle") == 1


@pytest.mark.integration
def test_report_of_a_subset_run_says_it_is_plumbing(tiny_run: TinyRun) -> None:
    html = (tiny_run.root / "reports" / "index.html").read_text()
    assert html.count('id="banner"') == 1 and "Plumbing run" in html


def test_banner_rules() -> None:
    from dataclasses import replace

    from pipeline.report_rows import run_banner

    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    data, train = P.data_params(base), P.train_params(base)
    assert (data.n_train, data.n_val, data.n_test, train.trunk_epochs, train.joint_epochs) == (45000, 3000, 7000, 50, 100)
    assert run_banner(data, train) is None
    assert run_banner(data, replace(train, trunk_epochs=0, joint_epochs=16))["title"].startswith("Shortened training")
    smoke = replace(data, n_train=2000, n_val=500, n_test=1100)
    assert run_banner(smoke, replace(train, trunk_epochs=0, joint_epochs=1))["title"].startswith("Plumbing run")


def test_shipped_bundle_is_complete() -> None:
    from pipeline.tools.paper import BUNDLE, seeds_of

    assert seeds_of(BUNDLE) == [0, 1, 2]
    for seed in (0, 1, 2):
        for v in ("one_branch", "two_branch"):
            frame = pd.read_parquet(BUNDLE / f"seed{seed}" / "data" / "logits" / f"{v}.parquet")
            assert list(frame.columns) == LOGIT_COLUMNS and len(frame) == 10_000 * (2 if v == "one_branch" else 3)
    epochs = sorted(p.name for p in (BUNDLE / "seed0" / "data" / "snapshots" / "one_branch").iterdir())
    assert epochs == [f"epoch_{e:03d}.parquet" for e in (10, 25, 50, 75, 100)]
    # the analysis is shipped too (pipeline.tools.paper build --certify --ship): readable without running anything
    assert (BUNDLE / "analysis" / "reports" / "index.html").is_file() and (BUNDLE / "headline.md").is_file()


def test_estimate_names_device_and_time(tmp_path: Path) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["n_train"] = 256
    params["train"] |= {"trunk_epochs": 1, "joint_epochs": 1, "batch_size": 32, "num_threads": 1, "device": "cpu"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = subprocess.run([sys.executable, "-m", "pipeline", "estimate"], cwd=tmp_path, env=scratch_env(ROOT),
                          text=True, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "estimate: train@one_branch: 2 epochs x 8 steps" in proc.stdout and "on cpu" in proc.stdout
    assert "x 3 seeds" in proc.stdout and "training all variants and seeds" in proc.stdout
