"""``python -m pipeline summary``: the markdown summary of a finished run (README and issue notes),
the shift table included where the shift stages ran."""

from __future__ import annotations

import subprocess
import sys

import yaml

from pipeline.tools.scratch import scratch_env
from tests.conftest import TinyRun


def test_summary_of_the_tiny_run_has_every_table(tiny_run: TinyRun) -> None:
    assert tiny_run.proc.returncode == 0, tiny_run.proc.stderr[-2000:]
    proc = subprocess.run([sys.executable, "-m", "pipeline", "summary", str(tiny_run.root)], cwd=tiny_run.root,
                          env=scratch_env(tiny_run.root), text=True, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    params = yaml.safe_load((tiny_run.root / "params.yaml").read_text())
    for header in ("| variant | exit | test accuracy |", "| variant | p_tar | calibration |",
                   "| variant | corruption | severity |", "| claim | variant |"):
        assert header in proc.stdout, header
    table = next(block for block in proc.stdout.split("\n\n") if block.startswith("| variant | corruption |"))
    rows = [line.split("|") for line in table.splitlines()[2:]]
    settings = {(cells[2].strip(), int(cells[3])) for cells in rows}
    wanted = {(c, s) for c in params["shift"]["corruptions"] for s in params["shift"]["severities"]}
    assert wanted <= settings, sorted(wanted - settings)
