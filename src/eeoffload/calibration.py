"""Calibration metrics (Guo et al. [10]): ECE, MCE, NLL, Brier, reliability bins.

Temperature scaling itself (paper section IV-A, eq. 2) is in :mod:`eeoffload.temperature`, the
calibrators (``calibration.method``) in :mod:`eeoffload.calibrators`: :func:`fit_calibrators` fits one
per exit and :func:`calibration_tables` measures each exit before and after it.

Pure functions over numpy arrays (torch tensors are accepted and converted). Conventions:
``logits`` is (N, C), ``probs`` is (N, C) rows summing to 1, ``labels`` is (N,) int class indices.
A sample's *confidence* is ``max probs`` and its prediction ``argmax probs`` (paper eq. 1).

Also here: :func:`exit_logits_from_frame`, which validates a logits table (the ``logits`` stage's
Parquet, docs/interfaces.md) and turns one split of it into an (n_exits, N, C) array.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from eeoffload import calibrators as cb
from eeoffload.calibration_metrics import ece_equal_width
from eeoffload.calibrator_state import temperature_of
from eeoffload.temperature import as_array, labels_array

def confidence_and_correct(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """(max p, argmax p == label) per sample (paper eq. 1: the confidence and its correctness)."""
    p = as_array(probs, np.float64)
    y = labels_array(labels, p.shape[0])
    return p.max(axis=1), p.argmax(axis=1) == y


def accuracy(probs: Any, labels: Any) -> float:
    """Fraction of samples whose argmax p is the label."""
    _, correct = confidence_and_correct(probs, labels)
    return float(correct.mean()) if len(correct) else float("nan")


def negative_log_likelihood(probs: Any, labels: Any) -> float:
    """Mean -log p[label] (probabilities clipped at the smallest positive float64)."""
    p = as_array(probs, np.float64)
    y = labels_array(labels, p.shape[0])
    picked = np.clip(p[np.arange(len(y)), y], np.finfo(np.float64).tiny, None)
    return float(-np.log(picked).mean())


def brier_score(probs: Any, labels: Any) -> float:
    """Multi-class Brier score: mean over samples of sum_c (p_c - onehot_c)^2."""
    p = as_array(probs, np.float64)
    y = labels_array(labels, p.shape[0])
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(((p - onehot) ** 2).sum(axis=1).mean())


def bin_edges(n_bins: int) -> np.ndarray:
    """n_bins + 1 equal-width confidence bin edges over [0, 1]."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    return np.linspace(0.0, 1.0, n_bins + 1)


def reliability_bins(probs: Any, labels: Any, n_bins: int = 15) -> pd.DataFrame:
    """Reliability-diagram bins (Guo et al. [10]): bin b holds confidences in (lower_b, upper_b].

    Bin 0 also holds confidence 0. Columns: ``bin``, ``bin_lower``, ``bin_upper``, ``count``,
    ``confidence`` (mean confidence in the bin) and ``accuracy`` (fraction correct); the last two
    are NaN for an empty bin.
    """
    return reliability_table(*confidence_and_correct(probs, labels), n_bins)


