"""Atomic file output: a reader (a stage, DVC, a person) sees the previous file or folder or the
complete new one, never half of one, also when the writer is killed (temporaries beside the target,
flushed, then renamed; a killed writer's leftovers are swept by the next writer)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


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
