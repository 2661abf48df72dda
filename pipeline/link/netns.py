"""Two network namespaces joined by a veth pair, the uplink shaped by ``tc``, always cleaned up.

Layout of one run (``tag`` = ``eeo<pid of the stage>``; only these names are ever touched)::

    netns <tag>e (edge)   veth <tag>e  10.77.0.1/30  --- uplink shaped by tc tbf ---+
    netns <tag>c (cloud)  veth <tag>c  10.77.0.2/30  <------------------------------+

The kernel shapes the edge's egress (the uplink) with a token bucket (``tbf``: rate, a small
burst, a byte limit); ``netem`` delay/loss is used where the kernel has it, otherwise the caller adds
the delay in the application (:func:`netem_available`). Cleanup is guaranteed three ways: the
``finally`` of :func:`shaped_link`; a reaper process (``python -m pipeline.link.reaper``) that
removes the namespaces, and kills what runs in them, as soon as the stage dies, even by SIGKILL;
and :func:`sweep_stale`, which removes namespaces of stages that are gone, on the next start.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

from pipeline.core.atomic import pid_alive

EDGE_IP, CLOUD_IP, PREFIX_LEN = "10.77.0.1", "10.77.0.2", 30
NAME = re.compile(r"^eeo([0-9]+)([ecp])$")  # edge, cloud, probe
TC_TIMEOUT_S = 10


class LinkSetupError(RuntimeError):
    """A namespace, veth or qdisc could not be set up (the message names the command)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=TC_TIMEOUT_S)
    if check and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise LinkSetupError(f"'ip {' '.join(args)}' failed: {msg[0] if msg else proc.returncode}")
    return proc


@dataclass(frozen=True)
class Namespaces:
    tag: str
    netem: bool = False  # tbf sits under netem (delay/loss) instead of at the root

    @property
    def edge(self) -> str:
        return f"{self.tag}e"

    @property
    def cloud(self) -> str:
        return f"{self.tag}c"

    def exec_prefix(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]


def list_namespaces() -> list[str]:
    proc = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=TC_TIMEOUT_S)
    return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]


def delete_namespace(ns: str) -> None:
    """Kill every process in ``ns`` (ours by construction), then delete it; silent if absent."""
    if not NAME.match(ns):
        raise ValueError(f"refusing to touch namespace {ns!r}: not one of this project's")
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=TC_TIMEOUT_S)
    for pid in pids.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), 9)
    _ip("netns", "del", ns, check=False)


def sweep_stale() -> list[str]:
    """Delete this project's namespaces whose stage process is gone; returns their names."""
    removed = []
    for ns in list_namespaces():
        m = NAME.match(ns)
        if m and not pid_alive(int(m.group(1))):
            delete_namespace(ns)
            removed.append(ns)
    return removed


def namespaces_permitted() -> tuple[bool, str]:
    """(True, "") where ``ip netns add`` works here, else (False, the reason)."""
    if os.geteuid() != 0:
        return False, "not root (network namespaces need CAP_SYS_ADMIN)"
    probe = f"eeo{os.getpid()}p"
    try:
        proc = _ip("netns", "add", probe, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"'ip' is not usable: {e}"
    if proc.returncode != 0:
        return False, f"'ip netns add' refused: {proc.stderr.strip()}"
    delete_namespace(probe)
    return True, ""


def netem_available() -> bool:
    """Whether the kernel has the netem qdisc (tried on a throw-away namespace's loopback)."""
    probe = f"eeo{os.getpid()}p"
    _ip("netns", "add", probe)
    try:
        proc = subprocess.run(["ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                               "delay", "1ms"], capture_output=True, text=True, timeout=TC_TIMEOUT_S)
        return proc.returncode == 0
    finally:
        delete_namespace(probe)


def tbf_args(mbps: float) -> list[str]:
    """tbf at ``mbps`` (Mbit/s = 1e6 bit/s) with a burst of 1 ms of traffic (at least two full
    frames) and a 2 MB queue limit, so that nothing is dropped and the rate is exact to 1 ms."""
    burst = max(3200, int(mbps * 1e6 / 8 * 1e-3))
    return ["tbf", "rate", f"{int(round(mbps * 1e6))}bit", "burst", str(burst), "limit", str(2 * 1024 * 1024)]


def _tc(ns: Namespaces, side: str, *args: str) -> None:
    cmd = [*ns.exec_prefix(side), "tc", "qdisc", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TC_TIMEOUT_S)
    if proc.returncode != 0:
        raise LinkSetupError(f"'tc qdisc {' '.join(args)}' failed: {proc.stderr.strip()}")


def set_rate(ns: Namespaces, mbps: float, first: bool = False) -> None:
    """Set (``first``) or change the uplink rate: tbf on the edge side of the veth pair, as the
    root qdisc, or under netem (``parent 1:1``) when :func:`add_shaping` put netem first."""
    where = ["parent", "1:1", "handle", "10:"] if ns.netem else ["root", "handle", "10:"]
    _tc(ns, ns.edge, "add" if first else "change", "dev", ns.edge, *where, *tbf_args(mbps))


def add_shaping(ns: Namespaces, mbps: float, delay_ms: float = 0.0, loss_pct: float = 0.0) -> Namespaces:
    """The uplink shaping; with ``delay_ms``/``loss_pct``, netem first (tc-netem(8)'s "rate control"
    recipe: netem as root, tbf as its child), the same one-way delay on the cloud's egress.
    Returns the namespaces flagged with whether netem is in use."""
    if not (delay_ms or loss_pct):
        set_rate(ns, mbps, first=True)
        return ns
    loss = ["loss", f"{loss_pct}%"] if loss_pct else []
    _tc(ns, ns.edge, "add", "dev", ns.edge, "root", "handle", "1:", "netem", "delay", f"{delay_ms}ms", *loss)
    _tc(ns, ns.cloud, "add", "dev", ns.cloud, "root", "netem", "delay", f"{delay_ms}ms")
    shaped = Namespaces(ns.tag, netem=True)
    set_rate(shaped, mbps, first=True)
    return shaped


def create(tag: str) -> Namespaces:
    """The two namespaces, the veth pair between them, addresses, links up (no shaping yet)."""
    ns = Namespaces(tag)
    for name in (ns.edge, ns.cloud):
        delete_namespace(name)
    _ip("netns", "add", ns.edge)
    _ip("netns", "add", ns.cloud)
    _ip("link", "add", ns.edge, "netns", ns.edge, "type", "veth", "peer", "name", ns.cloud, "netns", ns.cloud)
    for name, addr in ((ns.edge, EDGE_IP), (ns.cloud, CLOUD_IP)):
        _ip("-n", name, "addr", "add", f"{addr}/{PREFIX_LEN}", "dev", name)
        _ip("-n", name, "link", "set", name, "up")
        _ip("-n", name, "link", "set", "lo", "up")
    return ns


def destroy(ns: Namespaces) -> None:
    for name in (ns.edge, ns.cloud):
        delete_namespace(name)


@contextlib.contextmanager
def shaped_link(tag: str, mbps: float) -> Iterator[Namespaces]:
    """The namespaces with the uplink shaped at ``mbps``; removed on every exit path."""
    ns = None
    try:
        ns = add_shaping(create(tag), mbps)
        yield ns
    finally:
        if ns is not None:
            destroy(ns)
        else:
            for side in "ec":
                delete_namespace(f"{tag}{side}")
