"""Epoch checkpoints in the DVC remote, so that a retried point resumes on another machine.

The train stage writes, after every epoch, ``data/checkpoints/<variant>_seed<k>.pt`` (and the
snapshots so far in ``<variant>_seed<k>_snapshots/``) atomically (pipeline/train.py). While a
sweep point runs ``dvc repro``, :class:`CheckpointPusher` copies them to the remote under
``<remote>/checkpoints/<key>/`` (``key``: the point, and a hash of its overrides and commit):

* **Throttled**: a changed checkpoint is pushed at most once every ``every_s`` seconds (and the
  last one when the stage ends, if it is still there).
* **Atomic**: each file is uploaded to ``<name>.tmp-<random>`` beside its place and then renamed
  over it; the snapshots go before the checkpoint that refers to them. A reader sees a complete
  earlier or a complete later file, never part of one; :func:`remove_partials` deletes the
  ``.tmp-`` leftovers of a pusher that was killed.

A retry of the point on another worker calls :meth:`CheckpointStore.pull` before ``dvc repro``: the
files land in its ``data/checkpoints/`` (atomically again), and train resumes from them (it checks
the checkpoint's fingerprint: params, seed, data). When the point has finished, its checkpoint
folder is deleted from the remote (:meth:`CheckpointStore.clear`).

The remote is any DVC remote URL (a directory, ``ssh://``, ``s3://``) with the options of
``.dvc/config.local`` (user, keyfile, endpointurl, ...), opened with DVC's own filesystem classes.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

CHECKPOINTS = Path("data") / "checkpoints"
TMP_MARK = ".tmp-"


def checkpoint_key(point: str, overrides: dict[str, Any], rev: str) -> str:
    digest = hashlib.sha256(json.dumps({"overrides": overrides, "rev": rev}, sort_keys=True).encode()).hexdigest()
    return f"{point}-{digest[:12]}"


def open_remote(url: str, options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """(a DVC filesystem, the remote's root path in it) for ``url`` with ``options``."""
    from dvc.fs import get_cloud_fs

    if "://" not in url:
        url = str(Path(url).resolve())
    cls, config, root = get_cloud_fs({}, url=url, **(options or {}))
    return cls(**config), root


class CheckpointStore:
    """The checkpoint folder of one point in the remote."""

    def __init__(self, fs: Any, root: str, key: str) -> None:
        self.fs, self.folder = fs, posixpath.join(root, "checkpoints", key)

    def _remote(self, rel: str) -> str:
        return posixpath.join(self.folder, rel)

    def _put(self, local: Path, rel: str) -> None:
        dest = self._remote(rel)
        tmp = f"{dest}{TMP_MARK}{uuid.uuid4().hex[:8]}"
        self.fs.makedirs(posixpath.dirname(dest), exist_ok=True)
        self.fs.put_file(str(local), tmp)
        if self.fs.exists(dest):  # an SFTP rename does not replace: the old one goes just before
            self.fs.rm_file(dest)
        self.fs.mv(tmp, dest)

    def push(self, ws: Path) -> list[str]:
        """Copy the checkpoints of ``ws`` (taken first into a local staging folder, so that a file
        train replaces meanwhile is not mixed with its successor) to the remote; the names pushed."""
        local = ws / CHECKPOINTS
        checkpoints = sorted(local.glob("*.pt"))
        if not checkpoints:
            return []
        with tempfile.TemporaryDirectory(prefix="ckpt-stage-") as stage_dir:
            stage = Path(stage_dir)
            staged: list[str] = []
            for ckpt in checkpoints:  # the checkpoint first: its snapshots are already on disk
                try:
                    shutil.copy2(ckpt, stage / ckpt.name)
                except FileNotFoundError:  # the training just ended and removed it
                    continue
                snaps = ckpt.with_name(ckpt.stem + "_snapshots")
                for snap in sorted(snaps.glob("*")) if snaps.is_dir() else []:
                    rel = f"{snaps.name}/{snap.name}"
                    (stage / snaps.name).mkdir(exist_ok=True)
                    try:
                        shutil.copy2(snap, stage / rel)
                    except FileNotFoundError:
                        continue
                    staged.append(rel)
                staged.append(ckpt.name)  # after its snapshots
            for rel in staged:
                self._put(stage / rel, rel)
        return [r for r in staged if r.endswith(".pt")]

    def files(self) -> list[str]:
        """The complete files of this point's folder, relative to it."""
        if not self.fs.exists(self.folder):
            return []
        found = self.fs.find(self.folder)
        prefix = self.folder.rstrip("/") + "/"
        return sorted(f[len(prefix):] for f in found if f.startswith(prefix) and TMP_MARK not in posixpath.basename(f))

    def pull(self, ws: Path) -> list[str]:
        """Copy this point's checkpoints into ``ws``'s data/checkpoints unless it has its own
        (a retry on the same machine keeps the newer local one); the checkpoint names pulled."""
        local = ws / CHECKPOINTS
        if list(local.glob("*.pt")):
            return []
        names = self.files()
        for rel in sorted(names, key=lambda r: r.endswith(".pt")):  # the checkpoints last
            dest = local / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f"{dest.name}{TMP_MARK}{uuid.uuid4().hex[:8]}")
            self.fs.get_file(self._remote(rel), str(tmp))
            os.replace(tmp, dest)
        return [r for r in names if r.endswith(".pt")]

    def clear(self) -> None:
        if self.fs.exists(self.folder):
            self.fs.rm(self.folder, recursive=True)


def remove_partials(fs: Any, root: str) -> list[str]:
    """Delete the ``.tmp-`` uploads a killed pusher left under ``<root>/checkpoints``; what went."""
    folder = posixpath.join(root, "checkpoints")
    if not fs.exists(folder):
        return []
    partial = [f for f in fs.find(folder) if TMP_MARK in posixpath.basename(f)]
    for f in partial:
        fs.rm_file(f)
    return partial


class CheckpointPusher:
    """While alive, pushes the checkpoints of ``ws`` to ``store`` when they change, at most once
    every ``every_s`` seconds; on exit, once more if a checkpoint is still there and changed."""

    def __init__(self, store: CheckpointStore | None, ws: Path, every_s: float, log: Any = print,
                 poll_s: float = 1.0) -> None:
        self.store, self.ws, self.every_s, self.log, self.poll_s = store, ws, every_s, log, poll_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="checkpoint-pusher")
        self.pushed: dict[str, float] = {}
        self.last = 0.0
        self.count = 0

    def _state(self) -> dict[str, float]:
        out = {}
        for p in (self.ws / CHECKPOINTS).glob("*.pt"):
            try:
                out[p.name] = p.stat().st_mtime
            except FileNotFoundError:
                pass
        return out

    def push_if_changed(self, force: bool = False) -> bool:
        state = self._state()
        if not state or state == self.pushed or (not force and time.monotonic() - self.last < self.every_s):
            return False
        try:
            names = self.store.push(self.ws)
        except Exception as e:  # noqa: BLE001 - a missed push costs epochs on a retry, not the point
            self.log(f"checkpoint push failed (training goes on): {type(e).__name__}: {e}")
            return False
        self.pushed, self.last = state, time.monotonic()
        self.count += 1
        if names:
            self.log(f"pushed checkpoint(s) {', '.join(names)} to the remote")
        return True

    def _loop(self) -> None:
        while not self.stop.wait(self.poll_s):
            self.push_if_changed()

    def __enter__(self) -> CheckpointPusher:
        if self.store is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.store is None:
            return
        self.stop.set()
        self.thread.join(timeout=120)
        if exc[0] is None:
            self.push_if_changed(force=True)
