"""The Prefect server and the MLflow UI on 127.0.0.1, started and stopped by PID files in the repo.

``python -m pipeline.services start|stop|status``  (``make ui`` / ``make ui-stop``)

* Prefect: ``prefect server start --host 127.0.0.1 --port $PREFECT_PORT`` (default 4200), its
  database in ``$PREFECT_HOME`` (``.prefect/`` in the repo), analytics off.
* MLflow: ``mlflow ui --host 127.0.0.1 --port $MLFLOW_PORT`` (default 5000) over
  ``sqlite:///<repo>/mlflow.db`` with artifacts in ``mlartifacts/``, telemetry off.

Each runs in its own session (process group); the PID files and logs are in ``.prefect/ui/``.
``stop`` signals exactly those process groups, after checking that each PID still runs the
command it was started with (a reused PID is left alone).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".prefect" / "ui"
QUIET_ENV = {
    "DO_NOT_TRACK": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1",
}
HOST = "127.0.0.1"


def ports() -> dict[str, int]:
    return {"prefect": int(os.environ.get("PREFECT_PORT", 4200)), "mlflow": int(os.environ.get("MLFLOW_PORT", 5000))}


def commands() -> dict[str, tuple[list[str], str]]:
    """{service: (argv, health URL)}."""
    bindir = Path(sys.executable).parent
    p = ports()
    return {
        "prefect": ([str(bindir / "prefect"), "server", "start", "--host", HOST, "--port", str(p["prefect"])],
                    f"http://{HOST}:{p['prefect']}/api/health"),
        "mlflow": ([str(bindir / "mlflow"), "ui", "--host", HOST, "--port", str(p["mlflow"]), "--workers", "1",
                    "--backend-store-uri", f"sqlite:///{ROOT / 'mlflow.db'}",
                    "--default-artifact-root", (ROOT / "mlartifacts").as_uri()],
                   f"http://{HOST}:{p['mlflow']}/health"),
    }


def _env() -> dict[str, str]:
    env = dict(os.environ, **QUIET_ENV)
    env.setdefault("PREFECT_HOME", str(ROOT / ".prefect"))
    env["PREFECT_SERVER_API_HOST"] = HOST
    env["PREFECT_UI_API_URL"] = f"http://{HOST}:{ports()['prefect']}/api"
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def _running(name: str) -> dict | None:
    """The recorded {pid, argv} of ``name`` if that PID still runs that command."""
    path = STATE / f"{name}.pid"
    if not path.exists():
        return None
    info = json.loads(path.read_text())
    cmd = _cmdline(info["pid"])
    tail = info["argv"][1:]  # argv[0] may show as the interpreter running the script
    return info if cmd and cmd[-len(tail):] == tail else None


def _healthy(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()  # noqa: S310 (loopback)
        return True
    except OSError:
        return False


def start(timeout: float = 120.0) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    for name, (argv, health) in commands().items():
        if _running(name):
            print(f"{name}: already running (pid {_running(name)['pid']})")
            continue
        if _healthy(health):
            raise SystemExit(f"{name}: something else already answers on {health}; set "
                             f"{name.upper()}_PORT to another port")
        log = open(STATE / f"{name}.log", "ab")  # noqa: SIM115 (handed to the child)
        proc = subprocess.Popen(argv, cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        (STATE / f"{name}.pid").write_text(json.dumps({"pid": proc.pid, "argv": argv}))
        print(f"{name}: started pid {proc.pid}, log {STATE / f'{name}.log'}")
    deadline = time.monotonic() + timeout
    for name, (_, health) in commands().items():
        while not _healthy(health):
            if time.monotonic() > deadline or not _running(name):
                raise SystemExit(f"{name}: not answering on {health}; see {STATE / f'{name}.log'}")
            time.sleep(1)
        print(f"{name}: {health.rsplit('/', 2)[0] if name == 'prefect' else health.rsplit('/', 1)[0]}")


def stop() -> None:
    for name in commands():
        info = _running(name)
        pidfile = STATE / f"{name}.pid"
        if info is None:
            print(f"{name}: not running")
            pidfile.unlink(missing_ok=True)
            continue
        pid = info["pid"]
        try:
            os.killpg(pid, signal.SIGTERM)  # its own session: the server and its workers only
        except ProcessLookupError:
            pass
        for _ in range(30):
            if not _cmdline(pid):
                break
            time.sleep(0.5)
        else:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        pidfile.unlink(missing_ok=True)
        print(f"{name}: stopped pid {pid}")


def status() -> None:
    for name, (_, health) in commands().items():
        info = _running(name)
        print(f"{name}: " + (f"pid {info['pid']}, " if info else "no pid file process, ")
              + ("answering on " if _healthy(health) else "not answering on ") + health)


def api_env() -> None:
    """Print PREFECT_API_URL=... if `make ui`'s Prefect server answers, else nothing (then a flow
    starts Prefect's temporary server): ``env $(python -m pipeline.services api-env) <command>``."""
    url = f"http://{HOST}:{ports()['prefect']}/api"
    if _healthy(url + "/health"):
        print(f"PREFECT_API_URL={url}")


if __name__ == "__main__":
    actions = {"start": start, "stop": stop, "status": status, "api-env": api_env}
    if len(sys.argv) != 2 or sys.argv[1] not in actions:
        raise SystemExit("usage: python -m pipeline.services start|stop|status|api-env")
    actions[sys.argv[1]]()
