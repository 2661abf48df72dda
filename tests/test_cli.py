"""The project's one command line (pipeline/cli.py): every dvc.yaml stage is a command with --help,
a usage error exits with status 2, the bad-input convention, in one short message, and every tool
is a command that hands the rest of the line to its module."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from pipeline.cli import TOOLS
from pipeline.tools.scratch import scratch_env
from tests.conftest import ROOT

DVC_STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
LINK_STAGES = yaml.safe_load((ROOT / "link" / "dvc.yaml").read_text())["stages"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=scratch_env(ROOT), text=True,
                          capture_output=True)


def test_every_stage_is_a_command_and_dvc_yaml_calls_it() -> None:
    listing = cli("--help")
    assert listing.returncode == 0, listing.stderr
    for name, spec in {**DVC_STAGES, **LINK_STAGES}.items():
        cmd = spec.get("do", spec)["cmd"].split()
        assert cmd[:4] == ["python", "-m", "pipeline", name], cmd
        assert name in listing.stdout


@pytest.mark.parametrize("stage", ["train", "evaluate", "profile"])
def test_stage_help(stage: str) -> None:
    proc = cli(stage, "--help")
    assert proc.returncode == 0 and "usage: python -m pipeline " + stage in proc.stdout


@pytest.mark.parametrize(("args", "needle"), [(("train", "one_branch"), "the following arguments are required: seed"),
                                              (("train", "one_branch", "x"), "argument seed: 'x' is not an integer"),
                                              (("trian",), "invalid choice: 'trian'")])
def test_usage_errors_exit_2_with_one_message(args: tuple[str, ...], needle: str) -> None:
    proc = cli(*args)
    assert proc.returncode == 2
    assert proc.stderr.count(needle) == 1 and "Traceback" not in proc.stderr


def test_bad_param_through_the_cli_exits_2(tmp_path) -> None:  # noqa: ANN001
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"]["seeds"] = [0, 0]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = subprocess.run([sys.executable, "-m", "pipeline", "validate"], cwd=tmp_path, env=scratch_env(ROOT),
                          text=True, capture_output=True)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: params.yaml: train.seeds = [0, 0]; allowed: a non-empty list "
                           "of distinct integers >= 0, e.g. [0, 1, 2]; to get back: `git checkout params.yaml`"), line
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_every_tool_is_a_command_with_its_own_help(tool: str) -> None:
    """`python -m pipeline <tool> --help` reaches the tool's own parser (or its one usage line)."""
    listing = cli("--help")
    assert tool in listing.stdout
    proc = cli(tool, "--help")
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 1, 2) and "usage" in (proc.stdout + proc.stderr).lower()
