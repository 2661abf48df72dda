"""Intervals for the reported probabilities: binomial intervals on the samples or batches a number
is computed from, and intervals over training seeds. Pure functions over numpy arrays / DataFrames.

No scipy: the beta and Student-t quantiles come from the regularized incomplete beta function
I_x(a, b), evaluated with its continued fraction (modified Lentz method; Press et al., *Numerical
Recipes*, 3rd ed., section 6.4, ``betacf``) and inverted by bisection on x in [0, 1] (I_x is
increasing in x; 80 halvings leave an error far below float round-off in the reported numbers).
Results are checked in tests/test_statistics.py against published tables.

Two kinds of interval, never to be confused (docs/metrics.md):

* a **population interval** (:func:`wilson_interval`, :func:`clopper_pearson_interval`): where the
  probability lies for the population the test samples (or batches) are drawn from, given the k
  successes out of n this run counted;
* a **seed interval** (:func:`t_interval`, :func:`aggregate_over_seeds`): where the mean over
  training seeds lies, from the spread of the seeds' values (plus their min/max).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

#: Confidence level of every interval in the reports (two-sided).
LEVEL = 0.95
#: A t-interval over seeds needs at least this many defined values (else NaN).
MIN_SEEDS_T = 3

_BISECTIONS = 80
_CF_MAX_ITER = 20_000
_CF_EPS = 1e-15
_TINY = 1e-300


# --------------------------------------------------------------------------- special functions


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of I_x(a, b) (Numerical Recipes 3rd ed., section 6.4, modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _CF_MAX_ITER + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _CF_EPS:
            return h
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the regularized incomplete beta function (the Beta(a, b) CDF at x), a, b > 0.

    Source: Press et al., *Numerical Recipes* 3rd ed., section 6.4 (``betai``): the continued
    fraction converges fast for x < (a + 1) / (a + b + 2); otherwise the symmetry
    I_x(a, b) = 1 - I_{1-x}(b, a) is used."""
    if a <= 0 or b <= 0:
        raise ValueError(f"a and b must be > 0, got {a}, {b}")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


