"""The latency model against a real link: uplink traces, measured bytes, model-vs-measurement.

Paper section IV-E charges an offloaded sample ``edge + bytes * 8 / rate + rtt + cloud`` at a
constant uplink rate (:func:`eeoffload.latency.offloaded_sample_ms`). This module adds

- a time-varying uplink (:class:`Trace`): a piecewise-constant rate, replayed cyclically, and the
  transfer time of a payload that starts at time t (:func:`transfer_ms`: the bits are integrated
  over the trace's segments);
- the per-exit latency of each batch on a trace (:func:`trace_exit_ms`), which
  :func:`eeoffload.offload.missed_deadline_probability` takes as a (batches, exits) array;
- the comparison of modelled and measured latencies per exit (:func:`model_vs_measured`).

Pure functions over numpy arrays and DataFrames; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from eeoffload import latency


class TraceError(ValueError):
    """A trace table that cannot be replayed (columns, numbers, order)."""


@dataclass(frozen=True)
class Trace:
    """Uplink rate ``mbps[i]`` from ``time_s[i]`` to ``time_s[i+1]``; the last rate holds for as long
    as the interval before it (1 s for a one-row trace); then the trace starts over (period)."""

    time_s: np.ndarray
    mbps: np.ndarray

    @property
    def ends(self) -> np.ndarray:
        last = self.time_s[-1] - self.time_s[-2] if len(self.time_s) > 1 else 1.0
        return np.append(self.time_s[1:], self.time_s[-1] + last)

    @property
    def period_s(self) -> float:
        return float(self.ends[-1])

    @property
    def mean_mbps(self) -> float:
        """Time-weighted mean rate over one period."""
        return float(np.sum(self.mbps * (self.ends - self.time_s)) / self.period_s)


def constant_trace(mbps: float) -> Trace:
    return Trace(np.array([0.0]), np.array([float(mbps)]))


def parse_trace(frame: pd.DataFrame) -> Trace:
    """A trace from a table with columns ``time_s`` and ``mbps``: times start at 0 and strictly
    increase, rates are finite and > 0; TraceError (one line) otherwise."""
    missing = [c for c in ("time_s", "mbps") if c not in frame.columns]
    if missing:
        raise TraceError(f"missing column(s) {', '.join(missing)}; expected header time_s,mbps")
    if len(frame) == 0:
        raise TraceError("no rows")
    values = {}
    for column in ("time_s", "mbps"):
        numbers = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(numbers))
        if len(bad):
            raise TraceError(f"row {int(bad[0]) + 1}: {column} = {frame[column].iloc[bad[0]]!r} is not a finite number")
        values[column] = numbers
    t, r = values["time_s"], values["mbps"]
    if t[0] != 0:
        raise TraceError(f"the first time_s must be 0, got {t[0]:g}")
    step = np.flatnonzero(np.diff(t) <= 0)
    if len(step):
        i = int(step[0])
        raise TraceError(f"row {i + 2}: time_s must increase strictly ({t[i]:g} then {t[i + 1]:g})")
    low = np.flatnonzero(r <= 0)
    if len(low):
        raise TraceError(f"row {int(low[0]) + 1}: mbps = {r[low[0]]:g}; allowed: a number > 0")
    return Trace(t, r)


def rate_at(trace: Trace, t_s: float) -> float:
    """The rate in force at time ``t_s`` (cyclic)."""
    t = float(t_s) % trace.period_s
    return float(trace.mbps[np.searchsorted(trace.time_s, t, side="right") - 1])


def transfer_ms(trace: Trace, start_s: float, nbytes: float) -> float:
    """Time to send ``nbytes`` starting at ``start_s`` over the (cyclic) trace: the bits are
    integrated over the segments, each at its own rate (section IV-E's bytes*8/rate, per segment)."""
    bits, t = latency.upload_bits(nbytes), float(start_s)
    ends, period = trace.ends, trace.period_s
    for _ in range(100_000):
        base = np.floor(t / period) * period
        i = int(np.searchsorted(trace.time_s, t - base, side="right") - 1)
        rate = trace.mbps[i] * 1e6
        span = base + ends[i] - t
        if bits <= rate * span:
            return (t + bits / rate - start_s) * 1e3
        bits -= rate * span
        t = base + ends[i]
    raise TraceError("payload too large for the trace (more than 100000 segments)")


def batch_times_s(trace: Trace, n_batches: int) -> np.ndarray:
    """Start time of each batch: evenly spaced over one period, so that every batch samples the
    trace once and the batches together see its whole range."""
    return np.arange(n_batches, dtype=np.float64) * trace.period_s / max(n_batches, 1)


def trace_exit_ms(trace: Trace, n_batches: int, device_ms_to_exit: Sequence[float], offload_edge_ms: float,
                  upload_bytes: float, rtt_ms: float, cloud_ms: float) -> np.ndarray:
    """(G, n_exits) per-exit latency of each batch: the device times, then the offloaded time with
    the upload starting at the batch's time (:func:`batch_times_s`) on the trace."""
    rows = []
    for t in batch_times_s(trace, n_batches):
        offloaded = latency.offload_path_ms(offload_edge_ms, transfer_ms(trace, t, upload_bytes), rtt_ms, cloud_ms)
        rows.append(latency.per_exit_ms(device_ms_to_exit, offloaded))
    return np.array(rows, dtype=np.float64).reshape(n_batches, len(device_ms_to_exit) + 1)


def model_vs_measured(records: pd.DataFrame, exit_ms: Sequence[float]) -> pd.DataFrame:
    """Per exit (1..n) and for all offloaded samples: count, measured mean end-to-end latency
    (``e2e_ms`` of ``records``, column ``exit`` 1-based), modelled latency (``exit_ms``) and the
    model's error (model - measured) in ms and in % of the measurement."""
    rows = []
    for k, modelled in enumerate(exit_ms, start=1):
        part = records.loc[records["exit"] == k, "e2e_ms"]
        measured = float(part.mean()) if len(part) else float("nan")
        label = "offloaded" if k == len(exit_ms) else f"exit {k} (device)"
        rows.append({"exit": k, "path": label, "n": int(len(part)), "measured_ms": measured,
                     "modelled_ms": float(modelled), "error_ms": float(modelled) - measured,
                     "error_pct": (float(modelled) - measured) / measured * 100 if measured else float("nan")})
    return pd.DataFrame(rows)


def synthetic_wifi_trace(seed: int = 0, seconds: int = 60, mean_mbps: float = 18.8, step_s: float = 1.0) -> Trace:
    """A Wi-Fi-like uplink around ``mean_mbps``: an AR(1) process in log-rate (coefficient 0.8,
    innovation s.d. 0.15 per step) plus two fades to 35-50 % of the rate lasting 3 steps each, then
    scaled so that the time-weighted mean is exactly ``mean_mbps`` (the paper's 18.8 Mbps average).
    The shipped configs/traces/wifi_18.8.csv is ``synthetic_wifi_trace()`` rounded to 0.01 Mbps."""
    rng = np.random.default_rng(seed)
    n = int(seconds / step_s)
    log_rate = np.zeros(n)
    for i in range(1, n):
        log_rate[i] = 0.8 * log_rate[i - 1] + rng.normal(0.0, 0.15)
    rate = np.exp(log_rate)
    for start in rng.choice(np.arange(2, n - 4), size=2, replace=False):
        rate[start:start + 3] *= rng.uniform(0.35, 0.5)
    rate *= mean_mbps / rate.mean()
    return Trace(np.arange(n) * step_s, rate)
