"""Certified early-exit thresholds with Learn-then-Test (LTT) and the repeated-split validity check.

Angelopoulos, Bates, Candes, Jordan and Lei, "Learn then Test: calibrating predictive algorithms
to achieve risk control" (Ann. Appl. Stat., 2025; arXiv 2110.01052), applied to the paper's
offloading rule (section III): a sample leaves at the first side branch k whose (calibrated)
confidence is >= lambda_k, else it is offloaded.

Risk. For a target accuracy on the device ``target`` the controlled risk is the *error rate
among the samples classified on the device* (selective risk), alpha = 1 - target:
R(lambda) = P(wrong | on device at lambda). Conditionally on the n(lambda) calibration samples
kept on the device, their errors are Binomial(n(lambda), R(lambda)), so the p-values below,
computed with n = n(lambda), are valid (LTT section 6.2, selective classification).

Threshold family (:data:`FAMILIES`). ``shared``: lambda_k = lambda for every side branch, one
scalar per hypothesis, so the hypotheses are ordered by lambda and fixed-sequence testing applies
(LTT section 4.2). With one side branch it is the plain threshold. A general family of vectors is
any (P, n_side) array; :func:`device_counts_vectors` evaluates it (slowly) and checks the fast
shared path in the tests.

Procedures (:data:`PROCEDURES`), FWER control at level delta over the grid:
``fixed_sequence`` tests lambda from the highest (safest) down and stops at the first
non-rejection (LTT Prop. 4 / Bauer 1991); ``holm`` is Bonferroni-Holm (Holm 1979) over all grid
points. The certified lambda is the rejected one keeping most calibration samples on the device
(the smallest, since n(lambda) falls with lambda for the shared family).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import binom

from eeoffload import offload
from eeoffload.certify_options import FAMILIES, P_VALUES, PROCEDURES

# --------------------------------------------------------------------------- counts on a grid


def device_counts(confidence: Any, correct: Any, grid: Any) -> tuple[np.ndarray, np.ndarray]:
    """(n_device, n_correct_device), each (P,), for the shared threshold at every ``grid`` value.

    ``confidence``/``correct`` are (n_exits, N), the last row the final exit. With m_k the running
    maximum of the side-branch confidences, exit k is taken for lambda in (m_{k-1}, m_k] (section
    III), an index interval of the ascending grid: counted with difference arrays, O(N K + P).
    """
    conf = np.asarray(confidence, dtype=np.float64)
    corr = np.asarray(correct, dtype=bool)
    lam = np.asarray(grid, dtype=np.float64)
    if conf.ndim != 2 or conf.shape != corr.shape or conf.shape[0] < 2:
        raise ValueError(f"confidence and correct must be (n_exits >= 2, N), got {conf.shape}, {corr.shape}")
    if np.any(np.diff(lam) <= 0):
        raise ValueError("grid must be strictly increasing")
    p = len(lam)
    bounds = offload.exit_bounds(conf[:-1], lam)  # exit k for grid indices [bounds[k], bounds[k+1])
    lower, upper = bounds[:-2], bounds[1:-1]  # on device by exit <= k iff i < upper_k (lam_i <= m_k)
    n_device = conf.shape[1] - np.searchsorted(np.sort(upper[-1]), np.arange(p), side="right")
    diff = np.zeros(p + 1)
    for k in range(len(upper)):
        hit = corr[k]
        diff += np.bincount(lower[k][hit], minlength=p + 1)[: p + 1]
        diff -= np.bincount(upper[k][hit], minlength=p + 1)[: p + 1]
    return n_device.astype(np.int64), np.cumsum(diff)[:p].astype(np.int64)


def device_counts_vectors(confidence: Any, correct: Any, thresholds: Any) -> tuple[np.ndarray, np.ndarray]:
    """The same counts for any (P, n_side) threshold vectors, one threshold per side branch
    (:func:`eeoffload.offload.first_confident_exit`'s per-branch path; checks the shared path)."""
    conf = np.asarray(confidence, dtype=np.float64)
    corr = np.asarray(correct, dtype=bool)
    lam = np.atleast_2d(np.asarray(thresholds, dtype=np.float64))
    n_side = conf.shape[0] - 1
    if lam.shape[1] != n_side:
        raise ValueError(f"thresholds must be (P, {n_side}), got {lam.shape}")
    first = offload.first_confident_exit(conf[:-1], lam)  # (N, P)
    taken = first < n_side
    right = taken & corr[first, np.arange(conf.shape[1])[:, None]]
    return taken.sum(axis=0, dtype=np.int64), right.sum(axis=0, dtype=np.int64)


def threshold_vectors(grid: Any, n_side: int, family: str = "shared") -> np.ndarray:
    """(P, n_side) threshold vectors of ``family`` (``shared``: lambda_k = lambda for all k)."""
    if family != "shared":
        raise ValueError(f"unknown threshold family {family!r}; allowed: {', '.join(FAMILIES)}")
    return np.repeat(np.asarray(grid, dtype=np.float64)[:, None], n_side, axis=1)


# --------------------------------------------------------------------------- p-values and FWER


def _hoeffding_kl(r_hat: np.ndarray, alpha: float) -> np.ndarray:
    """h1(a, b) = a log(a/b) + (1-a) log((1-a)/(1-b)) (Bates et al. 2021, RCPS Prop. 3), with
    r_hat clipped at alpha (the bound is 1 above it) and 0 log 0 = 0."""
    a = np.minimum(r_hat, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        first = np.where(a > 0, a * np.log(a / alpha), 0.0)
        second = np.where(a < 1, (1 - a) * np.log((1 - a) / (1 - alpha)), 0.0)
    return first + second


def p_values(n_errors: Any, n: Any, alpha: float, kind: str = "hoeffding_bentkus") -> np.ndarray:
    """Super-uniform p-values for H0: R(lambda) > alpha from n samples with n_errors errors.

    ``hoeffding_bentkus``: min(exp(-n h1(r_hat, alpha)), e * P(Binom(n, alpha) <= ceil(n r_hat)))
    (LTT eq. 9; Bates et al. 2021, Prop. 5), valid for any loss in [0, 1]. ``binomial``: the exact
    tail P(Binom(n, alpha) <= n_errors), valid for the 0-1 loss here (LTT section 3.2). p = 1 for
    n = 0 (nothing to test).
    """
    if kind not in P_VALUES:
        raise ValueError(f"unknown p-value {kind!r}; allowed: {', '.join(P_VALUES)}")
    k = np.asarray(n_errors, dtype=np.float64)
    m = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r_hat = np.where(m > 0, k / np.maximum(m, 1), 0.0)
    tail = binom.cdf(np.ceil(m * r_hat - 1e-9), m, alpha)
    if kind == "binomial":
        p = tail
    else:
        p = np.minimum(np.exp(-m * _hoeffding_kl(r_hat, alpha)), np.e * tail)
    return np.where(m > 0, np.minimum(p, 1.0), 1.0)


def fixed_sequence(p: Any, delta: float) -> np.ndarray:
    """Rejections of fixed-sequence testing in the given order: reject while p_j <= delta, stop at
    the first failure (LTT section 4.2; Bauer 1991)."""
    ok = np.asarray(p, dtype=np.float64) <= delta
    return np.cumprod(ok).astype(bool)


def holm(p: Any, delta: float) -> np.ndarray:
    """Rejections of Bonferroni-Holm (Holm 1979): sort p ascending, reject p_(i) while
    p_(i) <= delta / (m - i) (i = 0..m-1)."""
    pv = np.asarray(p, dtype=np.float64)
    m = len(pv)
    order = np.argsort(pv, kind="stable")
    ok = np.cumprod(pv[order] <= delta / (m - np.arange(m))).astype(bool)
    out = np.zeros(m, dtype=bool)
    out[order] = ok
    return out


def predicted_p_values(fit_n_device: Any, fit_n_correct: Any, n_fit: int, n_ltt: int, target: float,
                       kind: str = "hoeffding_bentkus") -> np.ndarray:
    """Per grid point, the p-value the certification samples are *predicted* to give, from the
    fitting samples: their device error rate, their device count rescaled to n_ltt samples.

    They depend only on data independent of the certification samples, so a family or an order
    chosen from them keeps FWER control (LTT section 4.2: orderings learned on separate data,
    "split fixed sequence"). Without this, fixed-sequence testing from lambda = 0.995 stops at
    once whenever a calibrated exit puts (almost) no sample that high.
    """
    dev = np.asarray(fit_n_device, dtype=np.float64)
    err = dev - np.asarray(fit_n_correct, dtype=np.float64)
    scale = n_ltt / max(n_fit, 1)
    return p_values(np.round(err * scale), np.round(dev * scale), 1.0 - target, kind)


def tested_family(predicted: Any, delta: float, procedure: str) -> np.ndarray:
    """The grid points tested, from predicted p-values: ``fixed_sequence`` starts at the point
    predicted easiest to certify (smallest predicted p, the highest lambda among ties) and goes
    down from there; ``holm`` tests the points predicted <= delta (all if none is)."""
    pred = np.asarray(predicted, dtype=np.float64)
    if procedure == "fixed_sequence":
        best = np.flatnonzero(pred == pred.min())[-1]
        return np.arange(len(pred)) <= best
    keep = pred <= delta
    return keep if keep.any() else np.ones(len(pred), dtype=bool)


def certified_index(n_device: Any, n_correct: Any, target: float, delta: float,
                    procedure: str, kind: str = "hoeffding_bentkus", tested: Any = None) -> int:
    """Index into the ascending grid of the certified lambda keeping most samples on the device
    (largest n_device among the rejected nulls), or -1 when none is certified (offload all).

    ``tested`` (bool per grid point, default all) restricts the family: fixed sequence runs over
    the tested points from the highest lambda down, Holm over the tested points only.
    """
    if procedure not in PROCEDURES:
        raise ValueError(f"unknown procedure {procedure!r}; allowed: {', '.join(PROCEDURES)}")
    n = np.asarray(n_device)
    mask = np.ones(len(n), bool) if tested is None else np.asarray(tested, dtype=bool)
    p = p_values(n - np.asarray(n_correct), n, 1.0 - target, kind)
    rejected = np.zeros(len(n), dtype=bool)
    idx = np.flatnonzero(mask)
    if procedure == "fixed_sequence":
        rejected[idx[::-1]] = fixed_sequence(p[idx[::-1]], delta)  # from the highest lambda down
    else:
        rejected[idx] = holm(p[idx], delta)
    if not rejected.any():
        return -1
    candidates = np.flatnonzero(rejected)
    return int(candidates[np.argmax(n[candidates] * (len(n) + 1) - candidates)])  # ties: smaller lambda


# --------------------------------------------------------------------------- the experiment


def random_splits(n: int, n_calibration: int, n_splits: int, seed: int) -> np.ndarray:
    """(n_splits, n) permutations of 0..n-1; the first ``n_calibration`` of each row calibrate,
    the rest test (the repeated-split validity experiment, LTT section 5)."""
    if not 0 < n_calibration < n:
        raise ValueError(f"n_calibration must be in 1..{n - 1}, got {n_calibration}")
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n) for _ in range(n_splits)])


