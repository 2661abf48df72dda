"""A scale-out cluster on one machine, its hosts really apart (docs/scale-out.md, "A cluster on one machine").

``python -m pipeline cluster up [--workers N] | down | status | sweep <workpool sweep args> |
cancel --prefix P | env``  (``make cluster-up``, ``make cluster-down``, ``make cluster-status``,
``make cluster-sweep``, ``make sweep-cancel``)

* ``up``: the namespaces and the bridge (pipeline.orchestration.cluster_hosts), PostgreSQL, sshd,
  the Prefect server and the MLflow tracking server (pipeline.orchestration.cluster_services),
  then N workers (default 2); one status line per service. What runs already is left as it is.
* ``down``: the workers, the servers, PostgreSQL (its data stay in ``build/cluster/pg``), the
  namespaces; one line each.
* ``sweep``: ``python -m pipeline workpool sweep`` against the cluster: the Prefect API, the MLflow
  server, the SSH remote, the cluster's work pool, and the project cloned over SSH from the store.
  Ctrl-C cancels its flow runs and stops the workers (pipeline.orchestration.sweep_cancel).
* ``cancel``: the same from another terminal: cancel sweep P's flow runs, stop the workers, and
  remove what a killed point left half-written in the remote.

The cluster's name, subnet and folder: ``$EEOFFLOAD_CLUSTER_NAME`` (eeo), ``$EEOFFLOAD_CLUSTER_SUBNET``
(10.77.0), ``$EEOFFLOAD_CLUSTER_DIR`` (build/cluster). Root only (network namespaces; PostgreSQL
runs as the ``postgres`` user).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from pipeline.orchestration.cluster_hosts import Net, cluster_namespaces, missing_requirements, net_down, net_up, \
    pids_in, reachable
from pipeline.orchestration.cluster_services import MLFLOW_PORT, POOL, PREFECT_PORT, SSH_PORT, Services, \
    missing_packages
from pipeline.orchestration.processes import healthy
from pipeline.orchestration.project import PROJECT_ROOT


def services_from_env() -> Services:
    net = Net(os.environ.get("EEOFFLOAD_CLUSTER_NAME", "eeo"), os.environ.get("EEOFFLOAD_CLUSTER_SUBNET", "10.77.0"))
    base = Path(os.environ.get("EEOFFLOAD_CLUSTER_DIR") or PROJECT_ROOT / "build" / "cluster")
    return Services(net, base)


def say(line: str) -> None:
    print(line, flush=True)


def check_can_run() -> None:
    why = missing_requirements() + [f"Debian package {p} is not installed (apt-get install {p})"
                                    for p in missing_packages()]
    if why:
        raise SystemExit("cluster: cannot start here: " + "; ".join(why))


def up(s: Services, workers: int = 2, code_root: Path = PROJECT_ROOT) -> None:
    """Bring the whole set up (idempotent), one status line per service."""
    check_can_run()
    if workers < 0 or workers > 50:
        raise SystemExit(f"cluster up: --workers {workers}: allowed: 0 to 50")
    s.base.mkdir(parents=True, exist_ok=True)
    hosts = ["head", "store", *[f"w{i}" for i in range(1, workers + 1)]]
    began = time.monotonic()
    addrs = net_up(s.net, hosts)
    say(f"network: bridge {s.net.bridge} {s.net.subnet}.1/24; "
        + ", ".join(f"{h} {a} (netns {s.net.ns(h)})" for h, a in addrs.items()))
    t = time.monotonic()
    s.pg_up()
    say(f"PostgreSQL: ready in {time.monotonic() - t:.0f} s on {s.net.ns('head')} 127.0.0.1:5432 "
        f"(databases prefect, mlflow; data {s.pg_data})")
    say(f"sshd: ready in {s.sshd_up():.0f} s on {addrs['store']}:{SSH_PORT} (DVC remote {s.remote_url})")
    s.remote_path.mkdir(parents=True, exist_ok=True)
    say(f"Prefect server: ready in {s.prefect_up():.0f} s on {s.api_url} (PostgreSQL backend)")
    say(f"MLflow tracking server: ready in {s.mlflow_up():.0f} s on {s.tracking_uri} (PostgreSQL backend)")
    for host in hosts[2:]:
        proc = s.worker_up(host, code_root)
        state = f"started (pid {proc.pid})" if proc else "already running"
        say(f"worker {host}: {state} on {addrs[host]}, pool {POOL}, working directory "
            f"{s.base / 'hosts' / host}")
    say(f"cluster up in {time.monotonic() - began:.0f} s; sweep with: python -m pipeline cluster sweep --uplink ...")


def stop_workers(s: Services) -> None:
    """Stop the workers, and whatever else still runs on their hosts (a flow run's DVC or training
    that its killed parent left behind), as a machine's work stops when it shuts down."""
    import signal

    for name in s.worker_names():
        say(f"worker {name}: {s.stop(name)}")
    for ns in cluster_namespaces(s.net):
        if ns.startswith(s.net.ns("w")) and (left := pids_in(ns)):
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            say(f"{ns}: killed {len(left)} leftover process(es)")


