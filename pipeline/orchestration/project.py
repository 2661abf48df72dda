"""The project and its environment: root, DVC subprocess env, the one MLflow store, debug logs.

No Prefect, MLflow or DVC import here (``make ui`` and ``make smoke`` read it cheaply).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

#: The project this package lives in (for a scratch copy under build/, that copy).
PROJECT_ROOT = Path(__file__).resolve().parents[2]
QUIET_ENV = {
    "DO_NOT_TRACK": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1",
}


def resolve_root(root: str | os.PathLike[str] | None) -> Path:
    """The DVC project: ``root``, else $EEOFFLOAD_ROOT, else the current directory."""
    path = Path(root or os.environ.get("EEOFFLOAD_ROOT") or Path.cwd()).resolve()
    if not (path / "dvc.yaml").is_file():
        raise FileNotFoundError(f"{path}: no dvc.yaml here; run the flow from the project root or pass root=")
    return path


def dvc_env() -> dict[str, str]:
    """Environment for DVC subprocesses: no telemetry, unbuffered stage output (streams line by line)."""
    env = dict(os.environ, **QUIET_ENV)
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def mlflow_store_uri(root: Path = PROJECT_ROOT) -> str:
    """The MLflow store of a project: the SQLite file ``make ui`` serves (``sqlite:///<root>/mlflow.db``,
    artifacts in ``<root>/mlartifacts``); pipeline.orchestration.tracking.tracking_uri(root) without
    $MLFLOW_TRACKING_URI is the same URI."""
    return f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def mlflow_artifact_root(root: Path = PROJECT_ROOT) -> Path:
    return Path(root).resolve() / "mlartifacts"


def project_tracking_uri() -> str:
    """The one tracking URI of this project: $MLFLOW_TRACKING_URI if set, else the store ``make ui``
    serves. Flows in the project and smoke runs in build/smoke both log here."""
    return os.environ.get("MLFLOW_TRACKING_URI") or mlflow_store_uri(PROJECT_ROOT)


def prefect_home() -> Path:
    """Prefect's state (database, logs of ``make ui``): $PREFECT_HOME, else ``<project>/.prefect``."""
    return Path(os.environ.get("PREFECT_HOME") or PROJECT_ROOT / ".prefect")


#: Where CLI runs write their full logs instead of ``<root>/.prefect/logs/`` (pipeline.tools.scratch).
LOG_DIR_ENV = "EEOFFLOAD_LOG_DIR"


def debug_log_path(root: Path, what: str, keep: int = 20) -> Path:
    """A fresh file for one CLI run's full log (tracebacks included): ``<root>/.prefect/logs/``, or
    ``$EEOFFLOAD_LOG_DIR`` if set (pipeline.tools.scratch sets it beside the scratch folder, so the log of a
    failed smoke run outlives the folder the next run replaces); only the newest ``keep`` earlier
    logs of ``what`` are kept."""
    folder = Path(os.environ.get(LOG_DIR_ENV) or Path(root) / ".prefect" / "logs")
    for old in sorted(folder.glob(f"{what}-*.log"), key=lambda p: p.stat().st_mtime)[:-keep or None]:
        old.unlink(missing_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return folder / f"{what}-{stamp}-{os.getpid()}.log"