@dataclass(frozen=True)
class Certified:
    """One certified threshold and what it gives on the calibration and test samples."""

    index: int  # into the grid; -1 = none certified
    threshold: float  # NaN when none
    cal_p_device: float
    test_p_device: float
    test_acc_device: float  # NaN when no test sample stays on the device
    test_n_device: int


Counts = tuple[np.ndarray, np.ndarray, int]  # (n_device (P,), n_correct (P,), n samples)


def certify_split(fit: Counts, cal: Counts, test: Counts, grid: np.ndarray, target: float, delta: float,
                  procedure: str, kind: str) -> Certified:
    """Choose the tested grid points on the fitting counts, certify lambda on the calibration
    counts, then evaluate it on the test counts."""
    (fit_dev, fit_ok, fit_n), (cal_dev, cal_ok, cal_n), (test_dev, test_ok, test_n) = fit, cal, test
    predicted = predicted_p_values(fit_dev, fit_ok, fit_n, cal_n, target, kind)
    tested = tested_family(predicted, delta, procedure)
    i = certified_index(cal_dev, cal_ok, target, delta, procedure, kind, tested)
    if i < 0:
        return Certified(-1, float("nan"), 0.0, 0.0, float("nan"), 0)
    n_dev = int(test_dev[i])
    acc = test_ok[i] / n_dev if n_dev else float("nan")
    return Certified(i, float(grid[i]), float(cal_dev[i] / cal_n), float(n_dev / test_n), float(acc), n_dev)


