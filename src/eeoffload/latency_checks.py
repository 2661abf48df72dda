"""The checks of a latency profile: signs that a measurement on a loaded machine is wrong.

A measurement on a loaded machine can be wrong in ways the numbers do not show by themselves;
:func:`timing_warnings` and :func:`cloud_slower_warnings` (pure functions over arrays of timings)
name three such signs (quantised timings, too much spread, a cloud slower than the edge on the
same CPU), with thresholds fixed as the constants below before any result was looked at
(docs/latency.md, "Trustworthy profiles"). The profile stage (``pipeline/profile.py``) calls them
on the raw timed calls of :mod:`eeoffload.latency_measure` and re-measures or warns; the latency
formulas themselves are in :mod:`eeoffload.latency`.

``samples_ms`` arguments are the timed calls of one location, (n_layers, repeats), in ms.
:func:`timing_quantiles` also gives the per-layer tables their median and percentiles
(:func:`eeoffload.latency.layer_table`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

# --- thresholds of the profile checks (fixed before looking at any result; docs/latency.md) ----------

#: A set of timings is *quantised* when every timed call is within QUANTUM_TOL_MS of a multiple of
#: one tick of at least QUANTUM_MIN_MS (e.g. a loaded machine's cloud layers at exactly 8, 16, 24,
#: 32 ms), or when any call reads 0 (the clock did not advance). A sound clock (perf_counter) has a
#: resolution below a microsecond, so a common tick of half a millisecond is not a measurement.
QUANTUM_MIN_MS = 0.5
#: How far (ms) a value may sit from a multiple of the tick and still count as on it: 1 us, above
#: float rounding of perf_counter differences, far below any real layer's jitter.
QUANTUM_TOL_MS = 1e-3
#: Fewer non-zero values than this are not judged for a common tick (one value is always a
#: multiple of itself).
QUANTUM_MIN_VALUES = 4
#: A location's timings *spread too much* when its pooled spread, sum over layers of (p90 - p10)
#: divided by the sum of the medians, exceeds this: the slow tenth of the calls took more than
#: half a median longer than the fast tenth. Pooled (time-weighted), so that microsecond layers,
#: dominated by Python's call overhead, do not decide it.
SPREAD_MAX = 0.5
#: The cloud is *slower than the edge* (both the host CPU, the cloud with at least as many threads)
#: when a layer's cloud median exceeds the edge median by this factor ...
CLOUD_SLOWER_RATIO = 1.25
#: ... among the layers whose edge median is at least this many ms (below it the call overhead
#: and the thread hand-off dominate, and the comparison says nothing about the hardware).
CLOUD_CHECK_MIN_MS = 0.05


# --- quantiles and spread of timed calls -----------------------------------------------------------


def timing_quantiles(samples_ms: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(median, p10, p90) per row of ``samples_ms`` ((n_layers, repeats), the timed calls of each layer)."""
    s = np.atleast_2d(np.asarray(samples_ms, dtype=np.float64))
    if s.shape[1] == 0:
        raise ValueError("no timed calls")
    p10, median, p90 = np.percentile(s, [10, 50, 90], axis=1)
    return median, p10, p90


def relative_spread(samples_ms: Any) -> np.ndarray:
    """(p90 - p10) / median per row of ``samples_ms``; NaN where the median is 0."""
    median, p10, p90 = timing_quantiles(samples_ms)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(median > 0, (p90 - p10) / median, np.nan)


def pooled_spread(samples_ms: Any) -> float:
    """Sum of (p90 - p10) over rows divided by the sum of the medians (NaN when that is 0): the spread
    of a location's timings, weighted by time. The quantity :data:`SPREAD_MAX` bounds."""
    median, p10, p90 = timing_quantiles(samples_ms)
    total = float(median.sum())
    return float((p90 - p10).sum() / total) if total > 0 else math.nan


# --- checks of a measurement (pure; the profile stage calls them and re-measures or warns) ----------


def timer_quantum_ms(values_ms: Any, tol_ms: float = QUANTUM_TOL_MS, min_values: int = QUANTUM_MIN_VALUES) -> float:
    """The coarsest tick every value sits on (within ``tol_ms``), in ms.

    ``math.inf`` if any value is <= 0 (a timed call that read no time: the clock did not advance);
    0.0 when fewer than ``min_values`` values are non-zero (too few to judge); otherwise the
    approximate greatest common divisor of the values (Euclid's algorithm, a remainder within
    ``tol_ms`` of 0 or of the divisor counting as 0). Clean timings give about ``tol_ms`` or less;
    a timer that only advances in ticks of 8 ms gives 8 (or a multiple of it).
    """
    v = np.asarray(values_ms, dtype=np.float64).ravel()
    if (v <= 0).any():
        return math.inf
    if v.size < min_values:
        return 0.0
    g = float(v.min())
    for x in np.unique(v):
        a, b = max(g, float(x)), min(g, float(x))
        while b > tol_ms:
            r = a % b
            if r <= tol_ms or b - r <= tol_ms:
                r = 0.0
            a, b = b, r
        g = a
        if g <= tol_ms:
            return g
    return g


