"""A tiny synthetic CIFAR-10-like class-folder zip, made by the tests themselves."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from eeoffload.data import CLASSES


def class_images(label: int, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """n 32x32 RGB images whose colour depends on the class (learnable), with noise."""
    base = np.array([(label * 25) % 256, (label * 80) % 256, 255 - label * 25], dtype=np.float64)
    imgs = []
    for _ in range(n):
        img = base + rng.normal(0, 40, size=(32, 32, 3))
        imgs.append(np.clip(img, 0, 255).astype(np.uint8))
    return imgs


def jpeg_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_class_folder_zip(path: Path, per_class_train: int = 20, per_class_test: int = 20, seed: int = 0,
                          classes: tuple[str, ...] = CLASSES, corrupt: str | None = None) -> Path:
    """Write train/<class>/NNNN.jpg and test/<class>/NNNN.jpg; ``corrupt`` names an entry to garble."""
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for set_name, n in (("train", per_class_train), ("test", per_class_test)):
            for label, cls in enumerate(classes):
                for i, img in enumerate(class_images(label % 10, n, rng)):
                    name = f"{set_name}/{cls}/{i:04d}.jpg"
                    zf.writestr(name, b"not a jpeg" if name == corrupt else jpeg_bytes(img))
    return path
