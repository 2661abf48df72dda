"""`make paper`'s project (build/paper, pipeline.tools.paper build) is a place to compare experiments from its
first commit on, as build/smoke is: a git + DVC repository whose first commit has dvc.lock, the
metrics and the curves; the bundle's runs are DVC-tracked inputs, so `dvc exp run -S
network.uplink_mbps=5` re-runs only the stages that read the network, and `dvc metrics diff`,
`dvc exp show`, `make exps` and `make plots` (with a PATH that has no venv) work there.
Real git, DVC and make, on a tiny bundle: synthetic logits, the shipped latency profile and history."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from pipeline.tools.scratch import scratch_env
from tests.synthetic_logits import synthetic_logits_frame

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "results" / "paper"
EXITS = {"one_branch": 2, "two_branch": 3}


def tiny_bundle(bundle: Path) -> None:
    """A one-seed bundle in results/paper/'s layout: synthetic logits (a snapshot at epoch 10 and the
    final logits), the shipped latency profile and training histories, the shipped recipe."""
    params = yaml.safe_load((SHIPPED / "params.yaml").read_text())
    params["train"]["snapshot_epochs"] = [10, params["train"]["trunk_epochs"] + params["train"]["joint_epochs"]]
    bundle.mkdir(parents=True)
    (bundle / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    seed = bundle / "seed0"
    for k, (variant, n_exits) in enumerate(EXITS.items()):
        (seed / "data" / "logits").mkdir(parents=True, exist_ok=True)
        synthetic_logits_frame(300, 600, n_exits, seed=k).to_parquet(seed / "data" / "logits" / f"{variant}.parquet")
        (seed / "data" / "snapshots" / variant).mkdir(parents=True)
        synthetic_logits_frame(300, 600, n_exits, seed=10 + k).to_parquet(
            seed / "data" / "snapshots" / variant / "epoch_010.parquet")
        (seed / "reports" / "training").mkdir(parents=True, exist_ok=True)
        shutil.copy(SHIPPED / "seed0" / "reports" / "training" / f"{variant}.csv", seed / "reports" / "training")
    shutil.copytree(SHIPPED / "seed0" / "data" / "profile", seed / "data" / "profile")


def _run(root: Path, *cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), cwd=root, env=env or scratch_env(root), text=True, capture_output=True,
                          timeout=600)


def _leaves(tree: dict, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for key, value in tree.items():
        out |= _leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
    return out


def test_paper_project_compares_experiments_from_its_first_commit(tmp_path: Path) -> None:
    bundle, dest = tmp_path / "bundle", tmp_path / "build" / "paper"
    tiny_bundle(bundle)
    built = _run(ROOT, sys.executable, "-m", "pipeline", "paper", "build", "--bundle", str(bundle), "--dest", str(dest),
                 "-S", "evaluate.batch_size=64", "-S", "evaluate.resamples=5", env=scratch_env(ROOT))
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:] + \
        (tmp_path / "build" / "paper.log").read_text()[-3000:]

    assert _run(dest, "git", "log", "--format=%s").stdout.count("\n") == 1  # one commit, with the results
    tracked = set(_run(dest, "git", "ls-files").stdout.split())
    assert {"dvc.yaml", "dvc.lock", "params.yaml", "Makefile", "reports/headline.json", "data/logits.dvc",
            "data/snapshots.dvc", "data/profile.dvc", "reports/training.dvc",
            "reports/plots/one_branch/calibrated.csv"} <= tracked
    assert not any(p.startswith(".dvc/site_cache") for p in tracked)
    assert _run(dest, "git", "status", "--porcelain").stdout == ""
    assert "train" not in yaml.safe_load((dest / "dvc.yaml").read_text())["stages"]
    graph = _run(dest, sys.executable, "-m", "pipeline", "flows", "dag", "--root", str(dest), env=scratch_env(ROOT))
    assert graph.returncode == 0 and "calibrate" in graph.stdout and ".dvc" not in graph.stdout, \
        graph.stdout + graph.stderr  # the flow's stage graph: the bundle's .dvc inputs are no steps
    dvc = lambda *args: _run(dest, sys.executable, "-m", "dvc", *args)  # noqa: E731
    status = dvc("status", "--json")
    assert status.returncode == 0 and json.loads(status.stdout) == {}, status.stdout + status.stderr

    exp = dvc("exp", "run", "-n", "up5", "-S", "network.uplink_mbps=5")
    assert exp.returncode == 0, exp.stdout[-3000:] + exp.stderr[-3000:]
    assert "Running stage 'evaluate'" in exp.stdout and "Running stage 'calibrate" not in exp.stdout

    diff = dvc("metrics", "diff", "HEAD", "up5", "--all", "--json")
    assert diff.returncode == 0 and "ERROR" not in diff.stderr, diff.stderr
    headline = json.loads((dest / "reports" / "headline.json").read_text())
    assert set(json.loads(diff.stdout)["reports/headline.json"]) == _leaves(headline)  # none dropped
    shown = json.loads(dvc("exp", "show", "--json").stdout)
    assert all(rev.get("error") is None for rev in shown), shown
    assert any(e.get("name") == "up5" for rev in shown for e in rev.get("experiments") or [])

    no_venv = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    no_venv["PATH"] = os.pathsep.join(["/usr/bin", "/bin"])
    plots = _run(dest, "make", "-s", "plots", env=no_venv)
    assert plots.returncode == 0, plots.stdout + plots.stderr
    assert "up5" in (dest / "build" / "dvc_plots" / "index.html").read_text()
    exps = _run(dest, "make", "-s", "exps", env={**no_venv, "COLUMNS": "200"})
    assert exps.returncode == 0 and "up5" in exps.stdout, exps.stdout + exps.stderr
