"""Stage prepare: CIFAR-10 archive -> seeded stratified 45k/3k/7k split as uint8 arrays.

Reads params section ``data``. The archive is ``$CIFAR10_ARCHIVE`` if set, else ``data.archive``,
else the official archive downloaded with torchvision into data/raw/ (needs internet).
Writes data/prepared/{train,val,test}.npz (images uint8 NHWC, labels int64, sample_id int64) and
data/prepared/meta.json, all at once (a folder renamed into place), byte-identical for the same
archive and params (fixed zip timestamps in the .npz files).
"""

from __future__ import annotations

import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np

from eeoffload import data as cifar
from pipeline.core import registry
from pipeline.core.archive import (ENV_ARCHIVE, check_configured_archive, check_official_md5, configured_archive,
                              restore_locked_outputs)
from pipeline.core.atomic import atomic_dir, atomic_path, write_npz
from pipeline.core.io import StageError, read_params
from pipeline.core.params import data_params

OUT_DIR = registry.PREPARED
RAW_DIR = registry.RAW


def resolve_archive(configured: str) -> Path:
    """The archive to read: $CIFAR10_ARCHIVE, else data.archive (checked: pipeline.core.archive), else a
    download (online only)."""
    chosen, _ = configured_archive(configured)
    if chosen is not None:
        check_configured_archive(configured)
        return chosen
    target = RAW_DIR / "cifar-10-python.tar.gz"
    if not target.is_file():
        from torchvision.datasets.utils import download_url

        print(f"downloading the official CIFAR-10 archive into {RAW_DIR}/", flush=True)
        try:
            # Downloaded under a temporary name and renamed when complete and MD5-checked: an
            # interrupted download never leaves a partial archive under the final name.
            with atomic_path(target) as tmp:
                download_url(cifar.OFFICIAL_ARCHIVE_URL, str(tmp.parent), tmp.name, cifar.OFFICIAL_ARCHIVE_MD5)
        except Exception as e:  # noqa: BLE001 - any network failure is one clear message
            raise StageError(
                f"no archive configured and the download failed ({type(e).__name__}: {e}); "
                f"set data.archive or ${ENV_ARCHIVE} to a class-folder zip or cifar-10-python.tar.gz"
            ) from None
    return target


def open_archive(path: Path) -> tuple[str, dict[str, cifar.ImageSet], object]:
    """Open a class-folder zip or the (checksum-verified) official archive."""
    if zipfile.is_zipfile(path):
        zf = zipfile.ZipFile(path)
        return "class-folder zip", cifar.read_class_folder_zip(zf), zf
    if tarfile.is_tarfile(path):
        check_official_md5(path)
        tf = tarfile.open(path, "r:gz")
        return "official archive", cifar.read_official_archive(tf), tf
    raise StageError(f"{path}: neither a zip nor a tar.gz archive; expected a CIFAR-10 class-folder zip or cifar-10-python.tar.gz")


def main() -> None:
    try:
        prepare()
    except StageError as e:
        # `dvc repro` deleted the outputs before running this stage (with --single-item, validate's
        # archive check did not run): put back what dvc.lock records, so a bad archive costs nothing
        restored = restore_locked_outputs("prepare")
        raise StageError(f"{e}" + (f" ({', '.join(restored)} restored from the DVC cache)" if restored else "")) from None


def prepare() -> None:
    params = data_params(read_params())
    path = resolve_archive(params.archive)
    start = time.perf_counter()
    try:
        source, sets, handle = open_archive(path)
        n_train_set, n_test_set = len(sets["train"].labels), len(sets["test"].labels)
        if params.n_train > n_train_set:
            raise StageError(f"data.n_train = {params.n_train} exceeds the {n_train_set} training images in {path}; allowed: 1..{n_train_set}")
        if params.n_val + params.n_test > n_test_set:
            raise StageError(
                f"data.n_val + data.n_test = {params.n_val + params.n_test} exceeds the {n_test_set} "
                f"test images in {path}; allowed: a sum of at most {n_test_set}"
            )
        (train_ids,) = cifar.stratified_sample(sets["train"].labels, [params.n_train], params.seed)
        val_ids, test_ids = cifar.stratified_sample(sets["test"].labels, [params.n_val, params.n_test], params.seed)
        splits = {"train": ("train", train_ids), "val": ("test", val_ids), "test": ("test", test_ids)}
        with atomic_dir(OUT_DIR) as tmp:
            counts = {}
            for split, (set_name, ids) in splits.items():
                images = sets[set_name].decode(ids)
                labels = sets[set_name].labels[ids]
                write_npz(tmp / registry.prepared_split(split).name, {"images": images, "labels": labels.astype(np.int64),
                                                 "sample_id": ids.astype(np.int64)})
                counts[split] = {"n": int(len(ids)), "per_class": np.bincount(labels, minlength=10).tolist()}
                print(f"{split}: {len(ids)} images from the CIFAR-10 {set_name} set", flush=True)
            with open(path, "rb") as f:
                sha256 = cifar.file_digest(f, "sha256")
            import json

            (tmp / registry.PREPARED_META.name).write_text(json.dumps({
                "source": source, "archive_name": path.name, "archive_sha256": sha256,
                "classes": list(cifar.CLASSES), "seed": params.seed, "counts": counts,
            }, indent=2) + "\n")
        handle.close()  # type: ignore[attr-defined]
    except cifar.ArchiveError as e:
        raise StageError(f"{path}: {e}") from None
    print(f"prepared {OUT_DIR}/ in {time.perf_counter() - start:.1f} s", flush=True)
