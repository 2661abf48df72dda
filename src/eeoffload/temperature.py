"""Temperature scaling (paper section IV-A, eq. 2; Guo et al. [10]): softmax(z / T) and the T that
minimises the validation NLL. Numpy only (no pandas), so the train stage can trace T per epoch.

Conventions: ``logits`` is (N, C), ``labels`` is (N,) int class indices; torch tensors are accepted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

# Search interval for log T in fit_temperature: T in [0.05, 20].
LOG_T_MIN = math.log(0.05)
LOG_T_MAX = math.log(20.0)
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0  # 0.618...


def as_array(x: Any, dtype: Any = None) -> np.ndarray:
    """A numpy array from an array-like or a torch tensor (detached, on the CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def log_softmax(logits: Any, temperature: float = 1.0) -> np.ndarray:
    """log softmax(z / T) row-wise in float64 (paper eq. 2; T = 1 gives eq. 1)."""
    z = as_array(logits, np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def softmax(logits: Any, temperature: float = 1.0) -> np.ndarray:
    """p = softmax(z / T) row-wise in float64 (paper eq. 2; T = 1 gives the uncalibrated eq. 1)."""
    return np.exp(log_softmax(logits, temperature))


def labels_array(labels: Any, n: int) -> np.ndarray:
    y = as_array(labels).astype(np.int64, copy=False)
    if y.shape != (n,):
        raise ValueError(f"labels: expected shape ({n},), got {y.shape}")
    return y


def temperature_nll(logits: Any, labels: Any, temperature: float) -> float:
    """Mean NLL of softmax(z / T) at the true labels, computed from logits (the eq. 2 objective)."""
    logp = log_softmax(logits, temperature)
    y = labels_array(labels, logp.shape[0])
    return float(-logp[np.arange(len(y)), y].mean())


def fit_temperature(logits: Any, labels: Any, tol: float = 1e-7) -> float:
    """The T > 0 minimising the validation NLL of softmax(z / T) (paper IV-A, eq. 2).

    Golden-section search on log T over [log 0.05, log 20]. NLL is convex in 1/T, so it is
    unimodal in log T and the search converges to the minimum on that interval (or its edge).
    Guarantee: NLL(T) <= NLL(1); otherwise (or for empty input) T = 1 is returned.
    """
    z = as_array(logits, np.float64)
    if z.ndim != 2 or z.shape[0] == 0:
        return 1.0
    y = labels_array(labels, z.shape[0])

    def nll_at(log_t: float) -> float:
        return temperature_nll(z, y, math.exp(log_t))

    lo, hi = LOG_T_MIN, LOG_T_MAX
    x1, x2 = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    f1, f2 = nll_at(x1), nll_at(x2)
    while hi - lo > tol:
        if f1 <= f2:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - _GOLDEN * (hi - lo)
            f1 = nll_at(x1)
        else:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + _GOLDEN * (hi - lo)
            f2 = nll_at(x2)
    best = 0.5 * (lo + hi)
    temperature = math.exp(best)
    if not math.isfinite(temperature) or nll_at(best) > nll_at(0.0):
        return 1.0
    return temperature


def fit_global_temperature(exit_logits: Sequence[Any], labels: Any) -> list[float]:
    """Temperatures with one T shared by all side branches (the ``global`` method).

    ``exit_logits`` holds one (N, C) array per exit, side branches first, the final exit last.
    The shared T minimises the NLL of all side-branch logits pooled together (eq. 2 with a single
    T); the final exit gets its own T. Returns one temperature per exit.
    """
    if len(exit_logits) == 0:
        return []
    final = fit_temperature(exit_logits[-1], labels)
    sides = [as_array(z, np.float64) for z in exit_logits[:-1]]
    if not sides:
        return [final]
    y = as_array(labels).astype(np.int64)
    shared = fit_temperature(np.concatenate(sides), np.tile(y, len(sides)))
    return [shared] * len(sides) + [final]
