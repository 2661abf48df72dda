"""Image corruptions at graded severities, as CIFAR-10-C defines them (distribution shift).

Hendrycks and Dietterich, "Benchmarking neural network robustness to common corruptions and
perturbations" (ICLR 2019), CIFAR-10-C: each corruption is a formula with one parameter ``c`` per
severity 1..5. The constants are those of the CIFAR-10 script, ``make_cifar_c.py`` of
github.com/hendrycks/robustness (``ImageNet-C/create_c/``), NOT ImageNet-C's (the
``imagecorruptions`` package holds ImageNet-C's constants; the formulas are the same, which is what
``tests/test_corruptions.py`` checks against its outputs, stored as a fixture):

================  ====================================  =================================
corruption        formula (x in [0, 1], per image)      c at severity 1..5 (CIFAR-10-C)
================  ====================================  =================================
gaussian_noise    clip(x + N(0, c^2))                   0.04, 0.06, 0.08, 0.09, 0.10
gaussian_blur     clip(gaussian_filter(x, sigma=c))     0.4, 0.6, 0.7, 0.8, 1.0
jpeg_compression  PIL JPEG encode/decode, quality c     80, 65, 58, 50, 40
contrast          clip((x - mean(x)) c + mean(x))       0.75, 0.5, 0.4, 0.3, 0.15
brightness        V of HSV + c, clipped to [0, 1]        0.05, 0.1, 0.15, 0.2, 0.3
================  ====================================  =================================

The result is ``np.uint8(255 * y)`` (truncation, as ``make_cifar_c.py`` stores CIFAR-10-C).
Gaussian blur is skimage's ``gaussian(..., multichannel=True)``: scipy's ``gaussian_filter`` with
sigma c on the two image axes, 0 on the channels, ``mode="nearest"``, ``truncate=4``. Brightness
adds c to V = max(r, g, b) of the hexcone HSV model with hue and saturation kept (skimage's
rgb2hsv -> hsv2rgb, reimplemented here in the same order of operations: a closed form x * V'/V
differs from the reference in the last bit often enough to move 2% of the truncated values).

Everything here is pure: uint8 images (N, 32, 32, 3) in, uint8 images out; the only randomness
(Gaussian noise) comes from the generator passed in, so a seed fixes the output
(:func:`corruption_rng` derives one generator per corruption and severity from a seed).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np

#: CIFAR-10-C's parameter per severity 1..5 (make_cifar_c.py, hendrycks/robustness).
CIFAR10_C: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    "jpeg_compression": (80, 65, 58, 50, 40),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
}
#: The corruptions' names (params ``shift.corruptions``), in CIFAR-10-C's table order.
CORRUPTIONS: tuple[str, ...] = tuple(CIFAR10_C)
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
#: The clean images' labels in the shift tables: corruption "none", severity 0.
CLEAN = ("none", 0)


def _check(images: Any) -> np.ndarray:
    x = np.asarray(images)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {x.dtype} {x.shape}")
    return x


def _to_uint8(y: np.ndarray) -> np.ndarray:
    """np.uint8(clip(y, 0, 1) * 255): the truncation make_cifar_c.py stores."""
    return (np.clip(y, 0.0, 1.0) * 255).astype(np.uint8)


def gaussian_noise(images: Any, c: float, rng: Any) -> np.ndarray:
    """clip(x + eps, 0, 1), eps ~ N(0, c^2) per pixel and channel (CIFAR-10-C ``gaussian_noise``).
    ``rng``: anything with numpy's ``normal(size=, scale=)`` (a Generator; a RandomState reproduces
    the reference's np.random draws image after image)."""
    x = _check(images) / 255.0
    return _to_uint8(x + rng.normal(size=x.shape, scale=c))


def gaussian_blur(images: Any, c: float) -> np.ndarray:
    """skimage ``gaussian(x, sigma=c, multichannel=True)``, clipped (CIFAR-10-C ``gaussian_blur``):
    scipy's gaussian_filter, sigma c on height and width, nearest-edge padding, truncated at 4 sigma."""
    from scipy.ndimage import gaussian_filter

    x = _check(images) / 255.0
    return _to_uint8(gaussian_filter(x, sigma=(0.0, c, c, 0.0), mode="nearest", truncate=4.0))