# --------------------------------------------------------------------------- risk-coverage


def risk_coverage(n_device: Any, n_correct: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, selective risk) along the grid: coverage = n_device / n (the paper's p_device),
    risk = 1 - accuracy on the device (Geifman and El-Yaniv 2017), NaN where coverage is 0."""
    dev = np.asarray(n_device, dtype=np.float64)
    ok = np.asarray(n_correct, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        risk = np.where(dev > 0, 1.0 - ok / dev, np.nan)
    return dev / n, risk


def aurc(coverage: Any, risk: Any) -> float:
    """Area under the risk-coverage curve (Geifman, Uziel and El-Yaniv, ICLR 2019), trapezoids
    over the points with coverage > 0, sorted by coverage; normalised by the covered span so a
    curve stopping short of coverage 1 is comparable (equal to the usual AURC when it spans [0, 1])."""
    c = np.asarray(coverage, dtype=np.float64)
    r = np.asarray(risk, dtype=np.float64)
    keep = (c > 0) & np.isfinite(r)
    if keep.sum() < 2:
        return float("nan")
    order = np.argsort(c[keep], kind="stable")
    cs, rs = c[keep][order], r[keep][order]
    span = cs[-1] - cs[0]
    if span <= 0:
        return float("nan")
    return float(np.sum((cs[1:] - cs[:-1]) * (rs[1:] + rs[:-1]) / 2) / span)


def batch_outage(confidence: Any, correct: Any, threshold: float, target: float, batch_size: int) -> float:
    """The paper's inference outage (section IV-D) of one threshold: the share of full batches of
    ``batch_size`` consecutive samples, among those with a sample on the device, whose accuracy on
    the device is below ``target`` (NaN without such a batch, or for a NaN threshold: nothing kept).
    The decision is section III's rule with the threshold ``threshold`` at every side branch."""
    conf = np.asarray(confidence, dtype=np.float64)
    corr = np.asarray(correct, dtype=bool)
    n = conf.shape[1]
    n_full = n // batch_size
    if n_full == 0 or not np.isfinite(threshold):
        return float("nan")
    first = offload.first_confident_exit(conf[:-1], [threshold])[:, 0]  # (N,)
    on_device = first < conf.shape[0] - 1
    right = on_device & corr[first, np.arange(n)]
    kept = on_device[: n_full * batch_size].reshape(n_full, batch_size).sum(axis=1)
    hits = right[: n_full * batch_size].reshape(n_full, batch_size).sum(axis=1)
    nonempty = kept > 0
    if not nonempty.any():
        return float("nan")
    return float(np.mean(hits[nonempty] / kept[nonempty] < target))
