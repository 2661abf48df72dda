"""Which CIFAR-10 archive a run reads, and a cheap check of it, shared by every entry point that
must refuse a bad archive before it deletes or replaces anything: stage validate (before DVC
deletes any output), stage prepare, and pipeline.tools.scratch (before it replaces build/smoke).

The check opens the archive and reads its listing, never an image: a class-folder zip must list
exactly ``train/<class>/<file>`` and ``test/<class>/<file>`` for the ten classes
(eeoffload.data.read_class_folder_zip, which decodes lazily), a tar.gz must be the official
``cifar-10-python.tar.gz`` (its MD5, under a second for 170 MB). A corrupt image inside a good
listing is still found by prepare, which then writes nothing.

Also: after a failed prepare under ``dvc repro`` (which deletes a stage's outputs before running
it, e.g. ``dvc repro --force --single-item prepare``, where validate does not run), the outputs
dvc.lock records are put back from the DVC cache (:func:`restore_locked_outputs`), so a bad
archive never costs the prepared data.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import yaml

from eeoffload import data as cifar
from pipeline.core.io import StageError

ENV_ARCHIVE = "CIFAR10_ARCHIVE"


def configured_archive(data_archive: str) -> tuple[Path | None, str]:
    """The archive a run reads and where that came from: ``$CIFAR10_ARCHIVE``, else ``data.archive``;
    (None, "download") when neither is set (prepare then downloads the official archive)."""
    env = os.environ.get(ENV_ARCHIVE)
    if env:
        return Path(env).expanduser(), f"${ENV_ARCHIVE}"
    if data_archive:
        return Path(data_archive).expanduser(), "data.archive"
    return None, "download"


def archive_kind(path: Path) -> str:
    """'class-folder zip' or 'official archive' if ``path`` is a readable CIFAR-10 archive (listing
    and type checked, no image decoded); StageError naming the file and what is wrong otherwise."""
    if not path.exists():
        raise StageError(f"CIFAR-10 archive not found: {path}")
    if not path.is_file():
        raise StageError(f"{path}: not a file; expected a CIFAR-10 class-folder zip or cifar-10-python.tar.gz")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                cifar.read_class_folder_zip(zf)  # the listing only; images are decoded on demand
            return "class-folder zip"
        if tarfile.is_tarfile(path):
            check_official_md5(path)
            return "official archive"
    except cifar.ArchiveError as e:
        raise StageError(f"{path}: {e}") from None
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
        raise StageError(f"{path}: unreadable archive ({type(e).__name__}: {e})") from None
    raise StageError(f"{path}: neither a zip nor a tar.gz archive; expected a CIFAR-10 class-folder zip "
                     "or cifar-10-python.tar.gz")


def check_configured_archive(data_archive: str) -> str:
    """Check the archive a run would read (:func:`configured_archive`); the line says where it was
    configured. Returns a short description; nothing to check when it would be downloaded."""
    path, source = configured_archive(data_archive)
    if path is None:
        return "no archive configured: prepare downloads the official one"
    try:
        return f"{path}: {archive_kind(path)}"
    except StageError as e:
        raise StageError(f"{e} (archive from {source})") from None


# --- putting back what `dvc repro` deleted -------------------------------------------------------

def _dvc_cache_dir(root: Path) -> Path:
    cache = root / ".dvc" / "cache"
    for name in ("config", "config.local"):
        cfg = configparser.ConfigParser(strict=False, interpolation=None)
        try:
            cfg.read(root / ".dvc" / name)
        except configparser.Error:
            continue
        if cfg.has_option("cache", "dir"):
            cache = (root / ".dvc" / cfg.get("cache", "dir").strip()).resolve()
    return cache


def _cache_file(cache: Path, md5: str) -> Path:
    return cache / "files" / "md5" / md5[:2] / md5[2:]


def restore_locked_outputs(stage: str, root: Path = Path(".")) -> list[str]:
    """Put back, from the DVC cache, the outputs of ``stage`` that dvc.lock records and that are
    missing from the workspace (deleted by `dvc repro` before the stage ran). Returns the paths
    restored; anything not fully in the cache is left alone. Best effort: never raises."""
    try:
        lock = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8"))
        outs = lock["stages"][stage]["outs"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return []
    cache, restored = _dvc_cache_dir(root), []
    for out in outs:
        try:
            target, md5 = root / out["path"], str(out["md5"])
        except (KeyError, TypeError):
            continue
        if target.exists():
            continue
        tmp = target.with_name(f".{target.name}.restoring")
        try:
            if md5.endswith(".dir"):
                entries = json.loads(_cache_file(cache, md5).read_text(encoding="utf-8"))
                for entry in entries:
                    dst = tmp / entry["relpath"]
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(_cache_file(cache, entry["md5"]), dst)
            else:
                tmp.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(_cache_file(cache, md5), tmp)
            os.replace(tmp, target)
            restored.append(out["path"])
        except (OSError, ValueError, KeyError, TypeError):
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
    return restored


def check_official_md5(path: Path) -> None:
    """A tar archive must be the official cifar-10-python.tar.gz (its MD5) before it is unpickled."""
    with open(path, "rb") as f:
        md5 = cifar.file_digest(f, "md5")
    if md5 != cifar.OFFICIAL_ARCHIVE_MD5:
        raise StageError(
            f"{path}: tar archive with MD5 {md5}, not the official cifar-10-python.tar.gz "
            f"({cifar.OFFICIAL_ARCHIVE_MD5}); refusing to unpickle it"
        )