def jpeg_compression(images: Any, c: float) -> np.ndarray:
    """PIL JPEG encoding at quality c and decoding (CIFAR-10-C ``jpeg_compression``), per image."""
    from PIL import Image

    x = _check(images)
    out = np.empty_like(x)
    for i, img in enumerate(x):
        buffer = io.BytesIO()
        Image.fromarray(img).save(buffer, "JPEG", quality=int(c))
        buffer.seek(0)
        out[i] = np.asarray(Image.open(buffer).convert("RGB"))
    return out


def contrast(images: Any, c: float) -> np.ndarray:
    """clip((x - m) c + m, 0, 1), m the image's mean per channel (CIFAR-10-C ``contrast``)."""
    x = _check(images) / 255.0
    means = x.mean(axis=(1, 2), keepdims=True)
    return _to_uint8((x - means) * c + means)


def rgb_to_hsv(x: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] (..., 3) to HSV, the hexcone model (Smith, "Color gamut transform pairs",
    SIGGRAPH 1978), with skimage's conventions and order of operations: V = max, S = (max - min) / V
    (0 where max = min), H from the largest channel (red first when tied), 0 where max = min."""
    v = x.max(axis=-1)
    delta = np.ptp(x, axis=-1)
    flat = delta == 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(flat, 0.0, delta / v)
        r, g, b = x[..., 0], x[..., 1], x[..., 2]
        h = np.zeros_like(v)
        h = np.where(r == v, (g - b) / delta, h)  # later channels overwrite on ties, as skimage
        h = np.where(g == v, 2.0 + (b - r) / delta, h)
        h = np.where(b == v, 4.0 + (r - g) / delta, h)
    h = np.where(flat, 0.0, (h / 6.0) % 1.0)
    return np.stack([h, s, v], axis=-1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """The inverse of :func:`rgb_to_hsv` (Smith 1978; skimage's hsv2rgb): the sextant of H picks
    the channels among v, p = v(1 - s), q = v(1 - f s), t = v(1 - (1 - f) s)."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    hi = np.floor(h * 6)
    f = h * 6 - hi
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    sextant = hi.astype(np.uint8) % 6
    return np.stack([np.choose(sextant, (v, q, p, p, t, v)), np.choose(sextant, (t, v, v, q, p, p)),
                     np.choose(sextant, (p, p, t, v, v, q))], axis=-1)


def brightness(images: Any, c: float) -> np.ndarray:
    """V of HSV raised by c and clipped to 1, hue and saturation kept (CIFAR-10-C ``brightness``:
    skimage rgb2hsv, V + c, hsv2rgb; here :func:`rgb_to_hsv` / :func:`hsv_to_rgb`)."""
    hsv = rgb_to_hsv(_check(images) / 255.0)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0.0, 1.0)
    return _to_uint8(hsv_to_rgb(hsv))


_RANDOM = {"gaussian_noise"}
_FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "gaussian_noise": gaussian_noise, "gaussian_blur": gaussian_blur, "jpeg_compression": jpeg_compression,
    "contrast": contrast, "brightness": brightness,
}


def severity_parameter(corruption: str, severity: int) -> float:
    """CIFAR-10-C's parameter c of ``corruption`` at ``severity`` (1..5)."""
    if corruption not in CIFAR10_C:
        raise ValueError(f"unknown corruption {corruption!r}; allowed: {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    return CIFAR10_C[corruption][severity - 1]


def corruption_rng(seed: int | tuple[int, ...], corruption: str, severity: int) -> np.random.Generator:
    """The generator of one (corruption, severity): seeded by (seed..., corruption's index, severity),
    so adding a corruption or a severity leaves the others' images unchanged; ``seed`` may be a
    tuple (e.g. the seed and the split, so that two splits get independent noise)."""
    return np.random.default_rng([*(int(s) for s in np.atleast_1d(seed)), CORRUPTIONS.index(corruption), int(severity)])


def corrupt(images: Any, corruption: str, severity: int, seed: int | tuple[int, ...] = 0,
            c: float | None = None) -> np.ndarray:
    """``images`` (uint8, N x H x W x 3) under ``corruption`` at ``severity`` with CIFAR-10-C's
    constant (or the parameter ``c`` given); deterministic under ``seed``. Severity 0 / corruption
    ``none`` returns the images unchanged (a copy)."""
    if (corruption, severity) == CLEAN:
        return _check(images).copy()
    value = severity_parameter(corruption, severity) if c is None else c
    if corruption in _RANDOM:
        return _FUNCTIONS[corruption](images, value, corruption_rng(seed, corruption, severity))
    return _FUNCTIONS[corruption](images, value)