def is_quantised(values_ms: Any, min_tick_ms: float = QUANTUM_MIN_MS) -> bool:
    """Whether the timings sit on a timer tick of at least ``min_tick_ms`` (:func:`timer_quantum_ms`)."""
    return timer_quantum_ms(values_ms) >= min_tick_ms


def _fmt(ms: float) -> str:
    return f"{ms:.3g}"


def timing_warnings(
    location: str,
    layer: Sequence[str],
    samples_ms: Any,
    min_tick_ms: float = QUANTUM_MIN_MS,
    spread_max: float = SPREAD_MAX,
) -> list[str]:
    """Plain-English one-line warnings about one location's timed calls (``samples_ms``, (n_layers,
    repeats), raw: before any slowdown or speedup); empty when they look clean.

    - quantised (:func:`timer_quantum_ms` >= ``min_tick_ms``): the clock, not the layers, set the values;
    - spread (:func:`pooled_spread` > ``spread_max``): the machine was busy while timing.
    """
    samples = np.atleast_2d(np.asarray(samples_ms, dtype=np.float64))
    out = []
    quantum = timer_quantum_ms(samples)
    if quantum >= min_tick_ms:
        if math.isinf(quantum):
            zeros = int((samples <= 0).sum())
            out.append(f"{location} timings are quantised: {zeros} of {samples.size} timed calls read 0 ms "
                       f"(the clock did not advance), so these layer times are not measurements")
        else:
            out.append(f"{location} timings are quantised: all {samples.size} timed calls are multiples of "
                       f"{_fmt(quantum)} ms (a coarse or disturbed clock), so these layer times are not "
                       f"measurements")
    spread = pooled_spread(samples) if samples.size else math.nan
    if spread > spread_max:
        rel = relative_spread(samples)
        median = timing_quantiles(samples)[0]
        worst = int(np.nanargmax(np.where(np.isnan(rel), -np.inf, rel * median)))
        out.append(f"{location} timings spread too much: (p90 - p10) / median = {spread:.2f} over its layers "
                   f"(limit {spread_max:g}); widest: {layer[worst]} {_fmt(median[worst])} ms median, "
                   f"spread {rel[worst]:.2f}; the machine was probably busy")
    return out


def cloud_slower_layers(
    layer: Sequence[str],
    edge_ms: Any,
    cloud_ms: Any,
    ratio: float = CLOUD_SLOWER_RATIO,
    min_ms: float = CLOUD_CHECK_MIN_MS,
) -> list[str]:
    """The layers whose cloud time exceeds ``ratio`` times their edge time, among those whose edge
    time is at least ``min_ms``. ``edge_ms`` / ``cloud_ms``: raw medians of the same layers on the
    same hardware (before slowdown or speedup), in the order of ``layer``."""
    edge = np.asarray(edge_ms, dtype=np.float64)
    cloud = np.asarray(cloud_ms, dtype=np.float64)
    if edge.shape != cloud.shape or edge.shape != (len(layer),):
        raise ValueError(f"edge_ms {edge.shape} and cloud_ms {cloud.shape} must both be ({len(layer)},)")
    slow = (edge >= min_ms) & (cloud > ratio * edge)
    return [name for name, s in zip(layer, slow) if s]


def cloud_slower_warnings(
    layer: Sequence[str],
    edge_ms: Any,
    cloud_ms: Any,
    ratio: float = CLOUD_SLOWER_RATIO,
    min_ms: float = CLOUD_CHECK_MIN_MS,
) -> list[str]:
    """One plain-English warning when the cloud was slower than the edge on the same hardware
    (:func:`cloud_slower_layers`), else none."""
    slow = cloud_slower_layers(layer, edge_ms, cloud_ms, ratio, min_ms)
    if not slow:
        return []
    edge = dict(zip(layer, np.asarray(edge_ms, dtype=np.float64)))
    cloud = dict(zip(layer, np.asarray(cloud_ms, dtype=np.float64)))
    shown = ", ".join(f"{n} {_fmt(cloud[n])} vs {_fmt(edge[n])} ms" for n in slow[:3])
    more = f" and {len(slow) - 3} more" if len(slow) > 3 else ""
    return [f"cloud slower than edge on the same CPU: {len(slow)} layer(s) took more than {ratio:g}x their "
            f"edge time ({shown}{more}); the machine was probably busy"]
