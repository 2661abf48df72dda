"""A scratch project (build/smoke, pipeline.tools.scratch) is a place to compare experiments from its first
run on: the results are committed as "first run", an undefined metric stays a column, `make exps`
and `make plots` work there, and DVC runs its stages with the venv's Python, activated or not.
Real git, DVC and make on a one-stage stand-in for the pipeline (seconds, no training)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.evaluate import UNDEFINED, headline_json
from pipeline.tools.scratch import commit_first_run, make_scratch_project, scratch_env

# A stand-in for evaluate: reports/headline.json (through evaluate's writer, one metric undefined)
# and one curve file, both from network.uplink_mbps; declared as in the real dvc.yaml.
STAGE = """\
import json, yaml
from pipeline.evaluate import headline_json
up = yaml.safe_load(open("params.yaml"))["network"]["uplink_mbps"]
cal = {"p_device_mean": up / 100, "acc_device@0.85": None, "outage@0.875": 0.1, "min_missed_deadline@0.85": 0.2}
json.dump(headline_json({"one_branch": {"conventional": cal, "calibrated": cal}}), open("reports/headline.json", "w"))
open("reports/curve.csv", "w").write("p_tar,p_device\\n0.8,%s\\n0.9,%s\\n" % (up / 100, up / 200))
"""
DVC_YAML = """\
stages:
  evaluate:
    cmd: python stage.py
    deps: [stage.py]
    params: [network.uplink_mbps]
    metrics:
      - reports/headline.json:
          cache: false
    plots:
      - reports/curve.csv:
          cache: false
          x: p_tar
"""


def _run(root: Path, *cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), cwd=root, env=env or scratch_env(root), text=True, capture_output=True,
                          timeout=300)


def _dvc(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _run(root, sys.executable, "-m", "dvc", *args)


def test_headline_keeps_undefined_metrics() -> None:
    cal = {"p_device_mean": 0.4, "acc_device@0.85": None, "outage@0.875": float("nan"), "min_missed_deadline@0.85": 0.0}
    out = headline_json({"v": {"conventional": cal, "calibrated": cal}})
    assert out["v"]["conventional"] == {"p_device_mean": 0.4, "acc_device@0.85": UNDEFINED,
                                        "outage@0.875": UNDEFINED, "min_missed_deadline@0.85": 0.0}
    json.dumps(out, allow_nan=False)  # valid JSON: no NaN


def test_scratch_project_compares_experiments_from_its_first_run(tmp_path: Path) -> None:
    root = make_scratch_project(tmp_path / "p", {"network": {"uplink_mbps": 10.0}})
    (root / "stage.py").write_text(STAGE)
    (root / "dvc.yaml").write_text(DVC_YAML)
    (root / "reports").mkdir()
    assert _run(root, "git", "add", "-A").returncode == 0
    assert _run(root, "git", "commit", "-q", "--amend", "--no-edit").returncode == 0  # still one commit
    assert _dvc(root, "repro").returncode == 0
    assert commit_first_run(root)
    assert not commit_first_run(root)  # nothing left to commit
    log = _run(root, "git", "log", "--format=%s").stdout.split("\n")
    assert log[:2] == ["first run", "scratch project"]
    tracked = _run(root, "git", "ls-files").stdout.split()
    assert {"dvc.lock", "reports/headline.json", "reports/curve.csv", "Makefile"} <= set(tracked)
    baseline = _run(root, "git", "rev-parse", "--abbrev-ref", "HEAD").stdout.strip()

    proc = _dvc(root, "exp", "run", "-n", "up5", "-S", "network.uplink_mbps=5")
    assert proc.returncode == 0, proc.stdout + proc.stderr

    diff = _dvc(root, "metrics", "diff", baseline, "up5", "--all", "--json")
    assert diff.returncode == 0 and "ERROR" not in diff.stderr, diff.stderr
    rows = json.loads(diff.stdout)["reports/headline.json"]
    assert rows["one_branch.conventional.p_device_mean"] == {"old": 0.1, "new": 0.05, "diff": pytest.approx(-0.05)}
    # the undefined metric is a row, not dropped
    assert rows["one_branch.conventional.acc_device@0.85"]["old"] == UNDEFINED

    shown = json.loads(_dvc(root, "exp", "show", "--json").stdout)
    assert all("error" not in str(rev.get("error") or "") and rev.get("error") is None for rev in shown), shown
    base_metrics = shown[0]["data"]["metrics"]["reports/headline.json"]["data"]
    assert base_metrics["one_branch"]["calibrated"]["acc_device@0.85"] == UNDEFINED

    exps = _run(root, "make", "-s", "exps", env={**scratch_env(root), "COLUMNS": "80"})
    assert exps.returncode == 0, exps.stderr
    assert "up5" in exps.stdout and "uplink_mbps" in exps.stdout
    assert "…" not in exps.stdout and "Created" not in exps.stdout and "seeds" not in exps.stdout

    plots = _run(root, "make", "-s", "plots")
    assert plots.returncode == 0, plots.stdout + plots.stderr
    html = (root / "build" / "dvc_plots" / "index.html").read_text()
    assert "up5" in html and "curve.csv" in html


def test_dvc_runs_the_stages_with_the_venv_python_when_it_is_not_activated(tmp_path: Path, tiny_zip: Path) -> None:
    """`dvc repro` in a scratch project with a PATH whose `python` lacks the project's packages (no
    venv on PATH, no PYTHONPATH): the stage re-runs itself with the interpreter that made the copy."""
    root = make_scratch_project(tmp_path / "p", {"data": {"archive": str(tiny_zip)}})
    bare = tmp_path / "bin"
    bare.mkdir()
    shim = bare / "python"  # the base interpreter without site-packages: no yaml, numpy, ...
    shim.write_text(f"#!/bin/sh\nexec {os.path.realpath(sys.executable)} -S \"$@\"\n")
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join([str(bare), "/usr/bin", "/bin"])
    assert subprocess.run([str(shim), "-c", "import yaml"], env=env, capture_output=True).returncode != 0
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro", "validate"], cwd=root, env=env, text=True,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (root / "data" / "params_valid.json").is_file()
    assert "running with" in proc.stdout + proc.stderr

    make = shutil.which("make", path=env["PATH"])
    assert make and subprocess.run([make, "-s", "help"], cwd=root, env=env, capture_output=True).returncode == 0


def test_make_exps_is_the_same_recipe_here_and_in_scratch_projects() -> None:
    from pipeline.tools.scratch import EXP_SHOW_FLAGS
    from tests.conftest import ROOT

    assert f"EXP_SHOW_FLAGS := {EXP_SHOW_FLAGS}\n" in (ROOT / "Makefile").read_text()
