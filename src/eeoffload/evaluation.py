"""The evaluation protocol of one trained network (paper sections IV-B..IV-E): for conventional
(softmax, T = 1) and calibrated (a fitted calibrator per exit, :mod:`eeoffload.calibrators`)
decisions, the p_tar grid of device metrics and batch outage, the missed-deadline curves, and the
headline numbers at the paper's p_tar values.

Pure: arrays and settings in, DataFrames out (the evaluate and trajectory stages write them).
Formulas: :mod:`eeoffload.offload`; the metrics' definitions: docs/metrics.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from eeoffload import calibrators as cb
from eeoffload import offload
from eeoffload import statistics as stats
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


#: Columns of the offload table, in order: the original eleven (unchanged meaning), then the counts
#: and population intervals (docs/metrics.md, "Uncertainty").
OFFLOAD_COLUMNS = ["calibration", "p_tar", "p_device", "conf_device", "acc_device", "acc_total", "outage",
                   "n_batches", "outage_resampled", "outage_low", "outage_high",
                   "n_samples", "n_device", "p_device_lo", "p_device_hi", "acc_device_lo", "acc_device_hi",
                   "acc_total_lo", "acc_total_hi", "n_batches_empty", "n_outage_batches", "outage_lo", "outage_hi"]
#: Columns of the deadline table, in order.
DEADLINE_COLUMNS = ["calibration", "p_tar", "t_tar_ms", "missed_deadline", "n_batches", "n_missed_batches",
                    "missed_lo", "missed_hi"]
_INT_COLUMNS = ("n_batches", "n_samples", "n_device", "n_batches_empty", "n_outage_batches", "n_missed_batches")


@dataclass(frozen=True)
class RunMetrics:
    offload: pd.DataFrame  # OFFLOAD_COLUMNS
    deadline: pd.DataFrame  # DEADLINE_COLUMNS
    headline: dict[str, dict[str, float | None]]  # {calibration: {"p_device@0.85": ...}}


def _json_number(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 6)


def exit_calibrators(calibrators: Sequence[cb.Calibrator | float]) -> list[cb.Calibrator]:
    """Fitted per-exit calibrators; a number stands for temperature scaling with that T (eq. 2)."""
    return [cb.Temperature(float(c)) if isinstance(c, (int, float)) else c for c in calibrators]


def evaluate_run(logits: np.ndarray, labels: np.ndarray, calibrators: Sequence[cb.Calibrator | float],
                 exit_ms: np.ndarray, settings: EvaluationSettings,
                 headline_p_tar: tuple[float, ...] = HEADLINE_P_TAR) -> RunMetrics:
    """Both calibrations of one network's test logits ``(n_exits, N, C)``, conventional (softmax,
    eq. 1) and calibrated (the fitted per-exit ``calibrators``, any method of
    :data:`eeoffload.calibrators.METHODS`; numbers are temperatures): the p_tar grid, the
    deadline curves (per-sample latency ``exit_ms`` by exit) and the headline numbers (at
    ``headline_p_tar``, plus the mean p_device over the grid).

    Uncertainty (docs/metrics.md): ``p_device_lo/hi``, ``acc_total_lo/hi`` (Wilson on N),
    ``acc_device_lo/hi`` (Wilson on ``n_device``), ``outage_lo/hi`` (Clopper-Pearson on
    ``n_outage_batches`` of ``n_batches`` non-empty batches) and ``missed_lo/hi`` (Clopper-Pearson
    on ``n_missed_batches`` of ``n_batches``) are 95% population intervals; ``outage_low/high`` is
    the spread over re-batchings of the test set, not a confidence interval."""
    s = settings
    n = len(labels)
    order = offload.sample_order(n, s.batch_order, s.seed)
    orders = offload.resample_orders(n, s.resamples, s.seed) if s.resamples > 0 else None
    headline_p = np.array(headline_p_tar)
    offload_tables, deadline_tables, headline = [], [], {}
    fitted = exit_calibrators(calibrators)
    for name in CALIBRATIONS:
        cals = fitted if name == "calibrated" else [cb.Identity() for _ in range(logits.shape[0])]
        conf, correct = cb.exit_top_labels(cals, logits, labels)

        def grid_metrics(grid: np.ndarray) -> dict[str, np.ndarray]:
            dev = offload.device_metrics(conf, correct, grid)
            out = offload.outage_counts(conf, correct, grid, order, s.batch_size)
            columns = {k: dev[k] for k in ("p_device", "conf_device", "acc_device", "acc_total")}
            columns["outage"], columns["n_batches"] = out.outage, out.n_counted
            if orders is not None:
                mean, low, high = offload.resampled_outage(conf, correct, grid, orders, s.batch_size)
            else:
                mean = low = high = np.full(len(grid), np.nan)
            columns |= {"outage_resampled": mean, "outage_low": low, "outage_high": high}
            columns["n_samples"], columns["n_device"] = dev["n_samples"], dev["n_device"]
            columns["p_device_lo"], columns["p_device_hi"] = stats.wilson_interval(dev["n_device"], dev["n_samples"])
            columns["acc_device_lo"], columns["acc_device_hi"] = stats.wilson_interval(dev["n_device_correct"],
                                                                                       dev["n_device"])
            columns["acc_total_lo"], columns["acc_total_hi"] = stats.wilson_interval(dev["n_correct"],
                                                                                     dev["n_samples"])
            columns["n_batches_empty"], columns["n_outage_batches"] = out.n_empty, out.n_outage
            columns["outage_lo"], columns["outage_hi"] = stats.clopper_pearson_interval(out.n_outage, out.n_counted)
            return columns

        table = pd.DataFrame({"calibration": name, "p_tar": s.p_tar, **grid_metrics(s.p_tar)})
        offload_tables.append(table[OFFLOAD_COLUMNS].astype({c: np.int64 for c in _INT_COLUMNS if c in table}))
        n_missed, n_batches = offload.missed_deadline_counts(conf, correct, s.deadline_p_tar, s.t_tar_ms, exit_ms,
                                                             order, s.batch_size)
        missed = n_missed / n_batches if n_batches else np.full(n_missed.shape, np.nan)
        missed_lo, missed_hi = stats.clopper_pearson_interval(n_missed, np.full(n_missed.shape, n_batches))
        deadline_tables.append(pd.DataFrame({
            "calibration": name,
            "p_tar": np.repeat(s.deadline_p_tar, len(s.t_tar_ms)),
            "t_tar_ms": np.tile(s.t_tar_ms, len(s.deadline_p_tar)),
            "missed_deadline": missed.ravel(),
            "n_batches": np.int64(n_batches),
            "n_missed_batches": n_missed.ravel().astype(np.int64),
            "missed_lo": missed_lo.ravel(),
            "missed_hi": missed_hi.ravel(),
        })[DEADLINE_COLUMNS])
        numbers: dict[str, float | None] = {}
        at_headline = grid_metrics(headline_p)
        for key in ("p_device", "acc_device", "acc_total", "outage", "outage_resampled"):
            for j, pt in enumerate(headline_p_tar):
                numbers[f"{key}@{pt:g}"] = _json_number(at_headline[key][j])
        for key in ("p_device_lo", "p_device_hi", "acc_device_lo", "acc_device_hi", "acc_total_lo", "acc_total_hi",
                    "outage_lo", "outage_hi"):
            for j, pt in enumerate(headline_p_tar):
                numbers[f"{key}@{pt:g}"] = _json_number(at_headline[key][j])
        numbers["p_device_mean"] = _json_number(float(np.mean(table["p_device"])))
        for j, pt in enumerate(s.deadline_p_tar):
            row = missed[j]
            numbers[f"min_missed_deadline@{pt:g}"] = None if np.isnan(row).all() else _json_number(np.nanmin(row))
        headline[name] = numbers
    return RunMetrics(pd.concat(offload_tables, ignore_index=True), pd.concat(deadline_tables, ignore_index=True),
                      headline)


# --------------------------------------------------------------------------- over training seeds

#: Rate columns of the two tables that are averaged over seeds (with the seeds' spread and t-interval).
OFFLOAD_RATES = ["p_device", "conf_device", "acc_device", "acc_total", "outage", "outage_resampled", "outage_low",
                 "outage_high"]
DEADLINE_RATES = ["missed_deadline"]
#: Population intervals recomputed on the counts pooled over seeds: column -> (interval, k, n), k and
#: n as functions of a per-seed table (Wilson for sample proportions, Clopper-Pearson for batch counts).
_POOLED = {
    "p_device": ("wilson", lambda t: t["n_device"], lambda t: t["n_samples"]),
    "acc_device": ("wilson", lambda t: np.round(t["acc_device"].fillna(0) * t["n_device"]), lambda t: t["n_device"]),
    "acc_total": ("wilson", lambda t: np.round(t["acc_total"] * t["n_samples"]), lambda t: t["n_samples"]),
    "outage": ("cp", lambda t: t["n_outage_batches"], lambda t: t["n_batches"]),
}
_BOUNDS = {"p_device": ("p_device_lo", "p_device_hi"), "acc_device": ("acc_device_lo", "acc_device_hi"),
           "acc_total": ("acc_total_lo", "acc_total_hi"), "outage": ("outage_lo", "outage_hi")}


def _pooled_interval(kind: str, k: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return stats.wilson_interval(k, n) if kind == "wilson" else stats.clopper_pearson_interval(k, n)


def aggregate_offload(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """The offload tables of one variant's seeds (one per seed, :data:`OFFLOAD_COLUMNS`) as one table
    per (calibration, p_tar): the rates are means over the seeds where defined, with
    ``<rate>_seed_min/_max`` (spread), ``<rate>_seed_lo/_hi`` (t-interval, >= 3 seeds) and
    ``<rate>_seed_n`` (:func:`eeoffload.statistics.aggregate_over_seeds`); the counts are totals over
    the seeds; the population intervals (``p_device_lo`` ...) are Wilson / Clopper-Pearson 95% on
    those pooled counts: the uncertainty of the test sample, given the trained networks. One seed
    gives back its own numbers (seed columns added). Rules: docs/metrics.md, "Over seeds"."""
    keys = ["calibration", "p_tar"]
    out = stats.aggregate_over_seeds(tables, keys, OFFLOAD_RATES)
    pooled = pd.concat(tables, ignore_index=True)
    counts = ["n_batches", "n_samples", "n_device", "n_batches_empty", "n_outage_batches"]
    extra = {}
    for column, (kind, k_of, n_of) in _POOLED.items():
        extra[f"_k_{column}"], extra[f"_n_{column}"] = k_of(pooled).to_numpy(float), n_of(pooled).to_numpy(float)
    sums = pooled.assign(**extra).groupby(keys, sort=False)[counts + list(extra)].sum().reset_index()
    out = out.merge(sums, on=keys, how="left", validate="one_to_one")
    for column, (kind, _, _) in _POOLED.items():
        lo, hi = _pooled_interval(kind, out[f"_k_{column}"].to_numpy(), out[f"_n_{column}"].to_numpy())
        out[_BOUNDS[column][0]], out[_BOUNDS[column][1]] = lo, hi
    out = out.drop(columns=list(extra)).astype({c: np.int64 for c in counts})
    return out[OFFLOAD_COLUMNS + [c for c in out.columns if c not in OFFLOAD_COLUMNS]]


def aggregate_deadline(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """The deadline tables of one variant's seeds as one: ``missed_deadline`` averaged over seeds
    (with its seed columns), the batch counts totalled, ``missed_lo/_hi`` Clopper-Pearson 95% on the
    pooled counts (as :func:`aggregate_offload`)."""
    keys = ["calibration", "p_tar", "t_tar_ms"]
    out = stats.aggregate_over_seeds(tables, keys, DEADLINE_RATES)
    sums = pd.concat(tables, ignore_index=True).groupby(keys, sort=False)[["n_batches", "n_missed_batches"]].sum()
    out = out.merge(sums.reset_index(), on=keys, how="left", validate="one_to_one")
    out["missed_lo"], out["missed_hi"] = stats.clopper_pearson_interval(out["n_missed_batches"].to_numpy(),
                                                                        out["n_batches"].to_numpy())
    out = out.astype({"n_batches": np.int64, "n_missed_batches": np.int64})
    return out[DEADLINE_COLUMNS + [c for c in out.columns if c not in DEADLINE_COLUMNS]]


def aggregate_headline(headlines: list[dict[str, dict[str, float | None]]]) -> dict[str, dict[str, float | None]]:
    """The headline numbers of one variant's seeds as one dict of the same shape: each key is the
    mean over the seeds where it is defined, with ``<key>_seed_lo/_hi`` (t-interval, None below 3
    seeds) and ``<key>_seed_min/_max``; plus ``n_seeds``."""
    out: dict[str, dict[str, float | None]] = {}
    for calibration in headlines[0]:
        numbers: dict[str, float | None] = {}
        for key in headlines[0][calibration]:
            values = [h[calibration].get(key) for h in headlines]
            t = stats.t_interval([np.nan if v is None else v for v in values])
            numbers[key] = _json_number(t["mean"])
            for part in ("lo", "hi", "min", "max"):
                numbers[f"{key}_seed_{part}"] = _json_number(t[part])
        numbers["n_seeds"] = len(headlines)
        out[calibration] = numbers
    return out


def aggregate_runs(runs: list[RunMetrics]) -> RunMetrics:
    """One variant's :class:`RunMetrics` over its training seeds (in seed order): the three
    aggregates above, with the headline's population bounds (``acc_device_lo@0.85`` ...) taken from
    the aggregated grid (pooled counts) where its p_tar is on the grid, else (several seeds) None."""
    if not runs:
        raise ValueError("aggregate_runs needs at least one run")
    offload_table = aggregate_offload([r.offload for r in runs])
    headline = aggregate_headline([r.headline for r in runs])
    grid = offload_table["p_tar"].to_numpy(dtype=float)
    for calibration, numbers in headline.items():
        rows = offload_table[offload_table["calibration"] == calibration]
        for key in [k for k in numbers if "_seed_" not in k and ("_lo@" in k or "_hi@" in k)]:
            column, _, p = key.partition("@")
            at = np.flatnonzero(np.isclose(rows["p_tar"].to_numpy(dtype=float), float(p), atol=1e-9)) \
                if len(grid) else []
            if len(at):
                numbers[key] = _json_number(float(rows[column].iloc[at[0]]))
            else:  # p_tar off the grid: a single run keeps its own bound; pooled counts are not at hand
                numbers[key] = runs[0].headline[calibration][key] if len(runs) == 1 else None
            for part in ("lo", "hi", "min", "max"):
                numbers.pop(f"{key}_seed_{part}", None)
    return RunMetrics(offload_table, aggregate_deadline([r.deadline for r in runs]), headline)
