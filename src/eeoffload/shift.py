"""What breaks under distribution shift, and the remedies: the offloading rules measured on shifted data.

Every rule here is the paper's decision rule (section III, counted once in :mod:`eeoffload.offload`):
a sample leaves at the first side branch whose confidence max softmax(z_k / T_k) (eq. 2) reaches
the threshold, else it is offloaded. The rules differ only in T and in the threshold:

``conventional``   T = 1, threshold p_tar (the paper's conventional network)
``calibrated``     T per exit fitted on the CLEAN validation samples, threshold p_tar (paper IV-A)
``recalibrated``   T per exit fitted on the validation samples of the same corruption and severity
                   (the severity is known: the authors' later approach, one temperature per level)
``estimated``      T of the (corruption, severity) an image-statistics classifier predicts for
                   each sample (:mod:`eeoffload.severity`), threshold p_tar
``certified``      T fitted on one part of the clean validation samples, the shared threshold
                   certified by Learn-then-Test on the other part (:mod:`eeoffload.certify`; its
                   guarantee assumes the test data exchangeable with those: what shift breaks)
``certified_recalibrated``  the same, certified on the shifted validation samples of the setting

Metrics: per exit accuracy and ECE (:mod:`eeoffload.calibration_metrics`); p_device, accuracy on
the device and in total (:func:`eeoffload.offload.device_metrics`); the inference outage of
section IV-D (:func:`eeoffload.offload.outage_counts`) at p_tar; for the certified rules the
violation of the target (accuracy on the device below it) over random calibration draws. The
monitor (:mod:`eeoffload.exchangeability`) is :func:`stream_run`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from eeoffload import calibration_metrics as cm
from eeoffload import calibrators as cb
from eeoffload import certify as ct
from eeoffload import exchangeability as ex
from eeoffload import offload
from eeoffload.temperature import softmax

#: The rules compared (the ``rule`` column of the shift tables).
P_TAR_RULES = ("conventional", "calibrated", "recalibrated", "estimated")
CERTIFIED_RULES = ("certified", "certified_recalibrated")


def fit_temperatures(exit_logits: Any, labels: Any) -> np.ndarray:
    """(K,) one T per exit minimising the NLL on these samples (paper IV-A, eq. 2), through the
    library's calibrator (:func:`eeoffload.calibrators.fit_exit_calibrators`)."""
    return np.array([c.temperature for c in cb.fit_exit_calibrators("temperature", np.asarray(exit_logits), labels)])


