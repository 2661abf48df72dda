"""DVC commands run with their output streamed to a logger (a Prefect run logger, or any
``logging.Logger``), and what their output says: which stages ran, why a command failed. No
Prefect here: the flows, the sweeps and the sweep points share it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

from pipeline.orchestration.project import dvc_env


class StageFailed(RuntimeError):
    """A DVC stage (or `dvc exp run`) exited non-zero. The message: ``headline`` (what failed, its
    exit status, a hint), then the command's last output lines (``tail``)."""

    def __init__(self, headline: str, tail: str = "") -> None:
        super().__init__(f"{headline}; its last output lines follow:\n{tail}" if tail else headline)
        self.headline, self.tail = headline, tail

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # pickled with the task's state
        return type(self), (self.headline, self.tail)




#: DVC's advice after every `dvc repro --single-item` (git add dvc.lock ..., autostage, dvc push):
#: the same lines for every stage, and the flow commits nothing; kept out of the flow's log.
DVC_HINTS = re.compile(r"^\s*(To track the changes with git, run:|git add |To enable auto staging, run:"
                       r"|dvc config core\.autostage true|Use `dvc push` to send your updates to remote storage\.)")


def stream_command(cmd: list[str], root: Path, logger: Any) -> tuple[int, list[str]]:
    """Run ``cmd`` in ``root``, every output line but DVC's git hints (DVC_HINTS) to ``logger``;
    (exit status, all lines)."""
    logger.info("$ %s", " ".join(cmd[2:] if cmd[:2] == [sys.executable, "-m"] else cmd))
    proc = subprocess.Popen(cmd, cwd=root, env=dvc_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1, errors="replace")
    lines: list[str] = []
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.rstrip()
        if line.strip():
            lines.append(line)
            if not DVC_HINTS.match(line):
                logger.info("%s", line)
    return proc.wait(), lines


def command_failed(what: str, rc: int, lines: list[str]) -> StageFailed:
    """The error of a failed DVC command: what, its exit status, a hint, its last output lines."""
    text = "\n".join(deque(lines, maxlen=25))
    headline = f"{what} failed (exit status {rc})"
    if "Unable to acquire lock" in text:
        headline += (": DVC's repository lock is held by another DVC command in this workspace "
                     "(a `dvc repro` or `dvc exp run` started outside this flow); wait for it and rerun")
    return StageFailed(headline, text)


def run_dvc(root: Path, args: list[str], what: str, logger: Any) -> list[str]:
    """``python -m dvc <args>`` in ``root`` with its output in the log; its lines, or StageFailed."""
    rc, lines = stream_command([sys.executable, "-m", "dvc", *args], Path(root), logger)
    if rc != 0:
        raise command_failed(what, rc, lines)
    return lines


def stage_status(stage: str, lines: list[str]) -> str:
    """'ran' if DVC ran the stage's command, else 'cached' (up to date, or restored from run cache)."""
    return "ran" if any(line.startswith(f"Running stage '{stage}'") for line in lines) else "cached"


def ran_stages(lines: list[str]) -> list[str]:
    return [m.group(1) for line in lines if (m := re.match(r"Running stage '([^']+)'", line))]
