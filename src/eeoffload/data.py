"""CIFAR-10 input: a class-folder zip or the official archive, and the paper's stratified split.

Paper Section IV-A: 45,000 training images from the CIFAR-10 training set; 3,000 validation and
7,000 test images from the CIFAR-10 test set. Every image keeps its ``sample_id``: its index in the
original training or test set (official archive), or in the archive's sorted listing of that set
(class-folder zip: class by class in label order, files sorted by name).
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
SETS = ("train", "test")
IMAGE_SHAPE = (32, 32, 3)
OFFICIAL_ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"  # cifar-10-python.tar.gz
OFFICIAL_ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


class ArchiveError(ValueError):
    """The archive is not a CIFAR-10 class-folder zip or official archive, or an image is bad."""


@dataclass(frozen=True)
class ImageSet:
    """One CIFAR-10 set (train or test): labels for all images, images decoded on demand."""

    labels: np.ndarray  # int64 (N,), index of the sample = its sample_id
    decode: Callable[[np.ndarray], np.ndarray]  # sample_ids (k,) -> uint8 (k, 32, 32, 3)


def file_digest(f: BinaryIO, algorithm: str) -> str:
    """Hex digest of a binary file object, read in chunks."""
    h = hashlib.new(algorithm)
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()


# --- class-folder zip --------------------------------------------------------------------------

def _zip_listing(zf: zipfile.ZipFile) -> dict[str, list[tuple[str, int]]]:
    """Per set, the (entry name, label) of every image, ordered by label then file name."""
    found: dict[str, dict[str, list[str]]] = {s: {} for s in SETS}
    for name in zf.namelist():
        if name.endswith("/"):
            continue
        parts = name.split("/")
        if len(parts) != 3 or parts[0] not in SETS:
            raise ArchiveError(
                f"unexpected entry {name!r}: expected <set>/<class>/<file>.jpg with set in {SETS}"
            )
        set_name, cls, _ = parts
        found[set_name].setdefault(cls, []).append(name)
    listing: dict[str, list[tuple[str, int]]] = {}
    for set_name in SETS:
        classes = set(found[set_name])
        if classes != set(CLASSES):
            missing = sorted(set(CLASSES) - classes)
            extra = sorted(classes - set(CLASSES))
            raise ArchiveError(
                f"wrong class folders in {set_name}/: missing {missing}, unexpected {extra}; "
                f"expected exactly {list(CLASSES)}"
            )
        listing[set_name] = [
            (name, label) for label, cls in enumerate(CLASSES) for name in sorted(found[set_name][cls])
        ]
    return listing


def _decode_jpeg(data: bytes, entry: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ArchiveError(f"corrupt image {entry!r}: {e}") from e
    if arr.shape != IMAGE_SHAPE:
        raise ArchiveError(f"image {entry!r} has shape {arr.shape}, expected {IMAGE_SHAPE}")
    return arr


def read_class_folder_zip(zf: zipfile.ZipFile) -> dict[str, ImageSet]:
    """The train and test sets of a class-folder zip (``train/<class>/*.jpg``, ``test/...``)."""
    sets: dict[str, ImageSet] = {}
    for set_name, entries in _zip_listing(zf).items():
        labels = np.array([label for _, label in entries], dtype=np.int64)

        def decode(ids: np.ndarray, entries: list[tuple[str, int]] = entries) -> np.ndarray:
            out = np.empty((len(ids), *IMAGE_SHAPE), dtype=np.uint8)
            for i, sid in enumerate(ids):
                name = entries[int(sid)][0]
                out[i] = _decode_jpeg(zf.read(name), name)
            return out

        sets[set_name] = ImageSet(labels=labels, decode=decode)
    return sets


# --- official archive --------------------------------------------------------------------------

def read_official_archive(tf: tarfile.TarFile) -> dict[str, ImageSet]:
    """The train and test sets of ``cifar-10-python.tar.gz``.

    The archive holds pickled batches: the caller must have verified the archive's MD5
    (:data:`OFFICIAL_ARCHIVE_MD5`) before calling this, since unpickling runs code.
    """
    batches = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    members = {m.name.rsplit("/", 1)[-1]: m for m in tf.getmembers() if m.isfile()}
    sets: dict[str, ImageSet] = {}
    for set_name, names in batches.items():
        images, labels = [], []
        for name in names:
            if name not in members:
                raise ArchiveError(f"official archive lacks {name!r}")
            f = tf.extractfile(members[name])
            assert f is not None
            batch = pickle.load(f, encoding="bytes")  # noqa: S301 - checksum verified by caller
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
        all_images = np.concatenate(images).transpose(0, 2, 3, 1).copy()  # (N, 32, 32, 3)
        sets[set_name] = ImageSet(
            labels=np.concatenate(labels), decode=lambda ids, a=all_images: a[np.asarray(ids)]
        )
    return sets


# --- split -------------------------------------------------------------------------------------

def stratified_sample(labels: np.ndarray, sizes: list[int], seed: int) -> list[np.ndarray]:
    """Disjoint, class-stratified random subsets of ``labels`` of the given sizes (Section IV-A).

    Each subset takes from every class in proportion to the class frequencies (largest-remainder
    rounding), drawn with a seeded generator. Returns sorted index arrays (ascending sample_id).

    Raises:
        ValueError: the sizes add up to more than there are samples.
    """
    n = len(labels)
    if any(s < 0 for s in sizes) or sum(sizes) > n:
        raise ValueError(f"split sizes {sizes} (total {sum(sizes)}) exceed the {n} samples available")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    pools = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    taken = {c: 0 for c in classes}
    subsets = []
    for size in sizes:
        remaining = np.array([len(pools[c]) - taken[c] for c in classes], dtype=np.float64)
        quota = size * remaining / remaining.sum() if remaining.sum() else remaining
        counts = np.floor(quota).astype(int)
        order = np.argsort(-(quota - counts), kind="stable")
        counts[order[: size - counts.sum()]] += 1
        parts = []
        for c, k in zip(classes, counts, strict=True):
            parts.append(pools[c][taken[c] : taken[c] + k])
            taken[c] += k
        subsets.append(np.sort(np.concatenate(parts)).astype(np.int64))
    return subsets
