"""A severity estimate from the input: cheap image statistics and a nearest-centroid classifier.

The remedy "estimate the distortion, then use the temperature fitted for it" follows the paper's
authors' later work on distorted images (a calibration per distortion type and level; github
pachecobeto95/DR_EENN), with the cheapest estimator we could think of in place of a network: five
statistics a device computes in one pass over a 32x32 image, and the nearest class centroid in the
standardised statistics (Tibshirani, Hastie, Narasimhan and Chu, "Diagnosis of multiple cancer
types by shrunken centroids of gene expression", PNAS 2002, without the shrinkage).

Statistics (:data:`STATISTICS`, grey = ITU-R BT.601 luma of the image in [0, 1]):

``value``        mean of max(r, g, b), the V of HSV (brightness raises it)
``saturation``   mean of (max - min) / max over non-black pixels (brightness lowers it)
``contrast``     standard deviation of grey over the image (contrast lowers it)
``laplacian``    mean |4-neighbour Laplacian| of grey (blur lowers it, noise raises it)
``blockiness``   mean |grey step| across the 8x8 JPEG block borders / mean |grey step| elsewhere
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

STATISTICS: tuple[str, ...] = ("value", "saturation", "contrast", "laplacian", "blockiness")
_LUMA = np.array([0.299, 0.587, 0.114])


def image_statistics(images: Any) -> np.ndarray:
    """(N, 5) float64: :data:`STATISTICS` of uint8 images (N, H, W, 3), H and W above 8."""
    x = np.asarray(images)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3 or min(x.shape[1:3]) <= 8:
        raise ValueError(f"images must be uint8 (N, H, W, 3) with H, W > 8, got {x.dtype} {x.shape}")
    rgb = x / 255.0
    v = rgb.max(axis=-1)
    spread = v - rgb.min(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sat = np.where(v > 0, spread / np.where(v > 0, v, 1.0), 0.0)
    g = rgb @ _LUMA
    lap = 4 * g[:, 1:-1, 1:-1] - g[:, :-2, 1:-1] - g[:, 2:, 1:-1] - g[:, 1:-1, :-2] - g[:, 1:-1, 2:]
    steps = np.abs(np.diff(g, axis=2))  # step between columns j and j + 1
    border = (np.arange(steps.shape[2]) % 8) == 7  # columns 7|8, 15|16, ...
    blockiness = steps[:, :, border].mean(axis=(1, 2)) / np.maximum(steps[:, :, ~border].mean(axis=(1, 2)), 1e-12)
    return np.stack([v.mean(axis=(1, 2)), sat.mean(axis=(1, 2)), g.std(axis=(1, 2)),
                     np.abs(lap).mean(axis=(1, 2)), blockiness], axis=1)


@dataclass(frozen=True)
class NearestCentroid:
    """Classes, the standardisation (mean, scale) of the statistics, and each class's centroid."""

    classes: np.ndarray  # (L,) int64
    mean: np.ndarray  # (F,)
    scale: np.ndarray  # (F,)
    centroids: np.ndarray  # (L, F), standardised

    def predict(self, features: Any) -> np.ndarray:
        """(N,) the class of the nearest centroid (Euclidean, standardised statistics)."""
        z = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        d = ((z[:, None, :] - self.centroids[None, :, :]) ** 2).sum(axis=2)
        return self.classes[d.argmin(axis=1)]


def fit_nearest_centroid(features: Any, labels: Any) -> NearestCentroid:
    """Standardise each statistic over all samples, then average each class's samples."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if f.ndim != 2 or y.shape != (len(f),) or len(f) == 0:
        raise ValueError(f"features (N, F) and labels (N,) expected, got {f.shape}, {y.shape}")
    mean, scale = f.mean(axis=0), f.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    classes = np.unique(y)
    z = (f - mean) / scale
    return NearestCentroid(classes, mean, scale, np.stack([z[y == c].mean(axis=0) for c in classes]))
