"""Bad inputs to prepare/train: one line naming the culprit, exit status 2, no partial output."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from eeoffload.data import CLASSES, stratified_sample
from tests.conftest import ROOT, run_stage
from tests.tiny_data import make_class_folder_zip


def write_params(tmp: Path, **data: object) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update({"n_train": 100, "n_val": 40, "n_test": 60}, **data)
    (tmp / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def assert_clean_failure(proc, *needles: str) -> None:  # noqa: ANN001
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_prepare_tiny_zip(tmp_path: Path) -> None:
    archive = make_class_folder_zip(tmp_path / "a.zip", 12, 10)
    write_params(tmp_path, archive=str(archive))
    proc = run_stage(tmp_path, "prepare")
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "data/prepared/train.npz") as f:
        assert f["images"].shape == (100, 32, 32, 3) and f["images"].dtype == np.uint8
        assert np.bincount(f["labels"]).tolist() == [10] * 10  # stratified
    with np.load(tmp_path / "data/prepared/val.npz") as v, np.load(tmp_path / "data/prepared/test.npz") as t:
        assert not set(v["sample_id"]) & set(t["sample_id"])


def test_missing_archive(tmp_path: Path) -> None:
    write_params(tmp_path, archive=str(tmp_path / "nope.zip"))
    assert_clean_failure(run_stage(tmp_path, "prepare"), "nope.zip", "not found")
    assert not (tmp_path / "data/prepared").exists()


def test_corrupt_image(tmp_path: Path) -> None:
    archive = make_class_folder_zip(tmp_path / "a.zip", 12, 10, corrupt="test/cat/0003.jpg")
    write_params(tmp_path, archive=str(archive), n_val=50, n_test=50)  # takes every test image
    assert_clean_failure(run_stage(tmp_path, "prepare"), "test/cat/0003.jpg", "corrupt")
    assert not (tmp_path / "data/prepared").exists()


def test_wrong_class_folders(tmp_path: Path) -> None:
    classes = (*CLASSES[:9], "lorry")
    archive = make_class_folder_zip(tmp_path / "a.zip", 12, 10, classes=classes)
    write_params(tmp_path, archive=str(archive))
    assert_clean_failure(run_stage(tmp_path, "prepare"), "lorry", "truck")
    assert not (tmp_path / "data/prepared").exists()


def test_not_an_archive(tmp_path: Path) -> None:
    bogus = tmp_path / "a.zip"
    bogus.write_bytes(b"hello")
    write_params(tmp_path, archive=str(bogus))
    assert_clean_failure(run_stage(tmp_path, "prepare"), "a.zip")


@pytest.mark.parametrize(("key", "value", "needle"), [("n_train", 121, "data.n_train"),
                                                       ("n_test", 61, "data.n_val + data.n_test")])
def test_split_larger_than_data(tmp_path: Path, key: str, value: int, needle: str) -> None:
    archive = make_class_folder_zip(tmp_path / "a.zip", 12, 10)
    write_params(tmp_path, archive=str(archive), **{key: value})
    assert_clean_failure(run_stage(tmp_path, "prepare"), needle)
    assert not (tmp_path / "data/prepared").exists()


def test_unknown_branch_name(tmp_path: Path) -> None:
    write_params(tmp_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["variants"]["one_branch"]["branches"] = ["relu9"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = run_stage(tmp_path, "train", "one_branch", "0")
    assert_clean_failure(proc, "relu9", "variants.one_branch.branches", "relu1")
    assert not (tmp_path / "data/models").exists()


def test_archive_env_var_overrides_param(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = make_class_folder_zip(tmp_path / "a.zip", 12, 10)
    write_params(tmp_path, archive=str(tmp_path / "nope.zip"))
    monkeypatch.setenv("CIFAR10_ARCHIVE", str(archive))
    import os
    import subprocess
    import sys

    from pipeline.tools.scratch import scratch_env

    env = scratch_env(ROOT)
    env["CIFAR10_ARCHIVE"] = os.environ["CIFAR10_ARCHIVE"]
    proc = subprocess.run([sys.executable, "-m", "pipeline", "prepare"], cwd=tmp_path, env=env,
                          text=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr


def test_stratified_sample_is_deterministic_and_disjoint() -> None:
    labels = np.repeat(np.arange(10), 100)
    a1, b1 = stratified_sample(labels, [300, 700], seed=3)
    a2, b2 = stratified_sample(labels, [300, 700], seed=3)
    assert np.array_equal(a1, a2) and np.array_equal(b1, b2)
    assert not set(a1) & set(b1)
    assert np.bincount(labels[a1]).tolist() == [30] * 10
    assert np.bincount(labels[b1]).tolist() == [70] * 10
    with pytest.raises(ValueError, match="exceed"):
        stratified_sample(labels, [600, 500], seed=0)


def test_zip_sample_ids_follow_sorted_listing(tmp_path: Path) -> None:
    archive = make_class_folder_zip(tmp_path / "a.zip", 3, 2)
    from eeoffload.data import read_class_folder_zip

    with zipfile.ZipFile(archive) as zf:
        sets = read_class_folder_zip(zf)
        assert sets["test"].labels.tolist() == [c for c in range(10) for _ in range(2)]
        assert sets["train"].decode(np.array([0, 29])).shape == (2, 32, 32, 3)
