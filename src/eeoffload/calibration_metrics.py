"""Top-label calibration metrics over (confidence, correct) pairs, for any calibrator's output.

``conf`` is (N,) in [0, 1] (the top-label confidence) and ``correct`` (N,) bool (the top label is
the true class). Binned ECE (equal width) follows Guo et al. 2017 [10] and matches
:func:`eeoffload.calibration.expected_calibration_error` (bins (lower, upper]); the others:

- equal-mass ECE: the same sum over bins of (nearly) equal count (Nixon et al., "Measuring
  calibration in deep learning", CVPR-W 2019, adaptive ECE; Roelofs et al., AISTATS 2022, ECE_EM);
- smooth ECE and the kernel reliability diagram: Blasiok and Nakkiran, "Smooth ECE: principled
  reliability diagrams via kernel smoothing", ICLR 2024, computed with Apple's ``relplot`` package
  (imported lazily); the interval is a basic bootstrap over samples (as relplot's diagrams) with the
  bandwidth fixed at the full-sample choice;
- top-label Brier score mean (conf - correct)^2 and binary NLL of the top label (Brier 1950;
  Gupta and Ramdas 2022 evaluate top-label calibration this way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def _pair(conf: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(conf, dtype=np.float64)
    k = np.asarray(correct, dtype=bool)
    if c.ndim != 1 or c.shape != k.shape:
        raise ValueError(f"conf and correct must be (N,) of the same length, got {c.shape}, {k.shape}")
    return c, k


def _binned_gap(conf: np.ndarray, correct: np.ndarray, index: np.ndarray, n_bins: int) -> float:
    """sum_b (n_b / N) |acc_b - conf_b| for bin index per sample (Guo et al. 2017, eq. 3)."""
    if len(conf) == 0:
        return float("nan")
    count = np.bincount(index, minlength=n_bins)
    gap = np.bincount(index, weights=conf - correct, minlength=n_bins)
    return float(np.abs(gap).sum() / len(conf)) if count.sum() else float("nan")


def ece_equal_width(conf: Any, correct: Any, n_bins: int = 15) -> float:
    """Binned ECE over equal-width bins (lower, upper] of [0, 1] (Guo et al. 2017, eq. 3)."""
    c, k = _pair(conf, correct)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return _binned_gap(c, k, np.searchsorted(edges[1:-1], c, side="left"), n_bins)


def ece_equal_mass(conf: Any, correct: Any, n_bins: int = 15) -> float:
    """Equal-mass ECE: bins of consecutive sorted confidences with (nearly) equal counts (Nixon et
    al. 2019, adaptive ECE; Roelofs et al. 2022, ECE_EM)."""
    c, k = _pair(conf, correct)
    order = np.argsort(c, kind="stable")
    index = np.empty(len(c), dtype=np.int64)
    index[order] = (np.arange(len(c)) * n_bins) // max(len(c), 1)
    return _binned_gap(c, k, index, n_bins)


def brier_top_label(conf: Any, correct: Any) -> float:
    """mean (conf - 1[correct])^2 (Brier 1950, on the top label)."""
    c, k = _pair(conf, correct)
    return float(np.mean((c - k) ** 2)) if len(c) else float("nan")


def nll_top_label(conf: Any, correct: Any, eps: float = 1e-12) -> float:
    """Binary NLL of the top label: -mean log(conf if correct else 1 - conf), clipped at ``eps``."""
    c, k = _pair(conf, correct)
    p = np.clip(np.where(k, c, 1.0 - c), eps, 1.0)
    return float(-np.log(p).mean()) if len(c) else float("nan")


def smooth_ece(conf: Any, correct: Any) -> tuple[float, float]:
    """(smECE, bandwidth sigma) with relplot's automatic bandwidth (Blasiok and Nakkiran 2024, sec. 4)."""
    import relplot

    c, k = _pair(conf, correct)
    value, sigma = relplot.smECE(c, k.astype(np.float64), return_width=True)
    return float(value), float(sigma)


@dataclass(frozen=True)
class SmoothEce:
    value: float
    low: float
    high: float
    sigma: float


def smooth_ece_interval(conf: Any, correct: Any, resamples: int, seed: int,
                        level: float = 0.95) -> SmoothEce:
    """smECE with a basic bootstrap interval [2 v - q_hi, 2 v - q_lo] clipped at 0, the method
    relplot's own diagrams use (scipy.stats.bootstrap, method="basic"); each resample keeps the
    full-sample bandwidth (relplot.smECE_sigma; Blasiok and Nakkiran 2024) so B resamples stay
    cheap. Resampling duplicates points, which biases smECE upwards; the basic interval corrects
    for that bias, so near 0 it may lie below the point estimate."""
    import relplot

    c, k = _pair(conf, correct)
    value, sigma = smooth_ece(c, k)
    if resamples < 1 or len(c) == 0:
        return SmoothEce(value, float("nan"), float("nan"), sigma)
    rng = np.random.default_rng(seed)
    y = k.astype(np.float64)
    stats = np.empty(resamples)
    for b in range(resamples):
        i = rng.integers(0, len(c), len(c))
        stats[b] = relplot.smECE_sigma(c[i], y[i], sigma)
    tail = (1.0 - level) / 2
    q_low, q_high = np.quantile(stats, [tail, 1.0 - tail])
    return SmoothEce(value, max(0.0, 2 * value - q_high), max(0.0, 2 * value - q_low), sigma)


def kernel_reliability(conf: Any, correct: Any, sigma: float, mesh: int = 101,
                       min_density: float = 0.01) -> dict[str, np.ndarray]:
    """Kernel reliability diagram (Blasiok and Nakkiran 2024, sec. 3): on a mesh of [0, 1], the
    Nadaraya-Watson estimate of P(correct | conf = t) with relplot's reflected Gaussian kernel of
    width ``sigma`` (NaN where the density is below ``min_density`` of its maximum), and the
    kernel density of conf."""
    from relplot.kernels import ReflectedGaussianKernel

    c, k = _pair(conf, correct)
    t = np.linspace(0.0, 1.0, mesh)
    kernel = ReflectedGaussianKernel(sigma)
    accuracy, density = kernel.smooth(c, k.astype(np.float64), t)
    accuracy, density = np.asarray(accuracy, dtype=np.float64), np.asarray(density, dtype=np.float64)
    # where (almost) no confidence falls the estimate is 0/0: NaN, not the kernel's fallback
    accuracy = np.where(density >= min_density * density.max(), accuracy, np.nan)
    return {"t": t, "accuracy": accuracy, "density": density}
