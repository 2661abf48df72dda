"""The paper's offloading model and metrics (sections III and IV-B..IV-E), vectorised over p_tar.

Conventions. Exits are indexed 0..n_exits-1 here: 0..n_exits-2 are the side branches in trunk
order (exits 1..n-1 of the logits file) and n_exits-1 is the final exit in the cloud, i.e. the
sample was *offloaded*. Per-exit inputs are arrays of shape (n_exits, N):
``confidence[k, s] = max softmax(z_k(s) / T_k)`` and ``correct[k, s] = argmax z_k(s) == label(s)``.
``p_tar`` is a 1-D grid (any order); results come back in the grid's order.

Decision rule (section III): a sample leaves at the FIRST side branch k whose confidence is
>= p_tar, otherwise it is offloaded and the final exit classifies it. It is written once, here:
:func:`exit_bounds` (the counting core: with m_k = max_{j<=k} conf_j, exit k is taken exactly for
p_tar in (m_{k-1}, m_k], an interval of the sorted grid), :func:`first_confident_exit` (exit per
sample and threshold) and :func:`is_confident` (one exit, one sample); :mod:`eeoffload.certify` and
:mod:`eeoffload.partition` call them (``tests/test_decision_rule_once.py``). Batch metrics count,
per batch (:mod:`eeoffload.batches`), how many samples take each exit at every grid point with
difference arrays over those intervals (one bincount + cumsum), which makes the R re-batchings of
the outage interval cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from eeoffload.batches import BATCH_ORDERS, batch_of_sample, resample_orders, sample_order  # noqa: F401 (re-exported)
from eeoffload.temperature import as_array, softmax

def exit_confidence(
    exit_logits: Any, labels: Any, temperatures: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct), each (n_exits, N): max softmax(z_k / T_k) (eq. 2) and correctness."""
    logits = as_array(exit_logits)
    y = as_array(labels).astype(np.int64)
    if len(temperatures) != logits.shape[0]:
        raise ValueError(f"{len(temperatures)} temperatures for {logits.shape[0]} exits")
    confidence = np.empty(logits.shape[:2], dtype=np.float64)
    correct = np.empty(logits.shape[:2], dtype=bool)
    for k, temperature in enumerate(temperatures):
        probs = softmax(logits[k], temperature)
        confidence[k] = probs.max(axis=1)
        correct[k] = probs.argmax(axis=1) == y
    return confidence, correct