def down(s: Services) -> None:
    stop_workers(s)
    for name, label in (("mlflow", "MLflow tracking server"), ("prefect", "Prefect server"), ("sshd", "sshd")):
        say(f"{label}: {s.stop(name)}")
    if s.base.exists() and (s.pg_data / "PG_VERSION").exists():
        say(f"PostgreSQL: {s.pg_down()} (data kept in {s.pg_data})")
    gone = net_down(s.net)
    say(f"network: {'removed ' + ', '.join(gone) if gone else 'nothing to remove'}")


def status(s: Services) -> int:
    """One line per service; 0 if all of them answer."""
    head, store = s.net.addr("head"), s.net.addr("store")
    nss = cluster_namespaces(s.net)
    up_ = bool(nss)  # without the bridge, the addresses may be routed elsewhere (and answered there)
    lines = [("network", up_, ", ".join(nss) or "no namespaces"),
             ("PostgreSQL", s.base.exists() and s.pg_status(), f"{s.net.ns('head')} 127.0.0.1:5432"),
             ("sshd", up_ and s.running("sshd") is not None and reachable(store, SSH_PORT), f"{store}:{SSH_PORT}"),
             ("Prefect server", up_ and healthy(f"http://{head}:{PREFECT_PORT}/api/health"), s.api_url),
             ("MLflow tracking server", up_ and healthy(f"http://{head}:{MLFLOW_PORT}/health"), s.tracking_uri)]
    lines += [(f"worker {w}", s.running(w) is not None, s.net.addr(w)) for w in s.worker_names()]
    for label, ok, where in lines:
        say(f"{label}: {'up' if ok else 'DOWN'} ({where})")
    return 0 if all(ok for _, ok, _ in lines) else 1


def sweep_args(s: Services, argv: list[str], root: Path) -> list[str]:
    """``workpool sweep`` arguments for the cluster (the user's own --remote etc. win)."""
    given = {a.split("=")[0] for a in argv if a.startswith("--")}
    extra = []
    for flag, value in (("--remote", s.remote_url), ("--tracking-uri", s.tracking_uri), ("--pool", POOL),
                        ("--repo", s.repo_url(root)), ("--root", str(root))):
        if flag not in given:
            extra += [flag, value]
    return ["sweep", *argv, *extra]


def cancel(s: Services, prefix: str) -> None:
    from pipeline.orchestration.sweep_cancel import cancel_runs

    with on_cluster(s):
        names = cancel_runs(prefix, wait_s=30, say=say)
    say(f"sweep {prefix}: {len(names)} flow run(s) cancelled")
    after_cancel(s)


def after_cancel(s: Services) -> None:
    """Stop the workers, then remove what their killed points left half-written in the remote
    (checked on the store's disk: this machine is the store here)."""
    from pipeline.orchestration.sweep_cancel import check_remote

    stop_workers(s)
    if s.remote_path.exists():
        gone = check_remote(str(s.remote_path))
        say(f"remote: {len(gone)} partial file(s) removed" + (f": {', '.join(gone)}" if gone else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline cluster", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="bring the cluster up").add_argument("--workers", type=int, default=2)
    sub.add_parser("down", help="stop everything and remove the namespaces")
    sub.add_parser("status", help="one line per service")
    sub.add_parser("env", help="the environment of a sweep on the cluster (PREFECT_API_URL=...)")
    sub.add_parser("sweep", help="a work-pool sweep on the cluster (the arguments of `workpool sweep`)",
                   add_help=False)
    sub.add_parser("cancel", help="cancel a sweep's flow runs and stop the workers").add_argument(
        "--prefix", default="sweep")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sweep"]:
        return run_sweep(services_from_env(), argv[1:])
    args = ap.parse_args(argv)
    s = services_from_env()
    if args.command == "up":
        up(s, args.workers)
    elif args.command == "down":
        down(s)
    elif args.command == "status":
        return status(s)
    elif args.command == "env":
        say(f"PREFECT_API_URL={s.api_url}\nTRACKING_URI={s.tracking_uri}\nDVC_REMOTE={s.remote_url}")
    elif args.command == "cancel":
        cancel(s, args.prefix)
    return 0


def on_cluster(s: Services):  # noqa: ANN201 - a context manager
    """Prefect's settings pointed at the cluster's server (also where Prefect is imported already)."""
    os.environ["PREFECT_API_URL"] = s.api_url
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings(updates={PREFECT_API_URL: s.api_url})


def run_sweep(s: Services, argv: list[str]) -> int:
    if not healthy(s.api_url + "/health"):
        raise SystemExit(f"cluster sweep: no Prefect server on {s.api_url}; run `make cluster-up` first")
    root = Path(os.environ.get("EEOFFLOAD_ROOT") or Path.cwd()).resolve()
    with on_cluster(s):
        from pipeline.orchestration.workpool import main as workpool_main

        workpool_main(sweep_args(s, argv, root), prog="python -m pipeline cluster sweep",
                      on_cancel=lambda: after_cancel(s))
    return 0
