"""Benchmarks of the pipeline (``make bench``, ``python -m benchmarks [NAME ...]``).

One module per figure of issue 6; every figure is a ratio or a wall time measured side by side in
one run (the machine is shared and noisy, so nothing here asserts on absolute times):

    training_cpu     achieved GFLOP/s of a training step vs this machine's fp32 matmul rate
    training_bf16    bf16/fp32 training step ratio (batch 512 and 128), the oneDNN ISA and kernels that ran
    training_batched images/s of K=4 models trained as one vmapped model vs 4 sequential trainings
    metrics_engine   vectorised evaluate grid vs the plain-loop reference (checked equal), stage time
    incremental      `dvc repro` after changing network.uplink_mbps vs the full run, stages that ran
    startup          start-up (imports + params) of every stage command, heaviest imports
    gpu              full default pipeline on a CUDA device (skipped without one)
    time_to_result   quick recipe end to end on the CIFAR-10 archive (opt-in: long)
    sweep_workers    4-point tiny sweep over a Prefect work pool, 1 worker vs 2 (opt-in: real servers)
    sweep_cluster    the same sweep on this machine and on the cluster (namespaces, PostgreSQL, SSH remote)

Each prints lines ``[name] figure ... | goal ... | MEETS / MISSES / INFO``.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def figure(bench: str, text: str, goal: str | None = None, ok: bool | None = None) -> None:
    """Print one figure with its goal and whether it is met (None: informative, no goal)."""
    verdict = "INFO" if ok is None else ("MEETS" if ok else "MISSES")
    goal_text = f" | goal {goal}" if goal else ""
    print(f"[{bench}] {text}{goal_text} | {verdict}", flush=True)


def note(bench: str, text: str) -> None:
    print(f"[{bench}]   {text}", flush=True)


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Smallest wall time of ``repeats`` calls (the least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def project_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for subprocesses running this checkout's code (src/ and the repo root first)."""
    env = dict(os.environ, DO_NOT_TRACK="true", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               MLFLOW_DISABLE_TELEMETRY="true", DVC_NO_ANALYTICS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra or {})
    return env


def run_python(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env or project_env(), text=True, capture_output=True)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_stage(bench: str, stage_args: list[str], cwd: Path, goal: str, what: str | None = None
                ) -> tuple[float, float] | None:
    """Run ``python -m pipeline <stage_args>`` in ``cwd``: its (wall s, CPU s of user + system), or
    None after printing the FAILED figure (``what`` names the stage there; default its command)."""
    start, cpu_start = time.perf_counter(), _children_cpu_s()
    proc = run_python(["-m", "pipeline", *stage_args], cwd=cwd)
    seconds, cpu = time.perf_counter() - start, _children_cpu_s() - cpu_start
    if proc.returncode != 0:
        figure(bench, f"{what or stage_args[0]} FAILED: {proc.stderr.strip()[-300:]}", goal, False)
        return None
    return seconds, cpu


def archive_or_skip(bench: str, goal: str) -> Path | None:
    """$CIFAR10_ARCHIVE as a path, or None after printing why the benchmark is skipped."""
    value = os.environ.get("CIFAR10_ARCHIVE", "")
    if not value:
        figure(bench, "skipped: CIFAR10_ARCHIVE is not set (a CIFAR-10 class-folder zip or cifar-10-python.tar.gz)",
               goal)
        return None
    path = Path(value).resolve()
    if not path.is_file():
        figure(bench, f"skipped: CIFAR10_ARCHIVE={value} is not a file", goal)
        return None
    return path
