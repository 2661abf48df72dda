"""Background processes of the orchestration (``make ui``'s servers, the sweep's workers and
tracking server): found again by their PID file and command line (a reused PID is not mistaken for
them), checked over HTTP, and stopped as a process group (SIGTERM, then SIGKILL after a timeout).
Standard library only: it also runs where Prefect and MLflow are not installed."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any


def cmdline(pid: int) -> list[str]:
    """The command line of a running process, [] if it is gone (Linux /proc)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def read_pidfile(path: Path) -> dict[str, Any] | None:
    """The recorded ``{"pid", "argv", ...}`` of a PID file if that PID still runs that command."""
    if not path.exists():
        return None
    info = json.loads(path.read_text())
    tail = info["argv"][1:]  # argv[0] may show as the interpreter running the script
    cmd = cmdline(info["pid"])
    return info if cmd and cmd[-len(tail):] == tail else None


def healthy(url: str, timeout: float = 2.0) -> bool:
    """Whether ``url`` answers at all (any HTTP status)."""
    try:
        urllib.request.urlopen(url, timeout=timeout).close()  # noqa: S310 (loopback services)
        return True
    except OSError:
        return False


def terminate_group(pid: int, timeout: float = 15.0, alive: Callable[[], bool] | None = None) -> str:
    """Stop the process group led by ``pid`` (a process started with ``start_new_session=True``):
    SIGTERM, wait up to ``timeout`` s while ``alive()`` (default: the PID still runs), then SIGKILL.
    Returns ``"stopped"``, ``"killed"`` (it outlived the timeout) or ``"gone"`` (not running)."""
    alive = alive or (lambda: bool(cmdline(pid)))
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return "gone"
    began = time.monotonic()
    while alive() and time.monotonic() - began < timeout:
        time.sleep(0.25)
    if not alive():
        return "stopped"
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return "killed"