def exit_confidence(exit_logits: Any, labels: Any, temperatures: Any) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct), each (K, N): max softmax(z_k / T) (eq. 2) with T per exit, (K,), or
    per exit and sample, (K, N) (the estimated-severity rule)."""
    z = np.asarray(exit_logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    t = np.asarray(temperatures, dtype=np.float64)
    t = np.broadcast_to(t[:, None] if t.ndim == 1 else t, z.shape[:2])
    conf, correct = np.empty(z.shape[:2]), np.empty(z.shape[:2], dtype=bool)
    for k in range(len(z)):
        p = softmax(z[k] / t[k][:, None])
        conf[k], correct[k] = p.max(axis=1), p.argmax(axis=1) == y
    return conf, correct


def exit_rows(confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> list[dict]:
    """Per exit (1..K): accuracy and the equal-width ECE (Guo et al. 2017; the library's ECE)."""
    return [{"exit": k + 1, "accuracy": float(correct[k].mean()),
             "ece": cm.ece_equal_width(confidence[k], correct[k], n_bins)} for k in range(len(confidence))]


def rule_at_p_tar(confidence: np.ndarray, correct: np.ndarray, p_tar: float, order: np.ndarray,
                  batch_size: int, orders: np.ndarray | None = None) -> dict:
    """The paper's metrics of one rule at one p_tar: p_device, accuracy on device and in total
    (IV-B, IV-C) and the inference outage (IV-D: batches of ``batch_size`` in ``order``, NaN when
    no batch keeps a sample on the device), with the batch counts; with ``orders`` (R, N), also
    ``outage_resampled``, its mean over those re-batchings (:func:`eeoffload.offload.resampled_outage`:
    with few batches per order, the share of random batches in outage)."""
    d = offload.device_metrics(confidence, correct, [p_tar])
    o = offload.outage_counts(confidence, correct, [p_tar], order, batch_size)
    row = {"p_device": float(d["p_device"][0]), "acc_device": float(d["acc_device"][0]),
           "acc_total": float(d["acc_total"][0]), "outage": float(o.outage[0]),
           "n_outage": int(o.n_outage[0]), "n_counted": int(o.n_counted[0])}
    if orders is not None:
        row["outage_resampled"] = float(offload.resampled_outage(confidence, correct, [p_tar], orders, batch_size)[0][0])
    return row


# --------------------------------------------------------------------------- certified rule


@dataclass(frozen=True)
class CertifiedRule:
    """A certified rule: its temperatures and shared threshold (NaN: none certified, offload all)."""

    temperatures: np.ndarray
    threshold: float


def certify_rule(exit_logits: Any, labels: Any, perm: np.ndarray, n_fit: int, grid: np.ndarray, target: float,
                 delta: float, procedure: str = "fixed_sequence", p_value: str = "hoeffding_bentkus") -> CertifiedRule:
    """T per exit fitted on the samples ``perm[:n_fit]``, the threshold certified by Learn-then-Test
    on ``perm[n_fit:]`` (:func:`eeoffload.certify.certify_split`: the tested family chosen on the
    fitting samples): P(accuracy on device < target) <= delta if the test data are exchangeable
    with these (LTT, Angelopoulos et al. 2025)."""
    z = np.asarray(exit_logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    fit, cal = perm[:n_fit], perm[n_fit:]
    temps = fit_temperatures(z[:, fit], y[fit])
    conf, ok = exit_confidence(z, y, temps)
    counts = [(*ct.device_counts(conf[:, s], ok[:, s], grid), len(s)) for s in (fit, cal)]
    c = ct.certify_split(counts[0], counts[1], counts[1], grid, target, delta, procedure, p_value)
    return CertifiedRule(temps, c.threshold)


def certified_outcome(rule: CertifiedRule, exit_logits: Any, labels: Any, target: float, order: np.ndarray,
                      batch_size: int) -> dict:
    """One certified rule on test samples: violated (some sample on the device and their accuracy
    below ``target``), p_device, accuracy on device, and the batch outage at the target
    (:func:`eeoffload.certify.batch_outage`, on the samples in ``order``)."""
    conf, ok = exit_confidence(exit_logits, labels, rule.temperatures)
    n = conf.shape[1]
    if not np.isfinite(rule.threshold):
        return {"threshold": float("nan"), "violated": False, "p_device": 0.0, "acc_device": float("nan"),
                "outage": float("nan")}
    n_dev, n_ok = ct.device_counts(conf, ok, [rule.threshold])
    acc = float(n_ok[0] / n_dev[0]) if n_dev[0] else float("nan")
    return {"threshold": rule.threshold, "violated": bool(n_dev[0] > 0 and acc < target),
            "p_device": float(n_dev[0] / n), "acc_device": acc,
            "outage": ct.batch_outage(conf[:, order], ok[:, order], rule.threshold, target, batch_size)}


# --------------------------------------------------------------------------- the monitor on a stream


def device_decisions(confidence: np.ndarray, correct: np.ndarray, p_tar: float) -> tuple[np.ndarray, np.ndarray]:
    """(on_device, right), each (N,): whether the rule keeps the sample on the device at p_tar
    (section III via :func:`eeoffload.offload.first_confident_exit`) and whether the exit that
    classifies it (a side branch, or the final exit when offloaded) is right."""
    first = offload.first_confident_exit(confidence[:-1], [p_tar])[:, 0]
    return first < len(confidence) - 1, correct[first, np.arange(confidence.shape[1])]


def batch_outages(on_device: np.ndarray, right: np.ndarray, p_tar: float, batch_size: int) -> tuple[int, int]:
    """(outage batches, full batches) of consecutive samples: a batch is an outage when it keeps a
    sample on the device and their accuracy is < p_tar (section IV-D); a batch keeping none is not."""
    n_full = len(on_device) // batch_size
    kept = on_device[: n_full * batch_size].reshape(n_full, batch_size)
    hits = (kept & right[: n_full * batch_size].reshape(n_full, batch_size)).sum(axis=1)
    n_kept = kept.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        outage = (n_kept > 0) & (hits / np.maximum(n_kept, 1) < p_tar)
    return int(outage.sum()), int(n_full)


def stream_run(reference_scores: Any, scores: Any, on_device: np.ndarray, right: np.ndarray, shift_start: int,
               p_tar: float, batch_size: int, alpha: float, seed: int, jump: float = ex.JUMP) -> tuple[dict, ex.Monitor]:
    """One stream (clean samples, then shifted ones from ``shift_start``; ``shift_start`` = its
    length for a clean stream) under the monitor: the conformal test martingale on ``scores`` with
    the clean ``reference_scores`` first, alarm at 1/alpha, and from the alarm on everything
    offloaded. Returns the alarm, false alarm (before the shift), detection delay, and after the
    shift: outage batches per full batch and p_device without and with the monitor."""
    m = ex.monitor(reference_scores, scores, alpha, seed, jump)
    kept = ex.offload_after_alarm(on_device, m.alarm)
    post = slice(shift_start, None)
    without, n_batches = batch_outages(on_device[post], right[post], p_tar, batch_size)
    with_monitor, _ = batch_outages(kept[post], right[post], p_tar, batch_size)
    n_post = len(on_device) - shift_start
    nan = float("nan")
    return {"alarm": m.alarm, "false_alarm": bool(0 <= m.alarm < shift_start),
            "delay": ex.detection_delay(m.alarm, shift_start) if n_post else nan, "n_batches": n_batches,
            "outage_share": without / n_batches if n_batches else nan,
            "outage_share_monitored": with_monitor / n_batches if n_batches else nan,
            "p_device": float(on_device[post].mean()) if n_post else nan,
            "p_device_monitored": float(kept[post].mean()) if n_post else nan}, m
