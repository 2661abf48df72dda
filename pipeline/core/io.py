"""What every stage shares besides writing (pipeline.core.atomic): the one error type and its exit status,
reading params.yaml, validating readers of Parquet/JSON/weights, the stage runner with its timing
file, and the commit the results come from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from pipeline.core import registry
from pipeline.core.atomic import atomic_write_json

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


#: Column kinds for :func:`read_parquet_checked`: what each accepts.
COLUMN_KINDS = {
    "int64": "int64",
    "float32": "float32",
    "float64": "float64",
    "float": "a float type",
    "number": "a numeric type",
    "str": "str",
}


def _kind_ok(dtype: Any, kind: str) -> bool:
    import numpy as np
    import pandas as pd

    if kind == "int64":
        return dtype == np.int64
    if kind in ("float32", "float64"):
        return dtype == np.dtype(kind)
    if kind == "float":
        return pd.api.types.is_float_dtype(dtype)
    if kind == "number":
        return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    if kind == "str":
        return pd.api.types.is_string_dtype(dtype) or dtype == object
    raise ValueError(f"unknown column kind {kind!r}")


def check_columns(frame: Any, columns: dict[str, str], path: str | os.PathLike[str]) -> Any:
    """Check that ``frame`` has ``columns`` ({name: kind}, kinds of COLUMN_KINDS); StageError naming
    the file otherwise. Extra columns are allowed."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise StageError(f"{path}: missing column(s) {', '.join(missing)}")
    for name, kind in columns.items():
        if not _kind_ok(frame[name].dtype, kind):
            raise StageError(f"{path}: column {name!r} must be {COLUMN_KINDS[kind]}, got {frame[name].dtype}")
    return frame


def read_parquet_checked(path: str | os.PathLike[str], columns: dict[str, str], writer: str,
                         allow_empty: bool = False) -> Any:
    """A Parquet file written by stage ``writer``, checked against ``columns`` ({name: kind})."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise StageError(f"{path}: not found (run the {writer} stage first)")
    try:
        frame = pd.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a corrupt file
        raise StageError(f"{path}: not a readable Parquet file: {e}") from None
    check_columns(frame, columns, path)
    if frame.empty and not allow_empty:
        raise StageError(f"{path}: no rows")
    return frame


def read_json_checked(path: str | os.PathLike[str], keys: list[str], writer: str) -> dict[str, Any]:
    """A JSON object written by stage ``writer`` with at least ``keys``; StageError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise StageError(f"{path}: not found (run the {writer} stage first)")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StageError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise StageError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise StageError(f"{path}: missing key(s) {', '.join(repr(k) for k in missing)}")
    return obj


def load_weights(path: str | os.PathLike[str], writer: str) -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU: tensors, dicts, lists and numbers only,
    never arbitrary pickled objects; StageError naming the file if it is missing or not such a file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise StageError(f"{path}: not found (run the {writer} stage first)")
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. a pickle-protocol notice: the error below says it all
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated zip, foreign pickle, ...
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise StageError(f"{path}: not a readable weights file ({type(e).__name__}: {first})") from None


def write_timing(stage: str, variant: str | None, seconds: float, seed: int | None = None) -> None:
    """Record a stage's wall time in reports/timings/ (read by the report), named as DVC names the
    stage instance: ``evaluate``, ``profile@one_branch``, ``train@one_branch-0`` (variant, seed); with
    its start and end (Unix seconds), so the report can give the wall span of stages run concurrently."""
    end = time.time()
    record: dict[str, Any] = {"stage": stage, "variant": variant, "seconds": round(seconds, 3),
                              "start": round(end - seconds, 3), "end": round(end, 3)}
    if seed is not None:
        record["seed"] = int(seed)
    atomic_write_json(registry.timing_path(registry.stage_instance(stage, variant, seed)), record)


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
    write_timing(stage, args[0] if args else None, time.perf_counter() - start,
                 int(args[1]) if len(args) > 1 else None)


#: A scratch copy of the project (pipeline.tools.scratch) names the project and commit it was copied from.
SOURCE_FILE = Path("SOURCE.json")


def git_commit(cwd: Path = Path(".")) -> str:
    """HEAD's commit (with ' (uncommitted changes)' when tracked files differ), or 'unknown'."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        commit = head.stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)
        if dirty.returncode == 0 and dirty.stdout.strip():
            commit += " (uncommitted changes)"
        return commit
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def project_commit(root: Path = Path(".")) -> str:
    """The commit the results come from: in a scratch copy, the project's commit it was copied from
    (SOURCE.json), else ``git_commit(root)``."""
    source = root / SOURCE_FILE
    if source.is_file():
        try:
            obj = json.loads(source.read_text(encoding="utf-8"))
            return f"{obj['commit']} (project {obj['project']}, run in a scratch copy)"
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return git_commit(root)
