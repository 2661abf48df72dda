"""The Makefile a newcomer meets: `make help` lists every target with its description, and a failed
`make quick` puts params.yaml back (DVC leaves a failed experiment's values in the workspace)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def phony_targets() -> list[str]:
    text = (ROOT / "Makefile").read_text()
    return [t for line in re.findall(r"^\.PHONY:(.*)$", text, flags=re.M) for t in line.split()]


def test_make_help_lists_every_target_with_its_description() -> None:
    proc = subprocess.run(["make", "-s", "help"], cwd=ROOT, text=True, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    listed = {m.group(1): m.group(2) for m in re.finditer(r"^  make (\S+)\s+(.+)$", proc.stdout, flags=re.M)}
    targets = phony_targets()
    assert {"clean", "test-fast", "ui-status", "scaleout-status", "smoke", "quick", "paper"} <= set(targets)
    missing = [t for t in targets if t not in listed]
    assert missing == [], proc.stdout
    assert all(len(desc) > 10 for desc in listed.values()), listed


def test_failed_make_quick_puts_params_back(tmp_path: Path) -> None:
    """`make quick` with a `dvc` that, like DVC on a failed experiment, writes the experiment's values
    into params.yaml and exits 255: make fails with DVC's status and params.yaml is as before."""
    for name in ("Makefile", "params.yaml", "requirements.txt", "pyproject.toml"):
        shutil.copy2(ROOT / name, tmp_path / name)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "bad.yaml").write_text("network: {uplink_mbps: -5}\n")
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text("")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(sys.executable)
    dvc = bin_dir / "dvc"
    dvc.write_text("#!/bin/sh\necho 'network: {uplink_mbps: -5}' > params.yaml\necho 'ERROR: failed to reproduce' >&2\nexit 255\n")
    dvc.chmod(0o755)
    (tmp_path / ".venv" / ".installed").touch()
    before = (tmp_path / "params.yaml").read_text()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    proc = subprocess.run(["make", "-s", "quick", "QUICK_CONFIG=configs/bad.yaml"], cwd=tmp_path, env=env,
                          text=True, capture_output=True, timeout=120)
    assert proc.returncode != 0
    assert "params.yaml put back as it was before" in proc.stderr, proc.stdout + proc.stderr
    assert "exit 255" in proc.stderr
    assert (tmp_path / "params.yaml").read_text() == before


def test_readme_first_screen_names_the_ways_to_a_result_and_the_exit_statuses() -> None:
    readme = (ROOT / "README.md").read_text()
    first = readme[readme.index("## The two commands"):readme.index("## Layout")]
    commands = re.search(r"```sh\n(.*?)```", first, flags=re.S).group(1)
    assert len([line for line in commands.splitlines() if line.startswith("make ")]) == 2
    for needle in ("make paper", "make quick", "make smoke", "make help", "build/paper/reports/index.html",
                   "build/smoke/reports/index.html", "build/smoke.logs/", "| 255", "| 2 |", "| 1,"):
        assert needle in first, needle
