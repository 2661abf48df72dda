"""Measuring a latency profile until it is trustworthy: the re-measure policy of the profile stage.

One measurement (:func:`measure_once`) times the edge's and the cloud's layers
(:mod:`eeoffload.latency_measure`) and runs the checks of :mod:`eeoffload.latency_checks`
(quantised timings, too much spread between the timed calls, the cloud slower than the edge on the
same CPU). :func:`measure_until_clean` measures again while a check fails, up to ``remeasure``
more times, and keeps a clean measurement, else the least disturbed one: not quantised if one is
not, then the fastest (a busy machine only ever adds time to a layer). What still fails is
returned as plain-English warnings; :func:`checks_record` is what the profile records about it.

No paths and no printing: progress goes to a ``log`` callable, the stage writes the files.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eeoffload import latency_checks as L

Log = Callable[[str], None]


@dataclass(frozen=True)
class MeasureSetup:
    """How the layers are timed: the edge on the host CPU with ``edge_threads`` threads (when
    ``measure_edge``; else the edge comes from a CSV), the cloud on ``cloud_device`` with
    ``cloud_threads`` (None: the device's default), and whether check (c) compares them
    (``compare``: the same CPU, the cloud with at least the edge's threads)."""

    edge_threads: int
    warmup: int
    repeats: int
    measure_edge: bool
    cloud_device: str
    cloud_threads: int | None
    compare: bool


@dataclass
class Measurement:
    edge: Any  # LayerTimes of the edge's layers, or None (CSV edge)
    cloud: Any  # LayerTimes of the cloud's layers
    warnings: list[str]
    spread: dict[str, float | None]
    quantised: bool  # a location's timings sit on a coarse clock tick
    total_ms: float  # sum of the raw medians of every layer measured for the outputs


def _number_or_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def measure_once(model: Any, setup: MeasureSetup, log: Log) -> Measurement:
    """One measurement of the edge's and the cloud's layers of ``model``, and its checks."""
    from eeoffload import latency_measure  # torch: only once a measurement is asked for
    from eeoffload.latency import cloud_layer_names, edge_layer_names

    edge_names, cloud_names = edge_layer_names(model), cloud_layer_names(model)
    warnings: list[str] = []
    spread: dict[str, float | None] = {"edge": None, "cloud": None}
    edge = None
    if setup.measure_edge:
        edge = latency_measure.measure_layers(model, "cpu", setup.edge_threads, setup.warmup, setup.repeats,
                                              only=set(edge_names), log=log)
        warnings += L.timing_warnings("edge", edge.layer, edge.samples_ms)
        spread["edge"] = _number_or_none(L.pooled_spread(edge.samples_ms))
    cloud = latency_measure.measure_layers(model, setup.cloud_device, setup.cloud_threads, setup.warmup,
                                           setup.repeats, only=set(cloud_names), log=log)
    warnings += L.timing_warnings("cloud", cloud.layer, cloud.samples_ms)
    spread["cloud"] = _number_or_none(L.pooled_spread(cloud.samples_ms))
    if setup.compare:
        # The cloud's layers once more as the edge runs them (same CPU, the edge's threads): with at
        # least as many threads, the cloud must not be slower.
        ref = latency_measure.measure_layers(model, "cpu", setup.edge_threads, setup.warmup, setup.repeats,
                                             only=set(cloud_names))
        log(f"timed the cloud's {len(ref.layer)} layer(s) with the edge's threads (check: cloud not slower)")
        cloud_median = L.timing_quantiles(cloud.samples_ms)[0]
        ref_median = L.timing_quantiles(ref.samples_ms)[0]
        warnings += L.cloud_slower_warnings(cloud.layer, ref_median, cloud_median)
    model.to("cpu")
    timed = [t for t in (edge, cloud) if t is not None]
    quantised = any(L.is_quantised(t.samples_ms) for t in timed)
    total_ms = float(sum(L.timing_quantiles(t.samples_ms)[0].sum() for t in timed))
    return Measurement(edge, cloud, warnings, spread, quantised, total_ms)


def least_disturbed(attempts: list[Measurement]) -> int:
    """The index of the measurement to keep: a clean one (the last, if any), else not quantised if
    one is not, then the fastest (a busy machine only ever adds time to a layer)."""
    return min(range(len(attempts)),
               key=lambda i: (bool(attempts[i].warnings), attempts[i].quantised, attempts[i].total_ms))


@dataclass(frozen=True)
class Remeasured:
    attempts: list[Measurement]
    kept: int  # index into attempts
    warnings: list[str]  # the kept measurement's, and one more line if every attempt failed a check

    @property
    def best(self) -> Measurement:
        return self.attempts[self.kept]


def measure_until_clean(measure: Callable[[], Measurement], remeasure: int, log: Log) -> Remeasured:
    """``measure()`` until a measurement passes its checks, at most ``1 + remeasure`` times."""
    max_attempts = 1 + remeasure
    attempts: list[Measurement] = []
    for attempt in range(1, max_attempts + 1):
        m = measure()
        attempts.append(m)
        if not m.warnings:
            break
        for w in m.warnings:
            log(f"warning: {w}")
        if attempt < max_attempts:
            log(f"disturbed measurement; measuring again ({attempt + 1} of at most {max_attempts})")
    kept = least_disturbed(attempts)
    warnings = list(attempts[kept].warnings)
    if warnings and len(attempts) > 1:
        warnings.append(f"the profile was measured {len(attempts)} times and every measurement failed a check; "
                        f"the numbers are from measurement {kept + 1}, the least disturbed")
    if not warnings and len(attempts) > 1:
        log(f"measurement {kept + 1} passed the checks")
    return Remeasured(attempts, kept, warnings)


def checks_record(result: Remeasured, remeasure: int, compare: bool) -> dict[str, Any]:
    """What a profile records about its checks: how often it was measured, which one it kept, the
    limits the checks used."""
    return {
        "measurements": len(result.attempts),
        "kept": result.kept + 1,
        "max_measurements": 1 + remeasure,
        "cloud_compared_with_edge": compare,
        "quantum_min_ms": L.QUANTUM_MIN_MS,
        "spread_max": L.SPREAD_MAX,
        "cloud_slower_ratio": L.CLOUD_SLOWER_RATIO,
        "cloud_check_min_ms": L.CLOUD_CHECK_MIN_MS,
    }
