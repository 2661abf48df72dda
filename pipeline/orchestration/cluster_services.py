"""The services of the demo cluster (pipeline.orchestration.cluster), each on its host's address.

* **PostgreSQL** (Debian's server, ``/usr/lib/postgresql/<v>/bin``), data in ``<base>/pg``, run as
  the ``postgres`` user on the loopback of ``head`` only; databases ``prefect`` and ``mlflow``
  (role ``eeoffload``, trust on loopback: nothing outside ``head`` reaches it).
* **Prefect server** on ``head:4200``, ``PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://``.
* **MLflow tracking server** on ``head:5001``, ``--backend-store-uri postgresql+psycopg2://``
  (a bare ``postgresql://`` makes SQLAlchemy 2.1 look for psycopg 3),
  artifacts in ``<base>/mlartifacts`` served through it; ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``
  (its job runner would outlive ``cluster down``).
* **sshd** on ``store:22`` with its own config, host key and ``authorized_keys`` in ``<base>/ssh``:
  the DVC remote (``ssh://<store>/<base>/remote``, SFTP, dvc-ssh) and the git repository.
* **Workers**: ``prefect worker start --type process --limit 1`` on ``w<i>``, each with its own
  working directory ``<base>/hosts/w<i>/`` (point workspaces, ``HOME`` with its ``.ssh``, Prefect home).

Every process runs in its own session; PID files and logs in ``<base>/state``.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from pipeline.orchestration.cluster_hosts import Net, host_dir, reachable
from pipeline.orchestration.processes import cmdline, healthy, read_pidfile, terminate_group
from pipeline.orchestration.project import QUIET_ENV

PG_USER, PG_PORT, PREFECT_PORT, MLFLOW_PORT, SSH_PORT = "eeoffload", 5432, 4200, 5001, 22
POOL = "eeoffload-cluster"


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def sshd_bin() -> str | None:
    return shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)


def missing_packages() -> list[str]:
    """The Debian packages the cluster needs that are not installed."""
    return [pkg for pkg, ok in (("postgresql", pg_bin() is not None), ("openssh-server", sshd_bin() is not None),
                                ("iproute2", shutil.which("ip") is not None)) if not ok]


def _run(argv: list[str], what: str, **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, text=True, capture_output=True, check=False, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-1500:]}")
    return proc


class Services:
    def __init__(self, net: Net, base: Path) -> None:
        self.net, self.base = net, base.resolve()
        self.state = self.base / "state"
        self.procs: dict[str, subprocess.Popen] = {}

    # -- addresses ------------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"http://{self.net.addr('head')}:{PREFECT_PORT}/api"

    @property
    def tracking_uri(self) -> str:
        return f"http://{self.net.addr('head')}:{MLFLOW_PORT}"

    @property
    def remote_path(self) -> Path:
        return self.base / "remote"

    @property
    def remote_url(self) -> str:
        return f"ssh://{self.net.addr('store')}{self.remote_path}"

    def repo_url(self, path: Path) -> str:
        return f"ssh://root@{self.net.addr('store')}{Path(path).resolve()}"

    # -- processes ------------------------------------------------------------------------------
    def spawn(self, name: str, host: str, argv: list[str], env: dict[str, str], cwd: Path,
              title: str = "") -> subprocess.Popen:
        """``argv`` on ``host`` in its own session; ``title``: what its command line shows instead of
        ``argv`` once it runs (sshd rewrites its own)."""
        self.state.mkdir(parents=True, exist_ok=True)
        log = open(self.state / f"{name}.log", "ab")  # noqa: SIM115 (handed to the child)
        proc = subprocess.Popen(self.net.exec_argv(host, argv), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        (self.state / f"{name}.pid").write_text(json.dumps({"pid": proc.pid, "argv": argv, "host": host,
                                                            "title": title}))
        self.procs[name] = proc
        return proc

    def running(self, name: str) -> dict | None:
        """The recorded process of ``name`` if it still runs that command (or was just started here)."""
        path = self.state / f"{name}.pid"
        if name in self.procs and self.procs[name].poll() is None:
            return json.loads(path.read_text()) if path.exists() else None
        info = read_pidfile(path)
        if info is None and path.exists():
            raw = json.loads(path.read_text())
            if raw.get("title") and raw["title"] in " ".join(cmdline(raw["pid"])):
                return raw
        return info

    def stop(self, name: str, timeout: float = 20.0) -> str:
        info = self.running(name)
        (self.state / f"{name}.pid").unlink(missing_ok=True)
        if info is None:
            return "not running"
        import psutil

        children = kill_tree(info["pid"])  # a worker's flow-run processes and their children too
        result = terminate_group(info["pid"], timeout)
        _, alive = psutil.wait_procs([p for p in children if p.is_running()], timeout=timeout)
        for p in alive:
            p.kill()
        return result

    def wait_for(self, name: str, ok: object, timeout: float) -> float:
        began = time.monotonic()
        while not ok():  # type: ignore[operator]
            if time.monotonic() - began > timeout or self.running(name) is None:
                tail = (self.state / f"{name}.log").read_text(errors="replace")[-1500:] \
                    if (self.state / f"{name}.log").exists() else ""
                raise RuntimeError(f"{name} not ready after {time.monotonic() - began:.0f} s; "
                                   f"log {self.state / (name + '.log')}:\n{tail}")
            time.sleep(0.5)
        return time.monotonic() - began

    def env(self) -> dict[str, str]:
        env = dict(os.environ, **QUIET_ENV)
        for key in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "PREFECT_HOME"):
            env.pop(key, None)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env

    # -- PostgreSQL -----------------------------------------------------------------------------
    @property
    def pg_data(self) -> Path:
        return self.base / "pg" / "data"

    def pg_argv(self, tool: str, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", str(pg_bin() / tool), *args]

    def pg_status(self) -> bool:
        return (self.pg_data / "postmaster.pid").exists() and subprocess.run(
            self.pg_argv("pg_ctl", "-D", str(self.pg_data), "status"), capture_output=True).returncode == 0

    def pg_up(self) -> None:
        if not (self.pg_data / "PG_VERSION").exists():
            shutil.rmtree(self.pg_data, ignore_errors=True)
            self.pg_data.mkdir(parents=True)
            shutil.chown(self.pg_data.parent, "postgres")
            shutil.chown(self.pg_data, "postgres")
            _run(self.pg_argv("initdb", "-D", str(self.pg_data), "-U", PG_USER, "--auth=trust", "-E", "UTF8",
                              "--no-instructions"), "initdb")
        if not self.pg_status():
            opts = (f"-c listen_addresses=127.0.0.1 -c port={PG_PORT} -c unix_socket_directories='' "
                    "-c max_connections=200")
            _run(self.net.exec_argv("head", self.pg_argv("pg_ctl", "-D", str(self.pg_data), "-l",
                                                         str(self.base / "pg" / "postgres.log"), "-o", opts,
                                                         "-w", "-t", "120", "start")), "pg_ctl start")
        for db in ("prefect", "mlflow"):
            have = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{db}'").strip()
            if have != "1":
                self.psql(f"CREATE DATABASE {db}")

    def psql(self, sql: str, db: str = "postgres") -> str:
        argv = [str(pg_bin() / "psql"), "-h", "127.0.0.1", "-p", str(PG_PORT), "-U", PG_USER, "-d", db, "-tAc", sql]
        return _run(self.net.exec_argv("head", argv), f"psql {sql!r}").stdout

    def pg_down(self) -> str:
        if not self.pg_status():
            return "not running"
        _run(self.pg_argv("pg_ctl", "-D", str(self.pg_data), "-m", "fast", "-w", "stop"), "pg_ctl stop")
        return "stopped"

    # -- Prefect and MLflow on head -------------------------------------------------------------
    def prefect_up(self, timeout: float = 300.0) -> float:
        if self.running("prefect") and healthy(self.api_url + "/health"):
            return 0.0
        env = self.env()
        env["PREFECT_HOME"] = str(self.base / "prefect-home")
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = f"postgresql+asyncpg://{PG_USER}@127.0.0.1:{PG_PORT}/prefect"
        env["PREFECT_UI_API_URL"] = self.api_url
        env["PREFECT_SERVER_API_HOST"] = self.net.addr("head")
        argv = [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", self.net.addr("head"),
                "--port", str(PREFECT_PORT)]
        self.spawn("prefect", "head", argv, env, self.base)
        return self.wait_for("prefect", lambda: healthy(self.api_url + "/health"), timeout)

    def mlflow_up(self, timeout: float = 240.0) -> float:
        if self.running("mlflow") and healthy(self.tracking_uri + "/health"):
            return 0.0
        env = self.env()
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        head = self.net.addr("head")
        argv = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", head, "--port", str(MLFLOW_PORT),
                "--workers", "1", "--backend-store-uri", f"postgresql+psycopg2://{PG_USER}@127.0.0.1:{PG_PORT}/mlflow",
                "--artifacts-destination", str(self.base / "mlartifacts"),
                "--allowed-hosts", f"{head},{head}:{MLFLOW_PORT},localhost,127.0.0.1"]
        self.spawn("mlflow", "head", argv, env, self.base)
        return self.wait_for("mlflow", lambda: healthy(self.tracking_uri + "/health"), timeout)

    # -- sshd on store --------------------------------------------------------------------------
    @property
    def ssh_dir(self) -> Path:
        return self.base / "ssh"

    def ssh_keys(self) -> None:
        d = self.ssh_dir
        d.mkdir(parents=True, exist_ok=True)
        for key in ("host_ed25519", "client_ed25519"):
            if not (d / key).exists():
                _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"eeoffload-{key}", "-f", str(d / key)],
                     f"ssh-keygen {key}")
        (d / "authorized_keys").write_text((d / "client_ed25519.pub").read_text())
        os.chmod(d / "authorized_keys", 0o600)
        store = self.net.addr("store")
        host_pub = " ".join((d / "host_ed25519.pub").read_text().split()[:2])
        (d / "known_hosts").write_text(f"{store} {host_pub}\n")
        (d / "sshd_config").write_text("\n".join([
            f"ListenAddress {store}", f"Port {SSH_PORT}", f"HostKey {d / 'host_ed25519'}",
            f"AuthorizedKeysFile {d / 'authorized_keys'}", "PermitRootLogin prohibit-password",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
            f"PidFile {d / 'sshd.pid'}", "MaxStartups 200:30:400", "MaxSessions 200", "LogLevel ERROR",
            "Subsystem sftp internal-sftp", ""]))

    def sshd_up(self, timeout: float = 30.0) -> float:
        store = self.net.addr("store")
        if self.running("sshd") and reachable(store, SSH_PORT):
            return 0.0
        self.ssh_keys()
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
        self.spawn("sshd", "store", [sshd_bin(), "-D", "-e", "-f", str(self.ssh_dir / "sshd_config")],
                   self.env(), self.base, title=str(self.ssh_dir / "sshd_config"))
        return self.wait_for("sshd", lambda: reachable(store, SSH_PORT), timeout)

    # -- workers --------------------------------------------------------------------------------
    def worker_home(self, host: str) -> Path:
        """``host``'s own copies of the client key, known_hosts and ssh config (as on a machine)."""
        home = host_dir(self.base, host) / "home"
        ssh = home / ".ssh"
        ssh.mkdir(parents=True, exist_ok=True)
        os.chmod(ssh, 0o700)
        shutil.copy2(self.ssh_dir / "client_ed25519", ssh / "id_ed25519")
        os.chmod(ssh / "id_ed25519", 0o600)
        shutil.copy2(self.ssh_dir / "known_hosts", ssh / "known_hosts")
        (ssh / "config").write_text(
            f"Host {self.net.addr('store')}\n  User root\n  Port {SSH_PORT}\n  IdentityFile {ssh / 'id_ed25519'}\n"
            f"  IdentitiesOnly yes\n  UserKnownHostsFile {ssh / 'known_hosts'}\n  StrictHostKeyChecking yes\n"
            "  BatchMode yes\n")
        return home

    def worker_env(self, host: str, code_root: Path) -> dict[str, str]:
        from pipeline.orchestration.scaleout import worker_env

        hdir = host_dir(self.base, host)
        env = worker_env(self.api_url, hdir / "points", code_root)
        for key in ("MLFLOW_TRACKING_URI", "PREFECT_HOME"):
            env.pop(key, None)
        home = self.worker_home(host)
        env.update({"HOME": str(home), "PREFECT_HOME": str(hdir / "prefect-home"),
                    "GIT_SSH_COMMAND": f"ssh -F {home / '.ssh' / 'config'}",
                    "PREFECT_WORKER_QUERY_SECONDS": os.environ.get("PREFECT_WORKER_QUERY_SECONDS", "2"),
                    "EEOFFLOAD_SWEEP_REMOTE_OPTS": json.dumps({"user": "root", "port": SSH_PORT,
                                                               "keyfile": str(home / ".ssh" / "id_ed25519")})})
        return env

    def worker_up(self, host: str, code_root: Path, pool: str = POOL) -> subprocess.Popen | None:
        if self.running(host):
            return None
        hdir = host_dir(self.base, host)
        (hdir / "points").mkdir(parents=True, exist_ok=True)
        from pipeline.orchestration.scaleout import worker_argv

        return self.spawn(host, host, worker_argv(f"{self.net.name}-{host}", pool), self.worker_env(host, code_root),
                          hdir)

    def worker_names(self) -> list[str]:
        return sorted(p.stem for p in self.state.glob("w*.pid"))


def kill_tree(pid: int, sig: int = 15) -> list:
    """Signal ``pid``'s descendants (not ``pid`` itself); them (psutil processes)."""
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    for child in children:
        try:
            child.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    return children
