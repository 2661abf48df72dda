"""The Prefect server and the MLflow UI on 127.0.0.1, started and stopped by PID files in the repo.

``python -m pipeline services start|stop|status|api-env``  (``make ui`` / ``make ui-stop`` / ``make ui-status``)

* Prefect: ``prefect server start --host 127.0.0.1 --port $PREFECT_PORT`` (default 4200), its
  database in ``$PREFECT_HOME`` (``.prefect/`` in the repo), analytics off.
* MLflow: ``mlflow ui --host 127.0.0.1 --port $MLFLOW_PORT`` (default 5000) over the project's
  store (pipeline.orchestration.project.mlflow_store_uri: ``sqlite:///<repo>/mlflow.db``, artifacts
  in ``mlartifacts/``): the store flows and ``make smoke`` log to, telemetry off.

Each runs in its own session (process group); the PID files and logs are in ``.prefect/ui/``.
``start`` and ``status`` end with the links that open the right views (ui_links: the MLflow runs
table in the model-training navigation with the saved view, the latest Prefect flow run).
``stop`` signals exactly those process groups, after checking that each PID still runs the
command it was started with (a reused PID is left alone). Both print what they wait for, a line
at a time ("starting ...", "... ready in 12 s"); on a terminal also a line every 15 s of waiting.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pipeline.orchestration.processes import healthy, read_pidfile, terminate_group
from pipeline.orchestration.project import PROJECT_ROOT, QUIET_ENV, mlflow_artifact_root, mlflow_store_uri, prefect_home
from pipeline.orchestration.ui_links import ui_links

ROOT = PROJECT_ROOT
STATE = ROOT / ".prefect" / "ui"
HOST = "127.0.0.1"
LABEL = {"prefect": "Prefect server", "mlflow": "MLflow UI"}
PROGRESS_EVERY_S = 15.0


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
                    "--backend-store-uri", mlflow_store_uri(ROOT),
                    "--default-artifact-root", mlflow_artifact_root(ROOT).as_uri()],
                   f"http://{HOST}:{p['mlflow']}/health"),
    }


def service_env() -> dict[str, str]:
    """The servers' environment: telemetry off, Prefect's state in the repo, the UI's API on loopback."""
    env = dict(os.environ, **QUIET_ENV)
    env.setdefault("PREFECT_HOME", str(ROOT / ".prefect"))
    env["PREFECT_SERVER_API_HOST"] = HOST
    env["PREFECT_UI_API_URL"] = f"http://{HOST}:{ports()['prefect']}/api"
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def url_of(name: str) -> str:
    return f"http://{HOST}:{ports()[name]}"


def running(name: str) -> dict | None:
    """The recorded {pid, argv} of ``name`` if that PID still runs that command."""
    return read_pidfile(STATE / f"{name}.pid")


def say(message: str) -> None:
    print(message, flush=True)


def start(timeout: float = 120.0) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    waiting = []
    for name, (argv, health) in commands().items():
        if info := running(name):
            say(f"{LABEL[name]}: already running (pid {info['pid']}) on {url_of(name)}")
            continue
        if healthy(health):
            raise SystemExit(f"{LABEL[name]}: something else already answers on {health}; set "
                             f"{name.upper()}_PORT to another port")
        log = open(STATE / f"{name}.log", "ab")  # noqa: SIM115 (handed to the child)
        proc = subprocess.Popen(argv, cwd=ROOT, env=service_env(), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        (STATE / f"{name}.pid").write_text(json.dumps({"pid": proc.pid, "argv": argv}))
        say(f"starting {LABEL[name]} on {HOST}:{ports()[name]} (pid {proc.pid}, log {STATE / f'{name}.log'}) ...")
        waiting.append(name)
    deadline = began + timeout
    tty = sys.stdout.isatty()
    for name in waiting:
        health = commands()[name][1]
        next_note = time.monotonic() + PROGRESS_EVERY_S
        while not healthy(health):
            if time.monotonic() > deadline or not running(name):
                raise SystemExit(f"{LABEL[name]}: not answering on {health} after {time.monotonic() - began:.0f} s; "
                                 f"see {STATE / f'{name}.log'}")
            if tty and time.monotonic() >= next_note:
                say(f"  still waiting for {LABEL[name]} ({time.monotonic() - began:.0f} s, up to {timeout:.0f} s)")
                next_note += PROGRESS_EVERY_S
            time.sleep(0.5)
        say(f"{LABEL[name]} ready in {time.monotonic() - began:.0f} s: {url_of(name)}")
    print_links()


def links() -> list[str]:
    """The links that open the MLflow runs table (model training, saved view) and the latest
    Prefect flow run (pipeline.orchestration.ui_links), for this project's store and servers."""
    return ui_links(url_of("mlflow"), url_of("prefect"), mlflow_store_uri(ROOT), api_url(), prefect_home())


def print_links() -> None:
    for line in links():
        say(line)


def stop(timeout: float = 15.0) -> None:
    for name in commands():
        info = running(name)
        pidfile = STATE / f"{name}.pid"
        if info is None:
            say(f"{LABEL[name]}: not running")
            pidfile.unlink(missing_ok=True)
            continue
        pid = info["pid"]
        began = time.monotonic()
        say(f"stopping {LABEL[name]} (pid {pid}) ...")
        result = terminate_group(pid, timeout)  # its own session: the server and its workers only
        how = f"killed (no exit {timeout:.0f} s after SIGTERM)" if result == "killed" else "stopped"
        pidfile.unlink(missing_ok=True)
        say(f"{LABEL[name]} {how} in {time.monotonic() - began:.0f} s")


def status() -> None:
    for name, (_, health) in commands().items():
        info = running(name)
        say(f"{LABEL[name]}: " + (f"pid {info['pid']}, " if info else "no pid file process, ")
            + ("answering on " if healthy(health) else "not answering on ") + health)
    print_links()


def api_url() -> str | None:
    """``make ui``'s Prefect API URL if that server answers, else None."""
    url = f"{url_of('prefect')}/api"
    return url if healthy(url + "/health") else None


def api_env() -> None:
    """Print PREFECT_API_URL=... if `make ui`'s Prefect server answers, else nothing (then a flow
    starts Prefect's temporary server): ``env $(python -m pipeline services api-env) <command>``."""
    if url := api_url():
        print(f"PREFECT_API_URL={url}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    actions = {"start": start, "stop": stop, "status": status, "api-env": api_env}
    if len(argv) != 1 or argv[0] not in actions:
        raise SystemExit("usage: python -m pipeline services start|stop|status|api-env")
    actions[argv[0]]()
