"""The evaluation protocol of one trained network (paper sections IV-B..IV-E): for conventional
(T = 1) and calibrated (fitted T per exit) decisions, the p_tar grid of device metrics and batch
outage, the missed-deadline curves, and the headline numbers at the paper's p_tar values.

Pure: arrays and settings in, DataFrames out (the evaluate and trajectory stages write them).
Formulas: :mod:`eeoffload.offload`; the metrics' definitions: docs/metrics.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from eeoffload import offload
from eeoffload.paper import CALIBRATIONS, HEADLINE_P_TAR


@dataclass(frozen=True)
class EvaluationSettings:
    """The ``evaluate`` params: grids, batching and the re-batching spread."""

    p_tar: np.ndarray  # grid of target confidences
    deadline_p_tar: list[float]  # p_tar values of the missed-deadline curves
    t_tar_ms: np.ndarray  # grid of deadlines
    batch_size: int
    batch_order: str  # offload.BATCH_ORDERS
    resamples: int  # re-batchings for the outage spread (0: none)
    seed: int


@dataclass(frozen=True)
class RunMetrics:
    offload: pd.DataFrame  # calibration, p_tar, p_device, conf_device, acc_device, acc_total, outage, ...
    deadline: pd.DataFrame  # calibration, p_tar, t_tar_ms, missed_deadline
    headline: dict[str, dict[str, float | None]]  # {calibration: {"p_device@0.85": ...}}


def _json_number(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 6)


def evaluate_run(logits: np.ndarray, labels: np.ndarray, temperatures: list[float], exit_ms: np.ndarray,
                 settings: EvaluationSettings, headline_p_tar: tuple[float, ...] = HEADLINE_P_TAR) -> RunMetrics:
    """Both calibrations of one network's test logits ``(n_exits, N, C)``: the p_tar grid, the
    deadline curves (per-sample latency ``exit_ms`` by exit) and the headline numbers (at
    ``headline_p_tar``, plus the mean p_device over the grid)."""
    s = settings
    n = len(labels)
    order = offload.sample_order(n, s.batch_order, s.seed)
    orders = offload.resample_orders(n, s.resamples, s.seed) if s.resamples > 0 else None
    headline_p = np.array(headline_p_tar)
    offload_tables, deadline_tables, headline = [], [], {}
    for name in CALIBRATIONS:
        temps = temperatures if name == "calibrated" else [1.0] * logits.shape[0]
        conf, correct = offload.exit_confidence(logits, labels, temps)

        def grid_metrics(grid: np.ndarray) -> dict[str, np.ndarray]:
            columns = offload.device_metrics(conf, correct, grid)
            columns["outage"], columns["n_batches"] = offload.outage_probability(conf, correct, grid, order,
                                                                                s.batch_size)
            if orders is not None:
                mean, low, high = offload.resampled_outage(conf, correct, grid, orders, s.batch_size)
            else:
                mean = low = high = np.full(len(grid), np.nan)
            columns |= {"outage_resampled": mean, "outage_low": low, "outage_high": high}
            return columns

        table = pd.DataFrame({"calibration": name, "p_tar": s.p_tar, **grid_metrics(s.p_tar)})
        offload_tables.append(table.astype({"n_batches": np.int64}))
        missed = offload.missed_deadline_probability(conf, correct, s.deadline_p_tar, s.t_tar_ms, exit_ms, order,
                                                     s.batch_size)
        deadline_tables.append(pd.DataFrame({
            "calibration": name,
            "p_tar": np.repeat(s.deadline_p_tar, len(s.t_tar_ms)),
            "t_tar_ms": np.tile(s.t_tar_ms, len(s.deadline_p_tar)),
            "missed_deadline": missed.ravel(),
        }))
        numbers: dict[str, float | None] = {}
        at_headline = grid_metrics(headline_p)
        for key in ("p_device", "acc_device", "acc_total", "outage", "outage_resampled"):
            for j, pt in enumerate(headline_p_tar):
                numbers[f"{key}@{pt:g}"] = _json_number(at_headline[key][j])
        numbers["p_device_mean"] = _json_number(float(np.mean(table["p_device"])))
        for j, pt in enumerate(s.deadline_p_tar):
            row = missed[j]
            numbers[f"min_missed_deadline@{pt:g}"] = None if np.isnan(row).all() else _json_number(np.nanmin(row))
        headline[name] = numbers
    return RunMetrics(pd.concat(offload_tables, ignore_index=True), pd.concat(deadline_tables, ignore_index=True),
                      headline)
