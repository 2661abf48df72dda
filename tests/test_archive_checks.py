"""A missing or corrupt CIFAR-10 archive is refused before anything is deleted or replaced: by
pipeline.tools.scratch (`make smoke`) before it replaces the previous run, by stage validate before DVC
deletes an output, and by a failed prepare under `dvc repro --single-item`, which puts back what
DVC deleted. The logs of failed scratch runs live beside the scratch folder."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from pipeline.tools.scratch import dvc_repro, flow_env, make_scratch_project, scratch_env
from eeoffload.data import CLASSES
from tests.conftest import ROOT, TINY_PARAMS, run_stage
from tests.tiny_data import make_class_folder_zip

BAD_ARCHIVES = {
    "missing": lambda p: p,
    "not an archive": lambda p: p.write_bytes(b"hello") and p,
    "truncated zip": lambda p: p.write_bytes(make_class_folder_zip(p, 2, 2).read_bytes()[:3000]) and p,
    "wrong class folders": lambda p: make_class_folder_zip(p, 2, 2, classes=(*CLASSES[:9], "lorry")),
    "foreign tar.gz": lambda p: _foreign_tar(p),
}


def _foreign_tar(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        tf.add(ROOT / "params.yaml", arcname="params.yaml")
    return path


def bad_archive(tmp_path: Path, kind: str) -> Path:
    folder = tmp_path / "bad"
    folder.mkdir()
    path = folder / ("a.tar.gz" if "tar" in kind else "a.zip")
    BAD_ARCHIVES[kind](path)
    return path


@pytest.mark.parametrize("kind", list(BAD_ARCHIVES))
def test_smoke_with_a_bad_archive_keeps_the_previous_run(tmp_path: Path, kind: str) -> None:
    """`make smoke` (pipeline.tools.scratch --flow) with a bad archive: exit 2, one error line naming the
    archive, and the previous run folder untouched (not 'replaced by a fresh copy')."""
    archive = bad_archive(tmp_path, kind)
    dest = tmp_path / "build" / "smoke"
    (dest / "reports").mkdir(parents=True)
    (dest / "reports" / "metrics.json").write_text("{}\n")
    proc = subprocess.run([sys.executable, "-m", "pipeline", "scratch", "--overlay", "configs/smoke.yaml",
                           "--dest", str(dest), "--archive", str(archive), "--flow"],
                          cwd=ROOT, env=scratch_env(ROOT), text=True, capture_output=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "replaced by a fresh copy" not in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(archive) in errors[0], proc.stderr
    assert (dest / "reports" / "metrics.json").read_text() == "{}\n"
    assert sorted(p.name for p in dest.iterdir()) == ["reports"]


@pytest.mark.parametrize("kind", list(BAD_ARCHIVES))
def test_validate_refuses_a_bad_archive(tmp_path: Path, kind: str) -> None:
    archive = bad_archive(tmp_path, kind)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["archive"] = str(archive)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = run_stage(tmp_path, "validate")
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert str(archive) in line and "data.archive" in line, line
    assert not (tmp_path / "data").exists()


def test_validate_accepts_a_good_archive_without_decoding(tmp_path: Path) -> None:
    # an image that is not a JPEG: the listing is fine, so validate passes (prepare finds the image)
    archive = make_class_folder_zip(tmp_path / "a.zip", 2, 2, corrupt="train/cat/0001.jpg")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["archive"] = str(archive)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = run_stage(tmp_path, "validate")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "data" / "params_valid.json").is_file()


def test_bad_archive_under_dvc_repro_keeps_the_prepared_data(tmp_path: Path) -> None:
    """Real DVC: after a good prepare, the archive is corrupted in place (params unchanged).
    `dvc repro --force --single-item prepare` (validate does not run; DVC deletes prepare's outputs
    first) fails, and the prepared data are back, byte-identical and up to date for DVC; a plain
    `dvc repro --force prepare` stops at validate."""
    archive = make_class_folder_zip(tmp_path / "a.zip", 12, 10)
    overrides = {**TINY_PARAMS, "data": {"n_train": 100, "n_val": 40, "n_test": 60, "archive": str(archive)}}
    root = make_scratch_project(tmp_path / "p", overrides)
    first = dvc_repro(root, "prepare")
    assert first.returncode == 0, first.stdout + first.stderr
    prepared = {p.name: p.read_bytes() for p in sorted((root / "data/prepared").iterdir())}
    assert "train.npz" in prepared
    archive.write_bytes(b"garbage")

    single = dvc_repro(root, "--force", "--single-item", "prepare")
    assert single.returncode == 255  # DVC's status for a failed stage (the stage itself exits 2; README)
    out = single.stdout + single.stderr
    assert str(archive) in out and "restored from the DVC cache" in out, out
    assert {p.name: p.read_bytes() for p in sorted((root / "data/prepared").iterdir())} == prepared
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "prepare"], cwd=root, env=scratch_env(root),
                            text=True, capture_output=True)
    assert "changed outs" not in status.stdout and "deleted" not in status.stdout, status.stdout

    forced = dvc_repro(root, "--force", "prepare")
    assert forced.returncode == 255
    assert "Running stage 'prepare'" not in forced.stdout
    assert str(archive) in forced.stdout + forced.stderr
    assert {p.name: p.read_bytes() for p in sorted((root / "data/prepared").iterdir())} == prepared


def test_scratch_logs_live_beside_the_scratch_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.orchestration.project import LOG_DIR_ENV, debug_log_path

    dest = tmp_path / "build" / "smoke"
    log_dir = Path(flow_env(dest)[LOG_DIR_ENV])
    assert log_dir == tmp_path / "build" / "smoke.logs"
    monkeypatch.setenv(LOG_DIR_ENV, str(log_dir))
    assert debug_log_path(dest, "flows-run").parent == log_dir
    monkeypatch.delenv(LOG_DIR_ENV)
    assert debug_log_path(dest, "flows-run").parent == dest / ".prefect" / "logs"
