"""The links that open the right views of ``make ui``'s two servers, printed by ``make ui``,
``make ui-status`` and at the end of ``make smoke``:

* MLflow: the benchmark experiment's runs table in the *model-training* navigation with the saved
  view "conventional vs calibrated" (tracking_views.experiment_url: ``?workflowType=machine_learning``;
  the bare address opens the GenAI navigation, whose run pages lack the model-training tabs);
* Prefect: the latest flow run's page (its task graph and logs), else the runs list.

Read cheaply (no MLflow or Prefect import): the experiment's id from the SQLite store, the latest flow
run from the Prefect API if it answers, else from Prefect's SQLite database in $PREFECT_HOME.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.request
from pathlib import Path

from pipeline.orchestration.tracking_views import DEFAULT_VIEW, EXPERIMENT, VIEWS, experiment_url


def _sqlite(path: Path, query: str, args: tuple = ()) -> tuple | None:
    if not path.is_file():
        return None
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2) as db:
            return db.execute(query, args).fetchone()
    except sqlite3.Error:
        return None


def mlflow_experiment_id(store_uri: str, name: str = EXPERIMENT) -> str | None:
    """The id of experiment ``name`` in a ``sqlite:///`` store; None if absent (no run logged yet)."""
    if not store_uri.startswith("sqlite:///"):
        return None
    row = _sqlite(Path(store_uri.removeprefix("sqlite:///")),
                  "SELECT experiment_id FROM experiments WHERE name = ? AND lifecycle_stage = 'active'", (name,))
    return str(row[0]) if row else None


def latest_flow_run(api_url: str | None, prefect_home: Path | None = None) -> tuple[str, str] | None:
    """(id, name) of the newest flow run: from the API at ``api_url`` if it answers, else from
    ``<prefect_home>/prefect.db``; None if neither has one."""
    if api_url:
        body = json.dumps({"sort": "START_TIME_DESC", "limit": 1}).encode()
        request = urllib.request.Request(api_url.rstrip("/") + "/flow_runs/filter", data=body,
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (loopback)
                runs = json.loads(response.read())
            if runs:
                return str(runs[0]["id"]), str(runs[0].get("name", ""))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    if prefect_home is not None:
        row = _sqlite(Path(prefect_home) / "prefect.db",
                      "SELECT id, name FROM flow_run ORDER BY COALESCE(start_time, created) DESC LIMIT 1")
        if row:
            return str(row[0]), str(row[1])
    return None


def ui_links(mlflow_base: str, prefect_base: str, store_uri: str, api_url: str | None,
             prefect_home: Path | None = None) -> list[str]:
    """The lines to print: where each view opens (bases: the UIs' addresses, no trailing path)."""
    lines = []
    exp_id = mlflow_experiment_id(store_uri)
    if exp_id is None:
        lines.append(f"MLflow: no run of experiment {EXPERIMENT!r} yet ({store_uri}); `make smoke` or "
                     f"`make flow` logs one; then {mlflow_base.rstrip('/')}")
    else:
        lines.append(f"MLflow, runs table '{VIEWS[DEFAULT_VIEW]['name']}' (model training): "
                     f"{experiment_url(mlflow_base, exp_id)}")
    run = latest_flow_run(api_url, prefect_home)
    if run is None:
        lines.append(f"Prefect flow runs: {prefect_base.rstrip('/')}/runs")
    else:
        lines.append(f"Prefect, latest flow run {run[1]!r}: {prefect_base.rstrip('/')}/runs/flow-run/{run[0]}")
    return lines
