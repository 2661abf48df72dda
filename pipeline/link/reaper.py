"""Cleanup that survives a SIGKILL of the stage: ``python -m pipeline.link.reaper <pid> [--netns NS ...]
[--pids PID ...] [--dir DIR]``.

Started by the stage in its own session (so a kill of the stage's process group does not reach it),
it polls every 0.1 s until process ``pid`` is gone, then kills the listed processes (and those in
``<dir>/pids``), deletes the listed namespaces (and everything still running in them) and removes
the work folder. The stage stops it on a normal exit, after cleaning up itself.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import time

from pipeline.core.atomic import pid_alive
from pipeline.link import netns

POLL_S = 0.1


PIDS_FILE = "pids"  # in the work folder: one pid per line, appended by the stage as it starts processes


def recorded_pids(folder: str | None) -> list[int]:
    if not folder:
        return []
    try:
        with open(os.path.join(folder, PIDS_FILE), encoding="utf-8") as f:
            return [int(line) for line in f if line.strip().isdigit()]
    except OSError:
        return []


def cleanup(namespaces: list[str], pids: list[int], folder: str | None) -> None:
    for pid in [*pids, *recorded_pids(folder)]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    for ns in namespaces:
        with contextlib.suppress(Exception):
            netns.delete_namespace(ns)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("pid", type=int)
    parser.add_argument("--netns", nargs="*", default=[])
    parser.add_argument("--pids", nargs="*", type=int, default=[])
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # the stage cleaned up itself
    while pid_alive(args.pid):
        time.sleep(POLL_S)
    cleanup(args.netns, args.pids, args.dir)


if __name__ == "__main__":
    main()