def reliability_table(conf: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> pd.DataFrame:
    """:func:`reliability_bins` of given top-label confidences and their correctness (any calibrator)."""
    edges = bin_edges(n_bins)
    index = np.searchsorted(edges[1:-1], conf, side="left")
    count = np.bincount(index, minlength=n_bins)
    conf_sum = np.bincount(index, weights=conf, minlength=n_bins)
    correct_sum = np.bincount(index, weights=correct.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / count, np.nan)
        mean_acc = np.where(count > 0, correct_sum / count, np.nan)
    return pd.DataFrame(
        {
            "bin": np.arange(n_bins, dtype=np.int64),
            "bin_lower": edges[:-1],
            "bin_upper": edges[1:],
            "count": count.astype(np.int64),
            "confidence": mean_conf,
            "accuracy": mean_acc,
        }
    )


def expected_calibration_error(probs: Any, labels: Any, n_bins: int = 15) -> float:
    """ECE = sum_b (n_b / N) |acc_b - conf_b| over equal-width confidence bins (Guo et al. [10]):
    :func:`eeoffload.calibration_metrics.ece_equal_width` of the top label (the bins of
    :func:`reliability_bins`)."""
    bin_edges(n_bins)  # the same check of n_bins as the reliability bins
    return ece_equal_width(*confidence_and_correct(probs, labels), n_bins)


def maximum_calibration_error(probs: Any, labels: Any, n_bins: int = 15) -> float:
    """MCE = max over non-empty bins of |acc_b - conf_b| (Guo et al. [10])."""
    bins = reliability_bins(probs, labels, n_bins)
    filled = bins[bins["count"] > 0]
    if filled.empty:
        return float("nan")
    return float((filled["accuracy"] - filled["confidence"]).abs().max())


@dataclass(frozen=True)
class ExitLogits:
    """One split of a logits table: ``logits`` (n_exits, N, C) float32, exits 1..n in order."""

    logits: np.ndarray
    labels: np.ndarray  # (N,) int64
    sample_id: np.ndarray  # (N,) int64, ascending

    @property
    def n_exits(self) -> int:
        return int(self.logits.shape[0])


def logit_columns(frame: pd.DataFrame) -> list[str]:
    """The ``logit_0..logit_{C-1}`` column names of a logits table, checked to be contiguous."""
    names = [c for c in frame.columns if str(c).startswith("logit_")]
    expected = [f"logit_{i}" for i in range(len(names))]
    if len(names) < 2 or set(names) != set(expected):
        raise ValueError(f"expected columns logit_0..logit_<C-1> (C >= 2), got {names}")
    return expected


def validate_logits_frame(frame: pd.DataFrame) -> None:
    """Check a logits table against docs/interfaces.md; ValueError saying what is wrong."""
    int_columns = ("sample_id", "label", "exit")
    for column in (*int_columns, "split"):
        if column not in frame.columns:
            raise ValueError(f"missing column {column!r}")
    for column in int_columns:
        if frame[column].dtype != np.int64:
            raise ValueError(f"column {column!r} must be int64, got {frame[column].dtype}")
    if not (pd.api.types.is_string_dtype(frame["split"]) or frame["split"].dtype == object):
        raise ValueError(f"column 'split' must be str, got {frame['split'].dtype}")
    for column in logit_columns(frame):
        if frame[column].dtype != np.float32:
            raise ValueError(f"column {column!r} must be float32, got {frame[column].dtype}")
    exits = np.sort(frame["exit"].unique())
    if len(exits) == 0 or not np.array_equal(exits, np.arange(1, len(exits) + 1)):
        raise ValueError(f"exits must be numbered 1..n, got {exits.tolist()}")


def exit_logits_from_frame(frame: pd.DataFrame, split: str) -> ExitLogits:
    """The rows of ``split`` as (n_exits, N, C) logits, samples in ascending sample_id.

    Validates the table first; every exit must hold the same samples with the same labels.
    """
    validate_logits_frame(frame)
    columns = logit_columns(frame)
    rows = frame[frame["split"] == split]
    if rows.empty:
        raise ValueError(f"no rows with split == {split!r}")
    n_exits = int(frame["exit"].max())
    per_exit = []
    sample_id = labels = None
    for k in range(1, n_exits + 1):
        part = rows[rows["exit"] == k].sort_values("sample_id", kind="stable")
        ids = part["sample_id"].to_numpy(np.int64)
        if np.any(np.diff(ids) == 0):
            raise ValueError(f"split {split!r}, exit {k}: duplicate sample_id")
        if sample_id is None:
            sample_id, labels = ids, part["label"].to_numpy(np.int64)
        elif not np.array_equal(ids, sample_id):
            raise ValueError(f"split {split!r}: exit {k} does not hold the same samples as exit 1")
        elif not np.array_equal(part["label"].to_numpy(np.int64), labels):
            raise ValueError(f"split {split!r}: exit {k} has labels differing from exit 1")
        per_exit.append(part[columns].to_numpy(np.float32))
    assert sample_id is not None and labels is not None
    n_classes = len(columns)
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    return ExitLogits(np.stack(per_exit), labels, sample_id)


def fit_calibrators(val: ExitLogits, method: str, n_bins: int = 15) -> list[cb.Calibrator]:
    """One calibrator per exit of ``method`` (:data:`eeoffload.calibrators.METHODS`), fitted on the
    validation logits (``temperature``: paper IV-A, eq. 2)."""
    return cb.fit_exit_calibrators(method, val.logits, val.labels, n_bins)


def _exit_row(calibrator: cb.Calibrator, z: np.ndarray, labels: np.ndarray, n_bins: int) -> tuple[dict, pd.DataFrame]:
    """Metrics and reliability bins of one exit's calibrated top label. NLL and Brier need the whole
    probability vector: NaN for the top-label methods (histogram, isotonic, scaling-binning)."""
    top = calibrator.top_label(z)
    correct = top.correct(labels)
    bins = reliability_table(top.confidence, correct, n_bins)
    filled = bins[bins["count"] > 0]
    logp = cb.log_probs(calibrator, z)
    nll = brier = float("nan")
    if logp is not None:
        nll = float(-logp[np.arange(len(labels)), labels].mean())
        brier = brier_score(np.exp(logp), labels)
    return {"accuracy": float(correct.mean()) if len(correct) else float("nan"),
            "ece": ece_equal_width(top.confidence, correct, n_bins),
            "mce": float((filled["accuracy"] - filled["confidence"]).abs().max()) if len(filled) else float("nan"),
            "nll": nll, "brier": brier}, bins


def calibration_tables(test: ExitLogits, calibrators: list[cb.Calibrator], n_bins: int,
                       method: str = "temperature") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per exit, before (``conventional``: softmax, eq. 1) and after ``calibrators`` (``calibrated``,
    fitted with ``method``): metrics rows and reliability bins on the test split. ``temperature`` is
    the exit's T (1 before; NaN for a calibrator without one)."""
    rows, bins = [], []
    for k, calibrator in enumerate(calibrators, start=1):
        z = test.logits[k - 1]
        for name, cal, m in (("conventional", cb.Identity(), "none"), ("calibrated", calibrator, method)):
            numbers, table = _exit_row(cal, z, test.labels, n_bins)
            t = 1.0 if name == "conventional" else temperature_of(cal)
            rows.append({"exit": k, "calibration": name, "method": m, "temperature": t, **numbers})
            table.insert(0, "calibration", name)
            table.insert(0, "exit", k)
            bins.append(table)
    exits = pd.DataFrame(rows).astype({"exit": np.int64})
    reliability = pd.concat(bins, ignore_index=True).astype({"exit": np.int64})
    return exits, reliability
