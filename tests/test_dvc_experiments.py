"""DVC experiments keep their results: two tiny experiments with different uplink rates can be
compared with `dvc exp show`, `dvc metrics diff` and `dvc plots diff` (offline HTML)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.tools.scratch import scratch_env
from tests.conftest import ROOT, TinyRun

pytestmark = pytest.mark.integration

TEMPLATE = ROOT / "pipeline" / "templates" / "dvc_plots.html"


def dvc(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=scratch_env(root), text=True,
                          capture_output=True, timeout=900)


def test_two_experiments_compare_in_dvc(tiny_run: TinyRun, tmp_path: Path) -> None:
    assert tiny_run.proc.returncode == 0
    root = tmp_path / "p"
    shutil.copytree(tiny_run.root, root, symlinks=True)  # a copy: the session's tiny project stays as it is
    for cmd in (["git", "add", "-A"], ["git", "commit", "-qm", "baseline"]):
        subprocess.run(cmd, cwd=root, check=True, capture_output=True)
    for name, uplink in (("up5", 5.0), ("up40", 40.0)):
        proc = dvc(root, "exp", "run", "-n", name, "-S", f"network.uplink_mbps={uplink}")
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

    shown = dvc(root, "exp", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    text = json.dumps(json.loads(shown.stdout))
    for name in ("up5", "up40"):
        assert f'"name": "{name}"' in text
    assert '"reports/headline.json"' in text and '"p_device_mean"' in text

    diff = dvc(root, "metrics", "diff", "up5", "up40", "--all", "--json")  # --all: unchanged ones too
    assert diff.returncode == 0, diff.stderr
    assert "reports/headline.json" in json.loads(diff.stdout)

    out = tmp_path / "plots"
    plots = dvc(root, "plots", "diff", "up5", "up40", "--html-template", str(TEMPLATE), "-o", str(out))
    assert plots.returncode == 0, plots.stderr
    html = (out / "index.html").read_text()
    assert "cdn.jsdelivr" not in html and "<script src=" not in html  # everything inline: renders offline
    assert "<script>/* vega@5.20.2" in html and "fig4_outage" in html
    assert "up5" in html and "up40" in html
