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


#: Temporary names: ``.<target name>.<pid>.<random>.tmp`` beside the target (hidden, never the
#: name a stage or DVC reads). A killed writer's leftovers are removed by the next writer of the
#: same target once that pid is gone.
TMP_SUFFIX = ".tmp"


def _tmp_prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}."


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (signal 0; a process of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(target: Path) -> None:
    """Remove temporaries of ``target`` left by writers that died (SIGKILL, power loss)."""
    if not target.parent.is_dir():
        return
    head = f".{target.name}."
    for entry in target.parent.iterdir():
        name = entry.name
        if not (name.startswith(head) and name.endswith((TMP_SUFFIX, ".old"))):
            continue
        pid = name[len(head):].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or pid_alive(int(pid)):
            continue  # not ours to judge, or its writer is still running
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _fsync_path(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk; best effort where the OS refuses."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The file is flushed to disk before the rename, so ``path`` is either the old complete file,
    absent, or the new complete file, even if the process is killed at any point.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(target)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(target), suffix=TMP_SUFFIX, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)
        _fsync_path(tmp_path)
        os.replace(tmp_path, target)
        _fsync_path(target.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``path``; it replaces ``path`` only if the block succeeds.

    The old folder is first renamed aside (never deleted in place), so ``path`` is at every moment
    either the complete old folder, absent, or the complete new one.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(target)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(target), suffix=TMP_SUFFIX, dir=target.parent))
    old: Path | None = None
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        for f in tmp.rglob("*"):
            if f.is_file():
                _fsync_path(f)
        _fsync_path(tmp)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=_tmp_prefix(target), suffix=".old", dir=target.parent))
            os.rmdir(old)
            os.replace(target, old)
        try:
            os.replace(tmp, target)
        except OSError:
            if old is not None:
                os.replace(old, target)  # put the old folder back
                old = None
            raise
        _fsync_path(target.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists():
            shutil.rmtree(old, ignore_errors=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_write_parquet(path: str | os.PathLike[str], table: Any) -> None:
    """Write a pandas DataFrame (without its index) or a pyarrow Table to Parquet atomically."""
    with atomic_path(path) as tmp:
        if hasattr(table, "to_parquet"):
            table.to_parquet(tmp, index=False)
        else:
            import pyarrow.parquet as pq

            pq.write_table(table, tmp)


def write_npz(path: str | os.PathLike[str], arrays: dict[str, Any]) -> None:
    """``np.savez`` with fixed zip timestamps (np.savez stamps the current time), so the same arrays
    always give the same bytes; loadable with ``np.load(path, allow_pickle=False)``. Not atomic by
    itself: write into an :func:`atomic_path` or :func:`atomic_dir`."""
    import zipfile

    import numpy as np

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)


# --------------------------------------------------------------------------- validated inputs

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
