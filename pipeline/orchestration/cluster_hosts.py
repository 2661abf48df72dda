"""Hosts that are really apart, on one machine: a network namespace per host on one bridge.

The demo cluster of pipeline.orchestration.cluster (``make cluster-up``) has these hosts, each a
Linux network namespace ``<name>-<host>`` with one veth into the bridge ``<name>br`` (root
namespace, address ``<subnet>.1``; the sweep and the tests run there):

* ``head``  ``<subnet>.2``: PostgreSQL (on its loopback only), the Prefect server, the MLflow
  tracking server;
* ``store`` ``<subnet>.3``: sshd, the DVC remote (SSH/SFTP) and the git repository the points clone;
* ``w1``, ``w2``, ... ``<subnet>.11``, ``.12``, ...: one Prefect worker each, with a working
  directory and a home of its own (pipeline.orchestration.cluster_services.worker_home).

A process in a namespace sees only that namespace's interfaces: the servers are reachable only
over their addresses on the bridge, as on separate machines. Needs root (``ip netns``, iproute2).
Standard library only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SERVICE_HOSTS = {"head": 2, "store": 3}
WORKER_BASE = 10  # worker i has address <subnet>.(10 + i)


@dataclass(frozen=True)
class Net:
    """The names and addresses of one demo cluster: ``name`` prefixes the namespaces and links
    (at most 8 characters: interface names are limited to 15), ``subnet`` is the first three
    octets of its /24."""

    name: str = "eeo"
    subnet: str = "10.77.0"

    @property
    def bridge(self) -> str:
        return f"{self.name}br"

    def ns(self, host: str) -> str:
        return f"{self.name}-{host}"

    def addr(self, host: str) -> str:
        if host in SERVICE_HOSTS:
            return f"{self.subnet}.{SERVICE_HOSTS[host]}"
        if host.startswith("w") and host[1:].isdigit():
            return f"{self.subnet}.{WORKER_BASE + int(host[1:])}"
        raise ValueError(f"cluster host {host!r}: allowed: head, store, w1, w2, ...")

    def exec_argv(self, host: str, argv: list[str]) -> list[str]:
        """``argv`` run on ``host`` (in its namespace)."""
        return ["ip", "netns", "exec", self.ns(host), *argv]


def missing_requirements() -> list[str]:
    """Why namespaces cannot be made here ([] when they can): not root, no ``ip``."""
    why = []
    if os.geteuid() != 0:
        why.append("not root (network namespaces need root)")
    if not shutil.which("ip"):
        why.append("no `ip` command (Debian package iproute2)")
    return why


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], text=True, capture_output=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc


def namespaces() -> set[str]:
    out = _ip("netns", "list", check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def link_exists(name: str) -> bool:
    return _ip("link", "show", name, check=False).returncode == 0


def bridge_up(net: Net) -> None:
    if not link_exists(net.bridge):
        _ip("link", "add", net.bridge, "type", "bridge")
        _ip("addr", "add", f"{net.subnet}.1/24", "dev", net.bridge)
    _ip("link", "set", net.bridge, "up")


def host_up(net: Net, host: str) -> str:
    """The namespace of ``host`` with its address on the bridge (made if missing); its address."""
    ns, addr = net.ns(host), net.addr(host)
    if ns not in namespaces():
        _ip("netns", "add", ns)
    _ip("-n", ns, "link", "set", "lo", "up")
    outer, inner = f"{net.name}-{host}"[:15], "eth0"
    if not link_exists(outer):
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner, "netns", ns)
        _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", inner)
    _ip("link", "set", outer, "master", net.bridge)
    _ip("link", "set", outer, "up")
    _ip("-n", ns, "link", "set", inner, "up")
    return addr


def net_up(net: Net, hosts: list[str]) -> dict[str, str]:
    """The bridge and every host of ``hosts``: {host: address}."""
    bridge_up(net)
    return {host: host_up(net, host) for host in hosts}


def cluster_namespaces(net: Net) -> list[str]:
    return sorted(ns for ns in namespaces() if ns.startswith(net.name + "-"))


def net_down(net: Net) -> list[str]:
    """Delete the namespaces ``<name>-*`` (their veths go with them) and the bridge; what went."""
    gone = []
    for ns in cluster_namespaces(net):
        _ip("netns", "del", ns, check=False)
        gone.append(ns)
    if link_exists(net.bridge):
        _ip("link", "del", net.bridge, check=False)
        gone.append(net.bridge)
    return gone


def pids_in(ns: str) -> list[int]:
    """The processes that live in namespace ``ns``."""
    out = subprocess.run(["ip", "netns", "pids", ns], text=True, capture_output=True, check=False).stdout
    return [int(x) for x in out.split() if x.isdigit()]


def reachable(addr: str, port: int, timeout: float = 1.0) -> bool:
    import socket

    try:
        with socket.create_connection((addr, port), timeout=timeout):
            return True
    except OSError:
        return False


def host_dir(base: Path, host: str) -> Path:
    """The working directory of ``host`` (nothing in it is read by another host)."""
    return base / "hosts" / host
