"""Checkpoints in the remote (pipeline.orchestration.cluster_checkpoints), over a directory remote:
byte-exact both ways, atomic (no partial name is ever complete), throttled, and cleared."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pipeline.orchestration.cluster_checkpoints import (
    TMP_MARK, CheckpointPusher, CheckpointStore, checkpoint_key, open_remote, remove_partials)


def _workspace(path: Path, payload: bytes) -> Path:
    ckpt = path / "data" / "checkpoints"
    (ckpt / "one_branch_seed0_snapshots").mkdir(parents=True)
    (ckpt / "one_branch_seed0.pt").write_bytes(payload)
    (ckpt / "one_branch_seed0_snapshots" / "epoch_001.parquet").write_bytes(payload[::-1])
    return path


def test_push_pull_is_byte_exact_and_atomic(tmp_path: Path) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)
    ws = _workspace(tmp_path / "w1", payload)
    fs, root = open_remote(str(tmp_path / "remote"))
    key = checkpoint_key("p-u5-relu1", {"network.uplink_mbps": 5.0}, "abc")
    assert key != checkpoint_key("p-u5-relu1", {"network.uplink_mbps": 18.8}, "abc")
    store = CheckpointStore(fs, root, key)
    assert store.push(ws) == ["one_branch_seed0.pt"]
    remote_files = [p for p in (tmp_path / "remote").rglob("*") if p.is_file()]
    assert not [p for p in remote_files if TMP_MARK in p.name]
    assert store.files() == ["one_branch_seed0.pt", "one_branch_seed0_snapshots/epoch_001.parquet"]
    # a second push replaces the file (SFTP-style: no rename over an existing name needed)
    payload2 = os.urandom(1024)
    (ws / "data/checkpoints/one_branch_seed0.pt").write_bytes(payload2)
    store.push(ws)
    other = tmp_path / "w2"
    assert store.pull(other) == ["one_branch_seed0.pt"]
    assert (other / "data/checkpoints/one_branch_seed0.pt").read_bytes() == payload2
    assert (other / "data/checkpoints/one_branch_seed0_snapshots/epoch_001.parquet").read_bytes() == payload[::-1]
    assert not [p for p in other.rglob("*") if TMP_MARK in p.name]
    assert store.pull(other) == []  # it has its own now: kept
    # a killed upload's leftover is not a checkpoint, and is removed
    leftover = tmp_path / "remote" / "checkpoints" / key / f"one_branch_seed0.pt{TMP_MARK}dead"
    leftover.write_bytes(b"half")
    assert store.files() == ["one_branch_seed0.pt", "one_branch_seed0_snapshots/epoch_001.parquet"]
    assert [Path(p).name for p in remove_partials(fs, root)] == [leftover.name]
    store.clear()
    assert store.files() == [] and not (tmp_path / "remote" / "checkpoints" / key).exists()


def test_pusher_is_throttled(tmp_path: Path) -> None:
    ws = _workspace(tmp_path / "w", b"x" * 100)
    fs, root = open_remote(str(tmp_path / "remote"))
    store = CheckpointStore(fs, root, "k")
    pusher = CheckpointPusher(store, ws, every_s=3600, log=lambda *_: None)
    assert pusher.push_if_changed() is True  # the first one goes at once
    ckpt = ws / "data/checkpoints/one_branch_seed0.pt"
    ckpt.write_bytes(b"y" * 100)
    os.utime(ckpt, (time.time() + 5, time.time() + 5))
    assert pusher.push_if_changed() is False  # within the interval
    assert pusher.push_if_changed(force=True) is True
    assert pusher.push_if_changed(force=True) is False  # unchanged
    assert (tmp_path / "remote/checkpoints/k/one_branch_seed0.pt").read_bytes() == b"y" * 100
    with CheckpointPusher(None, ws, every_s=1) as idle:  # no remote: does nothing
        assert idle.count == 0