@lru_cache(maxsize=4096)
def beta_quantile(q: float, a: float, b: float) -> float:
    """x with I_x(a, b) = q: the q-quantile of Beta(a, b), by bisection on x in [0, 1].

    Source: the definition of the quantile; I_x from :func:`regularized_beta`. Bisection is slow
    but cannot fail on a monotone function; results are cached (the reports need few distinct
    (q, a, b))."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q}")
    if q == 0.0:
        return 0.0
    if q == 1.0:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(_BISECTIONS):
        mid = 0.5 * (lo + hi)
        if regularized_beta(mid, a, b) < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@lru_cache(maxsize=1024)
def t_quantile(q: float, df: float) -> float:
    """The q-quantile (q in (0.5, 1)) of Student's t with ``df`` degrees of freedom.

    Source: P(|T| > t) = I_{df/(df+t^2)}(df/2, 1/2) (Abramowitz and Stegun 26.7.1 / 26.5.27), so
    t = sqrt(df (1 - x) / x) with x the (2(1 - q))-quantile of Beta(df/2, 1/2)."""
    if not 0.5 < q < 1.0:
        raise ValueError(f"q must be in (0.5, 1), got {q}")
    if df <= 0:
        raise ValueError(f"df must be > 0, got {df}")
    x = beta_quantile(2.0 * (1.0 - q), df / 2.0, 0.5)
    return math.sqrt(df * (1.0 - x) / x)


# --------------------------------------------------------------------------- binomial intervals


def _kn(k: Any, n: Any) -> tuple[np.ndarray, np.ndarray]:
    k_arr, n_arr = np.broadcast_arrays(np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64))
    bad = (n_arr < 0) | (k_arr < 0) | (k_arr > n_arr)
    if np.any(bad & ~np.isnan(k_arr) & ~np.isnan(n_arr)):
        raise ValueError("binomial counts need 0 <= k <= n")
    return k_arr, n_arr


def wilson_interval(k: Any, n: Any, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval (lo, hi) for a binomial proportion k / n, elementwise over arrays.

    Source: E. B. Wilson, "Probable inference, the law of succession, and statistical inference",
    JASA 22 (1927) 209-212; formula as in R. G. Newcombe, Stat. Med. 17 (1998) 857-872, method 3
    (no continuity correction): (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), z the
    (1 + level)/2 normal quantile. NaN where n = 0 (or k, n NaN)."""
    k_arr, n_arr = _kn(k, n)
    z = _normal_quantile(0.5 + level / 2.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k_arr / n_arr
        denom = 1.0 + z * z / n_arr
        centre = (p + z * z / (2.0 * n_arr)) / denom
        half = z * np.sqrt(p * (1.0 - p) / n_arr + z * z / (4.0 * n_arr * n_arr)) / denom
        lo = np.array(np.clip(centre - half, 0.0, 1.0), dtype=np.float64)
        hi = np.array(np.clip(centre + half, 0.0, 1.0), dtype=np.float64)
    empty = ~(n_arr > 0)
    lo[empty], hi[empty] = np.nan, np.nan
    # Exact ends: k = 0 gives lo = 0, k = n gives hi = 1 (round-off would leave ~1e-17).
    lo[(k_arr == 0) & ~empty] = 0.0
    hi[(k_arr == n_arr) & ~empty] = 1.0
    return lo, hi


def clopper_pearson_interval(k: Any, n: Any, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Clopper-Pearson ("exact") interval (lo, hi) for a binomial proportion k / n, elementwise.

    Source: C. J. Clopper and E. S. Pearson, Biometrika 26 (1934) 404-413; beta form as in
    Newcombe (1998), method 5: lo = B(alpha/2; k, n - k + 1), hi = B(1 - alpha/2; k + 1, n - k),
    alpha = 1 - level, B(q; a, b) the Beta quantile (:func:`beta_quantile`); lo = 0 for k = 0,
    hi = 1 for k = n. NaN where n = 0. Computed once per distinct (k, n)."""
    k_arr, n_arr = _kn(k, n)
    alpha = 1.0 - level
    lo = np.full(k_arr.shape, np.nan)
    hi = np.full(k_arr.shape, np.nan)
    valid = (n_arr > 0) & ~np.isnan(k_arr)
    if valid.any():
        pairs = np.stack([k_arr[valid], n_arr[valid]], axis=1)
        unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
        u_lo = np.array([0.0 if kk == 0 else beta_quantile(alpha / 2.0, kk, nn - kk + 1.0) for kk, nn in unique])
        u_hi = np.array([1.0 if kk == nn else beta_quantile(1.0 - alpha / 2.0, kk + 1.0, nn - kk)
                         for kk, nn in unique])
        lo[valid], hi[valid] = u_lo[inverse.ravel()], u_hi[inverse.ravel()]
    return lo, hi


def _normal_quantile(q: float) -> float:
    """Standard normal quantile by bisection on the CDF 0.5 (1 + erf(x / sqrt 2)) (exact to ~1e-15)."""
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if 0.5 * (1.0 + math.erf(mid / math.sqrt(2.0))) < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# --------------------------------------------------------------------------- over seeds


def t_interval(values: Sequence[float] | np.ndarray, level: float = LEVEL) -> dict[str, float]:
    """Mean over seeds with its Student t-interval and the seeds' spread.

    Returns ``mean``, ``lo``, ``hi`` (mean -+ t_{(1+level)/2, n-1} s / sqrt(n), s the sample
    standard deviation; NaN with fewer than :data:`MIN_SEEDS_T` defined values), ``min``, ``max``
    and ``n`` (defined values; NaN values are left out). Source: Student (W. S. Gosset), "The
    probable error of a mean", Biometrika 6 (1908) 1-25; any statistics text, e.g. Wasserman,
    *All of Statistics* (2004), section 10.1."""
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[~np.isnan(x)]
    n = int(x.size)
    nan = float("nan")
    if n == 0:
        return {"mean": nan, "lo": nan, "hi": nan, "min": nan, "max": nan, "n": 0}
    mean = float(x.mean())
    lo = hi = nan
    if n >= MIN_SEEDS_T:
        half = t_quantile(0.5 + level / 2.0, n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
        lo, hi = mean - half, mean + half
    return {"mean": mean, "lo": lo, "hi": hi, "min": float(x.min()), "max": float(x.max()), "n": n}


#: Suffixes of the per-column outputs of :func:`aggregate_over_seeds`.
SEED_SUFFIXES = ("_seed_min", "_seed_max", "_seed_lo", "_seed_hi", "_seed_n")


def aggregate_over_seeds(frames: list[pd.DataFrame], keys: list[str], columns: list[str],
                         level: float = LEVEL) -> pd.DataFrame:
    """One row per key combination found in any frame (one frame per training seed), in the order
    of first appearance, with for each column ``c`` of ``columns``:

    * ``c``: the mean over the seeds where c is defined (NaN values are left out);
    * ``c_seed_min``, ``c_seed_max``: the seeds' spread;
    * ``c_seed_lo``, ``c_seed_hi``: the Student t-interval of the mean at ``level``
      (:func:`t_interval`; NaN with fewer than :data:`MIN_SEEDS_T` defined values);
    * ``c_seed_n`` (int64): the seeds where c is defined;

    and ``n_seeds`` (int64): the frames holding that key row. Columns come out as ``keys``, then
    per column ``c, c_seed_min, c_seed_max, c_seed_lo, c_seed_hi, c_seed_n``, then ``n_seeds``.
    Integer columns (counts) come back as float means. A key repeated within one frame is an error.
    Source of the interval: :func:`t_interval`."""
    if not frames:
        raise ValueError("aggregate_over_seeds needs at least one frame")
    for i, f in enumerate(frames):
        missing = [c for c in [*keys, *columns] if c not in f.columns]
        if missing:
            raise ValueError(f"frame {i} lacks columns {missing}")
        if f.duplicated(subset=keys).any():
            raise ValueError(f"frame {i} has repeated keys {keys}")
    stacked = pd.concat([f[[*keys, *columns]].assign(_seed=i) for i, f in enumerate(frames)], ignore_index=True)
    for c in columns:
        stacked[c] = pd.to_numeric(stacked[c], errors="raise").astype(np.float64)
    grouped = stacked.groupby(keys, sort=False, dropna=False)
    stats = grouped[columns].agg(["mean", "std", "count", "min", "max"])
    out = stats.index.to_frame(index=False)
    z = {}
    for c in columns:
        mean = stats[(c, "mean")].to_numpy()
        std = stats[(c, "std")].to_numpy()
        count = stats[(c, "count")].to_numpy().astype(np.int64)
        lo = np.full(len(mean), np.nan)
        hi = np.full(len(mean), np.nan)
        ok = count >= MIN_SEEDS_T
        if ok.any():
            tq = np.array([t_quantile(0.5 + level / 2.0, float(m - 1)) for m in count[ok]])
            half = tq * std[ok] / np.sqrt(count[ok])
            lo[ok], hi[ok] = mean[ok] - half, mean[ok] + half
        z[c] = mean
        z[f"{c}_seed_min"] = stats[(c, "min")].to_numpy()
        z[f"{c}_seed_max"] = stats[(c, "max")].to_numpy()
        z[f"{c}_seed_lo"] = lo
        z[f"{c}_seed_hi"] = hi
        z[f"{c}_seed_n"] = count
    z["n_seeds"] = grouped["_seed"].nunique().to_numpy().astype(np.int64)
    return pd.concat([out, pd.DataFrame(z)], axis=1)
