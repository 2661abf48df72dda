"""The workspace lock: one flow at a time in a DVC workspace.

An exclusive ``filelock.FileLock`` on ``.dvc/tmp/eeoffload-flow.lock`` (``flock`` on POSIX: the
kernel releases it when the holder dies, so a killed flow leaves no stale lock). Who holds it
({pid, what, started}) is written beside it in ``eeoffload-flow.lock.json`` while it is held, for
the "workspace busy" message. DVC's own repository lock stays underneath.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

LOCK_FILE = Path(".dvc") / "tmp" / "eeoffload-flow.lock"
HOLDER_FILE = LOCK_FILE.with_name(LOCK_FILE.name + ".json")
POLL_S = 1.0


class WorkspaceBusy(RuntimeError):
    """Another flow (or DVC command started by one) holds this workspace."""


def _read_holder(root: Path) -> dict[str, Any]:
    try:
        holder = json.loads((root / HOLDER_FILE).read_text(encoding="utf-8") or "{}")
    except (OSError, json.JSONDecodeError):
        return {}
    return holder if isinstance(holder, dict) else {}


def lock_holder(root: Path) -> dict[str, Any] | None:
    """Who holds the workspace lock ({pid, what, started}; {} if not yet written), or None if free."""
    root = Path(root)
    if not (root / LOCK_FILE).exists():
        return None
    probe = FileLock(root / LOCK_FILE)
    try:
        probe.acquire(timeout=0)
    except Timeout:
        return _read_holder(root)
    probe.release()
    return None


def busy_message(root: Path, holder: dict[str, Any]) -> str:
    """The one line a second flow in a busy workspace ends with."""
    return (f"workspace {root} is busy: {holder.get('what', 'another benchmark flow')} "
            f"(pid {holder.get('pid', '?')}, started {holder.get('started', '?')}) holds {root / LOCK_FILE}. "
            "DVC cannot run twice in one workspace; wait for that run to finish "
            "(or pass wait_s / --wait to queue behind it). Nothing was changed.")


@contextlib.contextmanager
def workspace_lock(root: Path, what: str, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the workspace's exclusive flow lock; WorkspaceBusy at once (or after ``wait_s``
    seconds of waiting) if another flow holds it."""
    root = Path(root)
    path = root / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=max(float(wait_s), 0.0), poll_interval=POLL_S)
    except Timeout:
        raise WorkspaceBusy(busy_message(root, _read_holder(root))) from None
    holder = root / HOLDER_FILE
    try:
        tmp = holder.with_name(f"{holder.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "what": what,
                                   "started": dt.datetime.now().isoformat(timespec="seconds")}), encoding="utf-8")
        tmp.replace(holder)
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()
