"""Prefect flow runs are named after the project and what ran, and the flow's log leaves out DVC's
"git add dvc.lock" hints that `dvc repro --single-item` prints after every stage (issue 26)."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from pipeline.orchestration import dvc_commands, flows


class Logger:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, fmt: str, *args: object) -> None:
        self.lines.append(fmt % args)


def test_dvc_hints_stay_out_of_the_flow_log(tmp_path: Path) -> None:
    output = ("Running stage 'evaluate':\n> python -m pipeline evaluate\nUpdating lock file 'dvc.lock'\n\n"
              "To track the changes with git, run:\n\n\tgit add dvc.lock reports/.gitignore\n\n"
              "To enable auto staging, run:\n\n\tdvc config core.autostage true\n"
              "Use `dvc push` to send your updates to remote storage.\n")
    logger = Logger()
    rc, lines = dvc_commands.stream_command([sys.executable, "-c", f"print({output!r}, end='')"], tmp_path, logger)
    assert rc == 0 and len(lines) == 8  # every line kept for an error's tail
    logged = "\n".join(logger.lines[1:])  # [0] is the command
    assert "Running stage 'evaluate'" in logged and "Updating lock file" in logged
    assert "git add" not in logged and "autostage" not in logged and "dvc push" not in logged


def test_flow_runs_are_named_after_the_project_and_the_experiment(tmp_path: Path) -> None:
    smoke = tmp_path / "build" / "smoke"
    smoke.mkdir(parents=True)
    (smoke / "dvc.yaml").write_text("stages: {}\n")
    now = dt.datetime(2026, 12, 4, 19, 0, 12)
    assert flows.run_label(str(smoke), now=now) == "smoke · dvc repro · 20261204-190012"
    assert flows.run_label(str(smoke), "up5", experiment=True) == "smoke · dvc exp up5"
    assert flows.benchmark.flow_run_name is flows._benchmark_run_name
    assert flows.benchmark_experiment.flow_run_name is flows._experiment_run_name
