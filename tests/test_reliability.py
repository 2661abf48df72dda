"""Reliability: atomic outputs under SIGKILL, resumable and deterministic training, validated inputs.

Every stage runs as a subprocess (`python -m pipeline <stage>`) in a temporary project folder on a
tiny synthetic archive, on the CPU with one thread.
"""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.tools.scratch import scratch_env
from tests.conftest import ROOT, run_stage
from tests.tiny_data import make_class_folder_zip

VARIANT = "one_branch"
TINY: dict[str, Any] = {
    "data": {"n_train": 300, "n_val": 100, "n_test": 200},
    "train": {"device": "cpu", "trunk_epochs": 1, "joint_epochs": 2, "batch_size": 64, "num_threads": 1},
}


def write_params(root: Path, archive: Path, **sections: dict[str, Any]) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["variants"] = {VARIANT: params["variants"][VARIANT]}
    params["train"]["seeds"] = [0]
    for overrides in (copy.deepcopy(TINY), sections):
        for name, values in overrides.items():
            params[name].update(values)
    params["data"]["archive"] = str(archive)
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def popen_stage(cwd: Path, stage: str, *args: str) -> subprocess.Popen[str]:
    """`python -m pipeline <stage>` started in ``cwd`` (stage ``train_batched``: command ``train-batched``)."""
    env = scratch_env(ROOT)
    env.pop("CIFAR10_ARCHIVE", None)
    command = {"train_batched": "train-batched"}.get(stage, stage)
    return subprocess.Popen([sys.executable, "-u", "-m", "pipeline", command, *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def temporaries(folder: Path) -> list[str]:
    """Entries that atomic writers leave beside a target while they work (hidden .<name>.<pid>.*)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.is_dir() else []


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_class_folder_zip(tmp_path_factory.mktemp("archive") / "tiny.zip", 40, 30)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, archive: Path) -> Path:
    """prepare, train (3 epochs, uninterrupted) and logits of one variant, once for this module."""
    root = tmp_path_factory.mktemp("reference")
    write_params(root, archive)
    ok(run_stage(root, "prepare"))
    ok(run_stage(root, "train", VARIANT, "0"))
    ok(run_stage(root, "logits", VARIANT, "0"))
    return root


# --------------------------------------------------------------------------- atomic outputs


def test_atomic_path_killed_mid_write_leaves_no_target(tmp_path: Path) -> None:
    """A writer SIGKILLed inside atomic_path: no target, only a hidden temporary that the next
    writer of that target removes."""
    script = ("import os, signal\nfrom pipeline.core.atomic import atomic_path\n"
              "with atomic_path('out/result.parquet') as tmp:\n"
              "    tmp.write_bytes(b'PAR1' + b'x' * 1000)\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=scratch_env(ROOT), timeout=60)
    assert proc.returncode == -signal.SIGKILL
    out = tmp_path / "out"
    assert not (out / "result.parquet").exists()
    leftovers = temporaries(out)
    assert len(leftovers) == 1 and leftovers[0].startswith(".result.parquet.") and leftovers[0].endswith(".tmp")
    from pipeline.core.atomic import atomic_write_bytes

    atomic_write_bytes(out / "result.parquet", b"complete")
    assert (out / "result.parquet").read_bytes() == b"complete"
    assert temporaries(out) == []  # the dead writer's temporary is gone


def test_prepare_killed_while_writing_keeps_the_old_output(tmp_path: Path) -> None:
    """SIGKILL prepare while it fills its temporary folder: data/prepared stays the previous complete
    output (byte for byte); a re-run replaces it whole and leaves no temporary behind."""
    archive = make_class_folder_zip(tmp_path / "a.zip", 300, 120)  # 3000 + 1200 JPEGs
    root = tmp_path / "p"
    write_params(root, archive, data={"n_train": 2500, "n_val": 200, "n_test": 800, "seed": 0})
    ok(run_stage(root, "prepare"))
    prepared = root / "data/prepared"
    before = {p.name: sha256(p) for p in prepared.iterdir()}
    assert set(before) == {"train.npz", "val.npz", "test.npz", "meta.json"}

    write_params(root, archive, data={"n_train": 2500, "n_val": 200, "n_test": 800, "seed": 1})
    proc = popen_stage(root, "prepare")
    deadline = time.monotonic() + 60
    tmp_dirs: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        tmp_dirs = [p for p in (root / "data").iterdir() if p.name.startswith(".prepared.") and p.is_dir()]
        if tmp_dirs:
            break
        time.sleep(0.002)
    proc.kill()
    proc.communicate(timeout=60)
    assert tmp_dirs, "prepare finished before its temporary folder was seen; make the archive larger"
    assert proc.returncode == -signal.SIGKILL
    assert {p.name: sha256(p) for p in prepared.iterdir()} == before
    assert all(name.startswith(".prepared.") for name in temporaries(root / "data"))

    ok(run_stage(root, "prepare"))
    after = {p.name: sha256(p) for p in prepared.iterdir()}
    assert set(after) == set(before) and after["train.npz"] != before["train.npz"]
    assert temporaries(root / "data") == []
    with np.load(prepared / "train.npz", allow_pickle=False) as f:
        assert f["images"].shape == (2500, 32, 32, 3)


# --------------------------------------------------------------------------- resume, determinism


def test_train_killed_after_epoch_one_resumes_to_identical_weights(tmp_path: Path, archive: Path,
                                                                     reference: Path) -> None:
    import torch

    root = tmp_path / "p"
    write_params(root, archive)
    ok(run_stage(root, "prepare"))
    proc = popen_stage(root, "train", VARIANT, "0")
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if f"{VARIANT}/seed0 epoch 1/" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    assert not (root / f"data/models/{VARIANT}/seed0.pt").exists()
    assert (root / f"data/checkpoints/{VARIANT}_seed0.pt").is_file()

    resumed = ok(run_stage(root, "train", VARIANT, "0"))
    assert f"resuming {VARIANT}/seed0" in resumed.stdout and f"{VARIANT}/seed0 epoch 1/" not in resumed.stdout
    assert not (root / f"data/checkpoints/{VARIANT}_seed0.pt").exists()  # removed once the model is written

    load = lambda r: torch.load(r / f"data/models/{VARIANT}/seed0.pt", map_location="cpu", weights_only=True)  # noqa: E731
    a, b = load(reference)["state_dict"], load(root)["state_dict"]
    assert list(a) == list(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    history_a = pd.read_csv(reference / f"reports/training/{VARIANT}/seed0.csv")
    history_b = pd.read_csv(root / f"reports/training/{VARIANT}/seed0.csv")
    pd.testing.assert_frame_equal(history_a, history_b)

    # Determinism: two runs with the same params and seed (this one interrupted) give the same split
    # files and the same logits file, byte for byte.
    for name in ("train.npz", "val.npz", "test.npz", "meta.json"):
        assert sha256(reference / "data/prepared" / name) == sha256(root / "data/prepared" / name), name
    ok(run_stage(root, "logits", VARIANT, "0"))
    assert sha256(reference / f"data/logits/{VARIANT}/seed0.parquet") == sha256(root / f"data/logits/{VARIANT}/seed0.parquet")


def test_same_params_and_seed_give_identical_split_files(tmp_path: Path, archive: Path, reference: Path) -> None:
    """Byte-identical split files for the same params and seed, different ones for another seed.
    (Identical logits across two full runs are checked above, with one of them interrupted.)"""
    root = tmp_path / "p"
    write_params(root, archive)
    ok(run_stage(root, "prepare"))
    for name in ("train.npz", "val.npz", "test.npz", "meta.json"):
        assert sha256(reference / "data/prepared" / name) == sha256(root / "data/prepared" / name), name
    write_params(root, archive, data={"seed": 1})
    ok(run_stage(root, "prepare"))
    assert sha256(reference / "data/prepared/train.npz") != sha256(root / "data/prepared/train.npz")


# --------------------------------------------------------------------------- validated inputs


def copy_project(reference: Path, dest: Path) -> Path:
    shutil.copytree(reference, dest, ignore=shutil.ignore_patterns("reports"))
    return dest


def test_logits_file_missing_a_column(tmp_path: Path, reference: Path) -> None:
    root = copy_project(reference, tmp_path / "p")
    path = root / f"data/logits/{VARIANT}/seed0.parquet"
    pd.read_parquet(path).drop(columns=["label"]).to_parquet(path, index=False)
    assert_one_line_error(run_stage(root, "calibrate", VARIANT, "0"), f"data/logits/{VARIANT}/seed0.parquet", "'label'")
    assert not (root / "data/calibration").exists() and not (root / "reports").exists()


def test_model_file_that_is_not_a_state_dict(tmp_path: Path, reference: Path) -> None:
    import torch

    root = copy_project(reference, tmp_path / "p")
    path = root / f"data/models/{VARIANT}/seed0.pt"
    torch.save([torch.zeros(3), torch.ones(2)], path)
    assert_one_line_error(run_stage(root, "logits", VARIANT, "0"), f"data/models/{VARIANT}/seed0.pt", "state_dict")
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "branches": ["relu1"]}, path)
    assert_one_line_error(run_stage(root, "logits", VARIANT, "0"), f"data/models/{VARIANT}/seed0.pt", "not a balexnet32 state dict")
    assert sha256(root / f"data/logits/{VARIANT}/seed0.parquet") == sha256(reference / f"data/logits/{VARIANT}/seed0.parquet")


class _Exploit:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, ("touch pwned",))


def test_model_file_with_arbitrary_pickle_is_refused_without_running_it(tmp_path: Path, reference: Path) -> None:
    import torch

    root = copy_project(reference, tmp_path / "p")
    torch.save({"state_dict": _Exploit(), "branches": ["relu1"]}, root / f"data/models/{VARIANT}/seed0.pt")
    assert_one_line_error(run_stage(root, "logits", VARIANT, "0"), f"data/models/{VARIANT}/seed0.pt", "not a readable weights")
    assert not (root / "pwned").exists()


def test_prepared_split_with_missing_array_or_pickled_object(tmp_path: Path, reference: Path) -> None:
    root = copy_project(reference, tmp_path / "p")
    path = root / "data/prepared/val.npz"
    with np.load(path) as f:
        images, labels = f["images"], f["labels"]
    np.savez(path, images=images, labels=labels)  # sample_id missing
    assert_one_line_error(run_stage(root, "logits", VARIANT, "0"), "data/prepared/val.npz", "sample_id")
    np.savez(path, images=images, labels=labels, sample_id=np.array([{"x": 1}], dtype=object))
    assert_one_line_error(run_stage(root, "logits", VARIANT, "0"), "data/prepared/val.npz", "not a readable .npz")


def test_calibration_json_missing_key(tmp_path: Path, reference: Path) -> None:
    root = copy_project(reference, tmp_path / "p")
    ok(run_stage(root, "calibrate", VARIANT, "0"))
    (root / f"data/calibration/{VARIANT}/seed0.json").write_text('{"method": "temperature"}')
    (root / "data/profile").mkdir(parents=True)
    (root / f"data/profile/{VARIANT}.json").write_text(
        '{"device_ms_to_exit": {"1": 1.0}, "offload_edge_ms": 1.0, "upload_bytes": 4, "cloud_ms": 1.0}')
    assert_one_line_error(run_stage(root, "evaluate"), f"data/calibration/{VARIANT}/seed0.json", "exits")
    assert not (root / "reports/metrics").exists()
