"""Atomic file output, params reading and stage bookkeeping shared by all stage scripts."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

PARAMS_FILE = Path("params.yaml")


class StageError(Exception):
    """A bad input (parameter, archive, file): reported as one line, exit status 2."""


def read_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """The whole params.yaml as a dict (stages then read only their own sections)."""
    try:
        with open(path, encoding="utf-8") as f:
            params = yaml.safe_load(f)
    except FileNotFoundError as e:
        raise StageError(f"{path}: params file not found") from e
    except yaml.YAMLError as e:
        raise StageError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(params, dict):
        raise StageError(f"{path}: expected a mapping at the top level")
    return params


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``path``; it replaces ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_write_parquet(path: str | os.PathLike[str], df: Any) -> None:
    """Write a pandas DataFrame to Parquet atomically (no index)."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_timing(stage: str, variant: str | None, seconds: float) -> None:
    """Record a stage's wall time in reports/timings/ (read by the report)."""
    name = stage if variant is None else f"{stage}@{variant}"
    atomic_write_json(
        Path("reports/timings") / f"{name}.json",
        {"stage": stage, "variant": variant, "seconds": round(seconds, 3)},
    )


def run_stage(stage: str, main: Any, *args: Any, record_timing: bool = True) -> None:
    """Run stage ``stage``'s main(*args), turning a StageError into one line on stderr and exit status 2.

    The wall time goes to reports/timings/ unless ``record_timing`` is False (the report stage,
    which reads that folder).
    """
    start = time.perf_counter()
    try:
        main(*args)
    except StageError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    if not record_timing:
        return
    write_timing(stage, args[0] if args else None, time.perf_counter() - start)