def _check(confidence: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    conf = np.asarray(confidence, dtype=np.float64)
    corr = np.asarray(correct, dtype=bool)
    if conf.ndim != 2 or conf.shape != corr.shape or conf.shape[0] < 1:
        raise ValueError(f"confidence and correct must be (n_exits, N), got {conf.shape}, {corr.shape}")
    return conf, corr


def _sorted(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The grid in ascending order and each grid point's rank in it (stable)."""
    ascending = np.argsort(grid, kind="stable")
    rank = np.empty_like(ascending)
    rank[ascending] = np.arange(len(grid))
    return grid[ascending], rank


def is_confident(confidence: Any, threshold: Any) -> Any:
    """Section III's test at one exit: the exit keeps the sample iff its confidence
    max softmax(z_k / T_k) (eq. 2) is >= the exit's threshold (elementwise; a bool for scalars).
    :mod:`eeoffload.partition` decides one sample at a time with it; the vectorised rule is
    :func:`exit_bounds` / :func:`first_confident_exit`, tested equal to it."""
    return np.greater_equal(confidence, threshold)


def exit_bounds(side_confidence: Any, sorted_grid: Any) -> np.ndarray:
    """THE counting core of the decision rule (section III, with the confidence of eq. 2; the
    metrics of eq. 3 and section IV count on it): (n_side + 2, N) int64 grid-index bounds such that
    sample s leaves at exit k (n_side: offloaded, the final exit) for exactly the indices i of the
    ascending threshold grid with ``bounds[k, s] <= i < bounds[k + 1, s]``.

    A sample leaves at the first side branch whose confidence is >= the shared threshold; with
    m_k = max_{j<=k} conf_j that is the first k with m_k >= lambda, so the grid points kept on the
    device by exits 0..k are those <= m_k: ``bounds[k + 1] = searchsorted(grid, m_k, "right")``.
    """
    side = np.asarray(side_confidence, dtype=np.float64)
    grid = np.asarray(sorted_grid, dtype=np.float64)
    n_side, n = side.shape
    running_max = np.maximum.accumulate(side, axis=0) if n_side else np.empty((0, n))
    return np.concatenate([
        np.zeros((1, n), np.int64),
        np.searchsorted(grid, running_max, side="right").reshape(n_side, n),
        np.full((1, n), len(grid), np.int64),
    ])


def first_confident_exit(side_confidence: Any, p_tar: Any) -> np.ndarray:
    """(N, P) exit index per sample and threshold: the first side branch k with conf_k >= its
    threshold, n_side (the final exit, i.e. offloaded) when none is confident enough (section III).

    ``p_tar``: a (P,) grid shared by every side branch (any order; through :func:`exit_bounds`), or
    (P, n_side) threshold vectors, one threshold per side branch (through :func:`is_confident`)."""
    side = np.asarray(side_confidence, dtype=np.float64)
    thresholds = np.asarray(p_tar, dtype=np.float64)
    n_side, n = side.shape
    if thresholds.ndim == 2:
        if thresholds.shape[1] != n_side:
            raise ValueError(f"thresholds must be (P, {n_side}), got {thresholds.shape}")
        confident = is_confident(side[None, :, :], thresholds[:, :, None])  # (P, n_side, N)
        first = np.where(confident.any(axis=1), confident.argmax(axis=1), n_side)
        return first.T.astype(np.int64)
    sorted_grid, rank = _sorted(np.atleast_1d(thresholds))
    upper = exit_bounds(side, sorted_grid)[1:-1]  # (n_side, N): exit > k at sorted index i >= upper[k]
    return (upper[:, :, None] <= rank[None, None, :]).sum(axis=0, dtype=np.int64)


def device_metrics(confidence: Any, correct: Any, p_tar: Any) -> dict[str, np.ndarray]:
    """Per p_tar (section IV-B, IV-C): ``p_device`` (fraction classified on the device),
    ``conf_device`` and ``acc_device`` (mean confidence and accuracy of those samples, NaN if
    there are none) and ``acc_total`` (accuracy over all samples, offloaded ones by the final exit);
    with the counts behind them, int64: ``n_samples`` (N), ``n_device``, ``n_device_correct`` (right
    among the device samples) and ``n_correct`` (right among all N).
    """
    conf, corr = _check(confidence, correct)
    n_exits, n = conf.shape
    exit_index = first_confident_exit(conf[:-1], p_tar)  # (N, P)
    on_device = exit_index < n_exits - 1
    chosen_conf = np.take_along_axis(conf.T, exit_index, axis=1)
    chosen_correct = np.take_along_axis(corr.T, exit_index, axis=1)
    n_device = on_device.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf_device = np.where(on_device, chosen_conf, 0.0).sum(axis=0) / n_device
        acc_device = (chosen_correct & on_device).sum(axis=0) / n_device
    nan = np.full(len(n_device), np.nan)
    n_correct = chosen_correct.sum(axis=0)
    return {
        "p_device": n_device / n if n else nan,
        "conf_device": np.where(n_device > 0, conf_device, np.nan),
        "acc_device": np.where(n_device > 0, acc_device, np.nan),
        "acc_total": n_correct / n if n else nan,
        # The counts behind the fractions (for the binomial intervals of eeoffload.statistics).
        "n_samples": np.full(len(n_device), n, dtype=np.int64),
        "n_device": n_device.astype(np.int64),
        "n_device_correct": (chosen_correct & on_device).sum(axis=0).astype(np.int64),
        "n_correct": n_correct.astype(np.int64),
    }


@dataclass(frozen=True)
class BatchExitCounts:
    """Per batch (G), exit (n_exits) and p_tar (P, grid order as given): samples that take the
    exit, and those of them classified correctly."""

    taken: np.ndarray  # (G, n_exits, P) int64
    correct: np.ndarray  # (G, n_exits, P) int64

    @property
    def device(self) -> np.ndarray:
        return self.taken[:, :-1].sum(axis=1)

    @property
    def device_correct(self) -> np.ndarray:
        return self.correct[:, :-1].sum(axis=1)

    @property
    def total_correct(self) -> np.ndarray:
        return self.correct.sum(axis=1)


def batch_exit_counts(
    confidence: Any, correct: Any, p_tar: Any, batch: np.ndarray, n_batches: int
) -> BatchExitCounts:
    """Count exits per batch for every p_tar. ``batch`` is (N,) or (R, N) batch indices (-1: in no
    batch); with (R, N) the batches of row r are numbered r*n_batches + b."""
    conf, corr = _check(confidence, correct)
    sorted_grid, rank = _sorted(np.atleast_1d(np.asarray(p_tar, dtype=np.float64)))
    n_exits, n = conf.shape
    n_grid = len(sorted_grid)

    bounds = exit_bounds(conf[:-1], sorted_grid)  # exit k on sorted grid points [bounds[k], bounds[k+1])

    batch = np.atleast_2d(np.asarray(batch, dtype=np.int64))
    n_rows = batch.shape[0]
    n_groups = n_rows * n_batches
    width = n_grid + 1
    keep = batch >= 0
    group = (batch + np.arange(n_rows)[:, None] * n_batches)[keep]  # (kept,)
    sample = np.broadcast_to(np.arange(n), batch.shape)[keep]

    def interval_counts(k: int, mask: np.ndarray) -> np.ndarray:
        g, s = group[mask[sample]], sample[mask[sample]]
        size = n_groups * width
        diff = np.bincount(g * width + bounds[k, s], minlength=size) - np.bincount(
            g * width + bounds[k + 1, s], minlength=size
        )
        return diff.reshape(n_groups, width).cumsum(axis=1)[:, :-1]

    everyone = np.ones(n, dtype=bool)
    taken = np.stack([interval_counts(k, everyone) for k in range(n_exits)], axis=1)
    right = np.stack([interval_counts(k, corr[k]) for k in range(n_exits)], axis=1)
    return BatchExitCounts(taken[:, :, rank], right[:, :, rank])


def _outage_counts_from(counts: BatchExitCounts, p_tar: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(R, P) outage batches and (R, P) counted (non-empty) batches from per-batch counts."""
    device = counts.device.reshape(n_rows, -1, len(p_tar))
    device_correct = counts.device_correct.reshape(n_rows, -1, len(p_tar))
    counted = device > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        below = device_correct / device < p_tar
    return (below & counted).sum(axis=1), counted.sum(axis=1)


def _outage_from_counts(counts: BatchExitCounts, p_tar: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(R, P) outage fraction and (R, P) counted batches from per-batch counts."""
    n_outage, n_counted = _outage_counts_from(counts, p_tar, n_rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        outage = np.where(n_counted > 0, n_outage / n_counted, np.nan)
    return outage, n_counted


@dataclass(frozen=True)
class OutageCounts:
    """Per p_tar (grid order): the batch counts behind the outage probability (int64, shape (P,))."""

    n_outage: np.ndarray  # non-empty batches whose device accuracy is < p_tar
    n_counted: np.ndarray  # batches with at least one device-classified sample (the denominator)
    n_empty: np.ndarray  # batches with no device-classified sample (reported, not in the denominator)

    @property
    def outage(self) -> np.ndarray:
        """n_outage / n_counted, NaN where no batch counts."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n_counted > 0, self.n_outage / np.maximum(self.n_counted, 1), np.nan)


def outage_counts(confidence: Any, correct: Any, p_tar: Any, order: Any, batch_size: int) -> OutageCounts:
    """The counts of :func:`outage_probability`: outage batches, non-empty (counted) batches and
    empty batches (no device-classified sample) per p_tar; n_counted + n_empty = the full batches."""
    grid = np.atleast_1d(np.asarray(p_tar, dtype=np.float64))
    batch, n_batches = batch_of_sample(order, batch_size)
    counts = batch_exit_counts(confidence, correct, grid, batch, n_batches)
    n_outage, n_counted = _outage_counts_from(counts, grid, 1)
    n_outage, n_counted = n_outage[0].astype(np.int64), n_counted[0].astype(np.int64)
    return OutageCounts(n_outage, n_counted, (n_batches - n_counted).astype(np.int64))


def outage_probability(
    confidence: Any, correct: Any, p_tar: Any, order: Any, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Inference outage probability (section IV-D) per p_tar, and the number of batches counted.

    Samples in ``order`` are cut into consecutive batches of ``batch_size`` (last partial batch
    dropped). A batch is an outage if the accuracy of its device-classified samples is < p_tar;
    batches with no device-classified sample are not in the denominator (neither outage nor "no
    outage"; :func:`outage_counts` reports how many there are). Outage is NaN if no batch counts.
    """
    c = outage_counts(confidence, correct, p_tar, order, batch_size)
    return c.outage, c.n_counted


def resampled_outage(
    confidence: Any, correct: Any, p_tar: Any, orders: np.ndarray, batch_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outage over R re-batchings (rows of ``orders``): the mean and the 2.5% / 97.5% percentiles
    per p_tar, over the re-batchings where at least one batch counts (NaN if none).

    This is the SPREAD OVER RE-BATCHINGS of one test set, not a confidence interval: it says how
    much the outage moves when the same samples are cut into other batches, nothing about the
    population. The population interval is the Clopper-Pearson interval on the outage batches
    (:func:`outage_counts`, :func:`eeoffload.statistics.clopper_pearson_interval`)."""
    grid = np.atleast_1d(np.asarray(p_tar, dtype=np.float64))
    orders = np.atleast_2d(np.asarray(orders, dtype=np.int64))
    nan = np.full(len(grid), np.nan)
    if orders.shape[0] == 0:
        return nan, nan.copy(), nan.copy()
    batches = [batch_of_sample(order, batch_size) for order in orders]
    n_batches = batches[0][1]
    if n_batches == 0:
        return nan, nan.copy(), nan.copy()
    batch = np.stack([b for b, _ in batches])
    counts = batch_exit_counts(confidence, correct, grid, batch, n_batches)
    outage, _ = _outage_from_counts(counts, grid, len(orders))
    defined = ~np.isnan(outage).all(axis=0)
    mean, low, high = nan.copy(), nan.copy(), nan.copy()
    if defined.any():
        o = outage[:, defined]
        mean[defined] = np.nanmean(o, axis=0)
        low[defined], high[defined] = np.nanpercentile(o, [2.5, 97.5], axis=0)
    return mean, low, high


def missed_deadline_probability(
    confidence: Any,
    correct: Any,
    p_tar: Any,
    t_tar_ms: Any,
    exit_ms: Any,
    order: Any,
    batch_size: int,
) -> np.ndarray:
    """(P, T) missed-deadline probability (section IV-E) per p_tar and deadline t_tar.

    A batch (consecutive in ``order``, last partial one dropped) misses if the MEAN per-sample
    time exceeds t_tar or its total accuracy (device and cloud samples) is < p_tar; the probability
    is the fraction of batches that miss (NaN without a full batch). ``exit_ms`` is the per-sample
    latency by exit, (n_exits,), or one such row per batch, (n_batches, n_exits), for an uplink
    whose rate changes along the batches (the measured link's trace).
    """
    n_missed, n_batches = missed_deadline_counts(confidence, correct, p_tar, t_tar_ms, exit_ms, order, batch_size)
    if n_batches == 0:
        return np.full(n_missed.shape, np.nan)
    return n_missed / n_batches


def missed_deadline_counts(
    confidence: Any,
    correct: Any,
    p_tar: Any,
    t_tar_ms: Any,
    exit_ms: Any,
    order: Any,
    batch_size: int,
) -> tuple[np.ndarray, int]:
    """The counts of :func:`missed_deadline_probability`: (P, T) int64 batches that miss, and the
    number of (full) batches, the denominator."""
    grid = np.atleast_1d(np.asarray(p_tar, dtype=np.float64))
    deadlines = np.atleast_1d(np.asarray(t_tar_ms, dtype=np.float64))
    ms = np.asarray(exit_ms, dtype=np.float64)
    batch, n_batches = batch_of_sample(order, batch_size)
    if n_batches == 0:
        return np.zeros((len(grid), len(deadlines)), np.int64), 0
    counts = batch_exit_counts(confidence, correct, grid, batch, n_batches)
    n_exits = counts.taken.shape[1]
    per_batch = np.broadcast_to(ms, (n_batches, n_exits)) if ms.shape == (n_exits,) else ms
    if per_batch.shape != (n_batches, n_exits):
        raise ValueError(f"exit_ms has shape {ms.shape}; expected ({n_exits},) or ({n_batches}, {n_exits}) "
                         f"(per exit, or per batch and exit)")
    mean_ms = np.einsum("gkp,gk->gp", counts.taken.astype(np.float64), per_batch) / batch_size
    total_accuracy = counts.total_correct / batch_size
    missed = (mean_ms[:, :, None] > deadlines[None, None, :]) | (total_accuracy < grid)[:, :, None]
    return missed.sum(axis=0, dtype=np.int64), int(n_batches)
