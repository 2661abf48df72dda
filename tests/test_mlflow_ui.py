"""The MLflow UI on a tracked run, in headless Chromium: a real ``mlflow server`` over an SQLite store
holding a pipeline run logged by pipeline.orchestration.tracking, its experiment page opened by the link the
tracking prints. The page must be the model-training runs table (not the GenAI overview), with the
child runs by their readable names and the headline metrics as columns; a screenshot is saved."""

from __future__ import annotations

import html
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.test_tracking import make_pipeline_outputs

CHROMIUM = "/usr/bin/chromium"  # Debian's package, as in tests/test_report.py
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--mute-audio"]

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"Debian chromium is not installed "
                                 f"({CHROMIUM} absent): apt-get install chromium")]

mlflow = pytest.importorskip("mlflow")


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium with a fresh profile (so the UI's stored GenAI / Model-training choice is unset)."""
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], text=True,
                          capture_output=True, timeout=180, env=dict(os.environ, HOME=str(tmp)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(db: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``mlflow server`` on 127.0.0.1 in its own process group (so the test ends it and its workers)."""
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow_bin) if mlflow_bin.exists() else shutil.which("mlflow") or "mlflow", "server",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--backend-store-uri", f"sqlite:///{db}",
           "--default-artifact-root", (db.parent / "mlartifacts").as_uri()]
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url + "/health", timeout=2).close()  # noqa: S310 (loopback)
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"mlflow server not healthy after {timeout:.0f} s: {log.read_text()[-2000:]}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    from pipeline.orchestration.processes import terminate_group

    if proc.poll() is None:
        terminate_group(proc.pid, 15, alive=lambda: proc.poll() is None)
    proc.wait(timeout=15)


def page_text(dom: str) -> str:
    dom = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))


def test_experiment_page_shows_training_runs_with_metric_columns(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from pipeline.orchestration.tracking import EXPERIMENT, experiment_url, log_pipeline_run

    root = make_pipeline_outputs(tmp_path / "p", models=False)
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    uri = f"sqlite:///{db}"
    assert log_pipeline_run(root, dvc_exp_name="ui-test", uri=uri, log=lambda _: None)
    exp_id = MlflowClient(uri).get_experiment_by_name(EXPERIMENT).experiment_id

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    proc = start_server(db, port, log)
    try:
        wait_healthy(base, proc, log)
        url = experiment_url(base, exp_id)
        # wide: the grid renders only the columns in view
        result = chromium(tmp_path, "--dump-dom", "--virtual-time-budget=30000", "--window-size=3000,900", url)
        dom = result.stdout
        text = page_text(dom)
        assert "Run Name" in text, f"no runs table (rc {result.returncode}): {text[:3000]} {result.stderr[-1500:]}"
        # the model-training navigation, not the GenAI overview (traces, tokens, "Detect Issues")
        assert "Runs - Experiment" in text and "Token Usage" not in text and "Detect Issues" not in text, text[:3000]
        for name in ("one-branch conventional", "one-branch calibrated", "two-branch conventional",
                     "two-branch calibrated"):
            assert name in text, (name, text[:3000])
        # the saved view's columns: metric and param column headers of the runs table (ag-grid col-id)
        for column in ("metrics.`acc_device/p0.85`", "metrics.`p_device/p0.85`", "metrics.`outage/p0.85`",
                       "metrics.`ece/final`", "params.`n_seeds`", "params.`dvc_exp_name`"):
            assert f'col-id="{column}"' in html.unescape(dom), column
        assert "acc_device/p0.85" in text and "Metrics" in text

        shot = tmp_path / "mlflow-runs.png"
        result = chromium(tmp_path, f"--screenshot={shot}", "--virtual-time-budget=30000", "--window-size=1400,700",
                          url)
        assert shot.is_file(), f"no screenshot (rc {result.returncode}): {result.stderr[-2000:]}"
        data = shot.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 30_000
    finally:
        stop_server(proc)
