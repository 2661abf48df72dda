"""`make ui`, `make ui-status` and the end of `make smoke` print the links that open the right views:
the MLflow runs table in the model-training navigation with the saved view, the latest Prefect flow
run's page (issue 26, point 8). A fake store and a fake Prefect API: no server, no browser."""

from __future__ import annotations

import json
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from pipeline.orchestration.ui_links import ui_links

MLFLOW, PREFECT = "http://127.0.0.1:5000", "http://127.0.0.1:4200"


def _store(path: Path) -> str:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE experiments (experiment_id INTEGER, name TEXT, lifecycle_stage TEXT)")
        db.executemany("INSERT INTO experiments VALUES (?, ?, ?)",
                       [(0, "Default", "active"), (3, "eeoffload-benchmark", "deleted"), (7, "eeoffload-benchmark", "active")])
    return f"sqlite:///{path}"


def test_links_open_the_model_training_runs_table_and_the_latest_flow_run(tmp_path: Path) -> None:
    asked = []

    class Api(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            asked.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            body = json.dumps([{"id": "0b5c-run", "name": "smoke-p-benchmark"}]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = f"http://127.0.0.1:{server.server_port}/api"
        mlflow_line, prefect_line = ui_links(MLFLOW, PREFECT, _store(tmp_path / "mlflow.db"), api)
    finally:
        server.shutdown()
    assert mlflow_line.endswith(f"{MLFLOW}/#/experiments/7/runs?workflowType=machine_learning"
                                "&viewStateShareKey=conventional-vs-calibrated"), mlflow_line
    assert prefect_line.endswith(f"{PREFECT}/runs/flow-run/0b5c-run"), prefect_line
    assert "smoke-p-benchmark" in prefect_line
    assert asked == [("/api/flow_runs/filter", {"sort": "START_TIME_DESC", "limit": 1})]


def test_links_without_servers_or_runs(tmp_path: Path) -> None:
    home = tmp_path / "prefect"
    home.mkdir()
    with sqlite3.connect(home / "prefect.db") as db:  # a flow run on Prefect's temporary server
        db.execute("CREATE TABLE flow_run (id TEXT, name TEXT, start_time TEXT, created TEXT)")
        db.executemany("INSERT INTO flow_run VALUES (?, ?, ?, ?)",
                       [("old", "a", "2026-01-01", "2026-01-01"), ("new", "b", "2026-02-01", "2026-02-01")])
    mlflow_line, prefect_line = ui_links(MLFLOW, PREFECT, f"sqlite:///{tmp_path / 'none.db'}", None, home)
    assert "no run of experiment 'eeoffload-benchmark' yet" in mlflow_line and mlflow_line.endswith(MLFLOW)
    assert prefect_line.endswith(f"{PREFECT}/runs/flow-run/new")
    assert ui_links(MLFLOW, PREFECT, "sqlite:///x", None, tmp_path)[1] == f"Prefect flow runs: {PREFECT}/runs"


def test_smoke_and_make_ui_print_the_links() -> None:
    from pipeline.orchestration import services
    from tests.conftest import ROOT

    assert "print_links()" in Path(services.__file__).read_text().split("def start", 1)[1].split("def links")[0]
    assert "links()" in (ROOT / "pipeline" / "tools" / "scratch.py").read_text().split("def main", 1)[1]
