"""Local sweep workers and the MLflow tracking server, started and stopped by PID files.

``python -m pipeline scaleout workers-start N | workers-stop | tracking-start |
tracking-stop | status``  (``make workers WORKERS=2``, ``make workers-stop``, ``make tracking-server``,
``make tracking-server-stop``, ``make scaleout-status``)

* **Workers**: ``prefect worker start --pool eeoffload-sweep --type process --limit 1 --name
  <host>-<i>``, each in its own session (process group), with this checkout's code on PYTHONPATH
  (the deployment's entrypoint is a module path), ``$EEOFFLOAD_SWEEP_WORKDIR`` = ``build/sweep-workspaces``
  (or ``SWEEP_WORKDIR``) and the ``PREFECT_API_URL`` of the environment (else ``make ui``'s server).
  ``workers-start N`` starts the workers 1..N that do not run yet (idempotent).
* **Tracking server**: ``mlflow server --host $MLFLOW_HOST (127.0.0.1) --port $MLFLOW_SERVER_PORT
  (5001) --backend-store-uri $MLFLOW_BACKEND_STORE_URI (sqlite:///<repo>/mlflow.db: the store
  ``make ui`` shows) --artifacts-destination $MLFLOW_ARTIFACTS_DESTINATION (<repo>/mlartifacts)``:
  artifacts go through the server (``mlflow-artifacts:``), so workers on other machines need only
  its URL. For several machines: a PostgreSQL backend and an S3 artifact store (docs/scale-out.md).

State (PID files, logs) in ``.prefect/scaleout/``. Stopping signals exactly the recorded process
groups, and only while the PID still runs the recorded command.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from pipeline.orchestration.pool import POOL
from pipeline.orchestration.processes import healthy, read_pidfile, terminate_group
from pipeline.orchestration.project import PROJECT_ROOT, QUIET_ENV, mlflow_artifact_root, mlflow_store_uri



def state_dir() -> Path:
    return Path(os.environ.get("EEOFFLOAD_SCALEOUT_STATE") or PROJECT_ROOT / ".prefect" / "scaleout")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def running(name: str) -> dict | None:
    """The recorded {pid, argv} of worker or server ``name`` if that PID still runs that command."""
    return read_pidfile(state_dir() / f"{name}.pid")


def spawn(name: str, argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    """Start ``argv`` in its own session, output to ``<state>/<name>.log``, PID file beside it."""
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    log = open(folder / f"{name}.log", "ab")  # noqa: SIM115 (handed to the child)
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    (folder / f"{name}.pid").write_text(json.dumps({"pid": proc.pid, "argv": argv}))
    return proc


def stop(name: str, timeout: float = 20.0) -> str:
    info = running(name)
    (state_dir() / f"{name}.pid").unlink(missing_ok=True)
    if info is None:
        return f"{name}: not running"
    pid = info["pid"]
    began = time.monotonic()
    result = terminate_group(pid, timeout)
    if result == "gone":
        return f"{name}: gone"
    if result == "killed":
        return f"{name} (pid {pid}): killed (no exit {timeout:.0f} s after SIGTERM)"
    return f"{name} (pid {pid}): stopped in {time.monotonic() - began:.0f} s"


# ---------------------------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------------------------

def worker_env(api_url: str | None, workdir: Path, code_root: Path = PROJECT_ROOT) -> dict[str, str]:
    env = dict(os.environ, **QUIET_ENV)
    env["PYTHONPATH"] = os.pathsep.join([str(code_root), str(code_root / "src"),
                                         *filter(None, [os.environ.get("PYTHONPATH")])])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["EEOFFLOAD_SWEEP_WORKDIR"] = str(workdir)
    env["PYTHONUNBUFFERED"] = "1"
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def worker_argv(name: str, pool: str = POOL) -> list[str]:
    return [str(Path(sys.executable).parent / "prefect"), "worker", "start", "--pool", pool, "--type", "process",
            "--limit", "1", "--name", name]


def start_worker(name: str, api_url: str | None, workdir: Path, pool: str = POOL,
                 code_root: Path = PROJECT_ROOT) -> subprocess.Popen:
    """One process worker of ``pool`` (one point at a time), in its own session."""
    workdir.mkdir(parents=True, exist_ok=True)
    return spawn(name, worker_argv(name, pool), worker_env(api_url, workdir, code_root), code_root)


def default_api_url() -> str | None:
    url = os.environ.get("PREFECT_API_URL")
    if url:
        return url
    port = int(os.environ.get("PREFECT_PORT", 4200))
    local = f"http://127.0.0.1:{port}/api"
    return local if healthy(local + "/health") else None


def workers_start(n: int, pool: str = POOL) -> None:
    api = default_api_url()
    if not api:
        raise SystemExit("no Prefect server: start one (make ui) or set PREFECT_API_URL")
    workdir = Path(os.environ.get("SWEEP_WORKDIR") or PROJECT_ROOT / "build" / "sweep-workspaces").resolve()
    host = socket.gethostname().split(".")[0]
    for i in range(1, n + 1):
        name = f"{host}-worker-{i}"
        if info := running(name):
            print(f"{name}: already running (pid {info['pid']})", flush=True)
            continue
        proc = start_worker(name, api, workdir, pool)
        print(f"{name}: started (pid {proc.pid}, pool {pool}, API {api}, workspaces {workdir}, "
              f"log {state_dir() / (name + '.log')})", flush=True)


def worker_names() -> list[str]:
    return sorted(p.stem for p in state_dir().glob("*-worker-*.pid"))


def workers_stop() -> None:
    names = worker_names()
    if not names:
        print("no local workers recorded", flush=True)
    for name in names:
        print(stop(name), flush=True)


# ---------------------------------------------------------------------------------------------
# MLflow tracking server
# ---------------------------------------------------------------------------------------------

def tracking_argv(host: str, port: int, backend: str, artifacts: str) -> list[str]:
    return [str(Path(sys.executable).parent / "mlflow"), "server", "--host", host, "--port", str(port),
            "--workers", "1", "--backend-store-uri", backend, "--artifacts-destination", artifacts]


def start_tracking_server(host: str, port: int, backend: str, artifacts: str, name: str = "tracking",
                          timeout: float = 180.0) -> tuple[subprocess.Popen, str]:
    """``mlflow server`` (artifacts served through it); (process, URL) once it answers."""
    env = dict(os.environ, **QUIET_ENV)
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = spawn(name, tracking_argv(host, port, backend, artifacts), env, PROJECT_ROOT)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    began = time.monotonic()
    while not healthy(url + "/health"):
        if proc.poll() is not None or time.monotonic() - began > timeout:
            raise SystemExit(f"MLflow tracking server not answering on {url}; see {state_dir() / (name + '.log')}")
        time.sleep(0.5)
    return proc, url


def tracking_start() -> None:
    host = os.environ.get("MLFLOW_HOST", "127.0.0.1")
    port = int(os.environ.get("MLFLOW_SERVER_PORT", 5001))
    backend = os.environ.get("MLFLOW_BACKEND_STORE_URI") or mlflow_store_uri(PROJECT_ROOT)
    artifacts = os.environ.get("MLFLOW_ARTIFACTS_DESTINATION") or str(mlflow_artifact_root(PROJECT_ROOT))
    if info := running("tracking"):
        print(f"MLflow tracking server: already running (pid {info['pid']}) on {host}:{port}", flush=True)
        return
    began = time.monotonic()
    proc, url = start_tracking_server(host, port, backend, artifacts)
    print(f"MLflow tracking server ready in {time.monotonic() - began:.0f} s: {url} (pid {proc.pid}, backend "
          f"{backend.split('@')[-1]}, artifacts {artifacts}); workers log there with --tracking-uri {url}", flush=True)


def status() -> None:
    for name in ["tracking", *worker_names()]:
        info = running(name)
        print(f"{name}: " + (f"pid {info['pid']}" if info else "not running"), flush=True)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["workers-start"] and len(argv) == 2:
        workers_start(int(argv[1]))
    elif argv == ["workers-stop"]:
        workers_stop()
    elif argv == ["tracking-start"]:
        tracking_start()
    elif argv == ["tracking-stop"]:
        print(stop("tracking"), flush=True)
    elif argv == ["status"]:
        status()
    else:
        raise SystemExit("usage: python -m pipeline scaleout "
                         "workers-start N | workers-stop | tracking-start | tracking-stop | status")
