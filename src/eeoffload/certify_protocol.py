"""The certify stage's protocol over random splits: calibrators compared, and Learn-then-Test
thresholds certified (docs/certify.md).

For each of ``splits`` random splits of the held-out samples into calibration / test samples, and
for each calibrator: fit it on the first ``fit_fraction`` of the calibration samples, certify the
shared exit threshold on the others for every target and procedure (:mod:`eeoffload.certify`),
and measure on the test samples; split 0 also gets the smooth ECE with its bootstrap interval,
the kernel reliability curve and the risk-coverage curve. :func:`certify_run` returns the tables,
:func:`summary` the headline of them. Arrays in, tables out; no paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from eeoffload import calibration_metrics as cm
from eeoffload import calibrators as cb
from eeoffload import certify as ct
from eeoffload.paper import BATCH_SIZE as PAPER_BATCH_SIZE
from eeoffload.statistics import clopper_pearson_interval

#: ``procedure`` of the baseline rows: the paper's rule, threshold = target, no guarantee.
PAPER_RULE = "paper_rule"
#: Fine threshold grid for the risk-coverage curves and AURC (every 0.001 of [0, 1]).
RC_GRID = np.round(np.linspace(0.0, 1.0, 1001), 10)
BATCH_SIZE = PAPER_BATCH_SIZE  # the paper's test batches (section IV-D) for the batch outage of each rule


class CertifySettings(Protocol):
    """The settings the protocol reads (params ``certify`` with ``calibration.methods`` and
    ``calibration.n_bins``: pipeline.core.params.CertifySettings)."""

    methods: tuple[str, ...]
    n_bins: int
    targets: np.ndarray  # ascending
    delta: float
    splits: int
    calibration_fraction: float
    fit_fraction: float
    procedures: tuple[str, ...]
    p_value: str
    family: str
    thresholds: np.ndarray
    bootstrap: int
    seed: int


@dataclass(frozen=True)
class Held:
    """The held-out samples (val then test): logits (n_exits, N, C), labels (N,)."""

    logits: np.ndarray
    labels: np.ndarray
    base: list[cb.TopLabel]  # softmax(z)'s top label per exit, computed once

    @classmethod
    def of(cls, logits: np.ndarray, labels: np.ndarray) -> Held:
        """The held-out samples with each exit's softmax top label computed once."""
        return cls(logits, labels, [cb.softmax_top_label(z) for z in logits])


def split_sizes(p: CertifySettings, n: int) -> tuple[int, int]:
    """(n_calibration, n_fit) of each split of ``n`` samples; usable when ``0 < n_fit < n_cal < n``."""
    n_cal = int(round(p.calibration_fraction * n))
    n_fit = int(round(p.fit_fraction * n_cal))
    return n_cal, n_fit


# --------------------------------------------------------------------------- one split


def exit_metric_rows(split: int, method: str, conf: np.ndarray, correct: np.ndarray, n_bins: int) -> list[dict]:
    return [
        {"split": split, "method": method, "exit": k + 1, "accuracy": float(correct[k].mean()),
         "ece": cm.ece_equal_width(conf[k], correct[k], n_bins),
         "ece_equal_mass": cm.ece_equal_mass(conf[k], correct[k], n_bins),
         "brier": cm.brier_top_label(conf[k], correct[k]), "nll": cm.nll_top_label(conf[k], correct[k])}
        for k in range(len(conf))
    ]


def paper_rule_rows(split: int, method: str, cal: ct.Counts, test: ct.Counts, p: CertifySettings) -> list[dict]:
    """The baseline without a guarantee: the paper's rule with lambda = the target itself (section
    III, p_tar = target), counts over ``p.targets`` (ascending) on the certify and test parts."""
    rows = []
    for i, target in enumerate(p.targets):
        n_dev, n_ok = int(test[0][i]), int(test[1][i])
        acc = n_ok / n_dev if n_dev else float("nan")
        rows.append({"split": split, "method": method, "target": float(target), "procedure": PAPER_RULE,
                     "threshold": float(target), "cal_p_device": float(cal[0][i] / cal[2]),
                     "test_p_device": n_dev / test[2], "test_acc_device": acc, "test_n_device": n_dev,
                     "violated": bool(n_dev > 0 and acc < target)})
    return rows


def threshold_rows(split: int, method: str, counts: tuple[ct.Counts, ct.Counts, ct.Counts],
                   p: CertifySettings) -> list[dict]:
    rows = []
    for target in p.targets:
        for procedure in p.procedures:
            c = ct.certify_split(*counts, p.thresholds, float(target), p.delta, procedure, p.p_value)
            rows.append({"split": split, "method": method, "target": float(target), "procedure": procedure,
                         "threshold": c.threshold, "cal_p_device": c.cal_p_device, "test_p_device": c.test_p_device,
                         "test_acc_device": c.test_acc_device, "test_n_device": c.test_n_device,
                         "violated": bool(c.test_n_device > 0 and c.test_acc_device < target)})
    return rows


@dataclass
class Tables:
    thresholds: list[dict]
    exits: list[dict]
    aurc: list[dict]
    smooth: list[dict]
    reliability: list[pd.DataFrame]
    curves: list[pd.DataFrame]


def run_split(split: int, perm: np.ndarray, held: Held, sizes: tuple[int, int], p: CertifySettings,
              out: Tables) -> None:
    n_cal, n_fit = sizes
    parts = {"fit": slice(0, n_fit), "ltt": slice(n_fit, n_cal), "test": slice(n_cal, None)}
    y = held.labels
    fit = perm[parts["fit"]]
    base = [cb.TopLabel(b.confidence[perm], b.prediction[perm]) for b in held.base]
    for method in p.methods:
        calibrators = cb.fit_exit_calibrators(method, held.logits[:, fit], y[fit], p.n_bins)
        conf, correct = cb.exit_top_labels(calibrators, held.logits[:, perm], y[perm], base)
        counts = tuple((*ct.device_counts(conf[:, s], correct[:, s], p.thresholds), len(perm[s]))
                       for s in parts.values())
        first_row = len(out.thresholds)
        out.thresholds += threshold_rows(split, method, counts, p)  # type: ignore[arg-type]
        at_target = [(*ct.device_counts(conf[:, parts[s]], correct[:, parts[s]], p.targets), counts[j][2])
                     for j, s in ((1, "ltt"), (2, "test"))]
        out.thresholds += paper_rule_rows(split, method, *at_target, p)  # type: ignore[arg-type]
        t_conf, t_ok = conf[:, parts["test"]], correct[:, parts["test"]]
        for row in out.thresholds[first_row:]:  # the paper's batch outage under each rule, on the test part
            row["test_batch_outage"] = ct.batch_outage(t_conf, t_ok, row["threshold"], row["target"], BATCH_SIZE)
        out.exits += exit_metric_rows(split, method, t_conf, t_ok, p.n_bins)
        coverage, risk = ct.risk_coverage(*ct.device_counts(t_conf, t_ok, RC_GRID), t_conf.shape[1])
        out.aurc.append({"split": split, "method": method, "aurc": ct.aurc(coverage, risk)})
        if split == 0:
            first_split_extras(method, t_conf, t_ok, coverage, risk, p, out)


def first_split_extras(method: str, conf: np.ndarray, correct: np.ndarray, coverage: np.ndarray,
                       risk: np.ndarray, p: CertifySettings, out: Tables) -> None:
    """Split 0 only: smooth ECE with its bootstrap interval, kernel reliability, risk-coverage curve."""
    for k in range(len(conf)):
        s = cm.smooth_ece_interval(conf[k], correct[k], p.bootstrap, p.seed)
        out.smooth.append({"method": method, "exit": k + 1, "smece": s.value, "smece_low": s.low,
                           "smece_high": s.high, "sigma": s.sigma})
        curve = cm.kernel_reliability(conf[k], correct[k], s.sigma)
        out.reliability.append(pd.DataFrame({"method": method, "exit": np.int64(k + 1), "confidence": curve["t"],
                                             "accuracy": curve["accuracy"], "density": curve["density"]}))
    out.curves.append(pd.DataFrame({"method": method, "threshold": RC_GRID, "coverage": coverage, "risk": risk}))


# --------------------------------------------------------------------------- summaries


def validity_table(thresholds: pd.DataFrame, delta: float) -> pd.DataFrame:
    """Per method x target x procedure: violation rate over splits with its Clopper-Pearson 95%
    interval (LTT's guarantee: rate <= delta), certified rate and mean test outcomes, among them the
    paper's batch outage (batches of 512 of the test part, mean over splits)."""
    g = thresholds.groupby(["method", "target", "procedure"], sort=False)
    table = g.agg(splits=("split", "size"), violations=("violated", "sum"),
                  certified_rate=("threshold", lambda s: float(s.notna().mean())),
                  mean_threshold=("threshold", "mean"), mean_p_device=("test_p_device", "mean"),
                  mean_acc_device=("test_acc_device", "mean"),
                  mean_batch_outage=("test_batch_outage", "mean")).reset_index()
    table["violation_rate"] = table["violations"] / table["splits"]
    low, high = clopper_pearson_interval(table["violations"].to_numpy(), table["splits"].to_numpy())
    table["violation_low"], table["violation_high"] = low, high
    table["delta"] = delta
    return table.astype({"splits": np.int64, "violations": np.int64})


def summary(variant: str, p: CertifySettings, sizes: tuple[int, int], n: int, validity: pd.DataFrame, exits: pd.DataFrame,
            aurc: pd.DataFrame, seconds: float) -> dict[str, Any]:
    ece = exits.groupby(["method", "exit"])["ece"].mean()
    methods: dict[str, Any] = {}
    for method in p.methods:
        rows = validity[validity["method"] == method]
        methods[method] = {
            "ece_test_mean": {str(k): round(float(ece[method, k]), 5) for k in ece[method].index},
            "aurc_mean": round(float(aurc.loc[aurc["method"] == method, "aurc"].mean()), 5),
            "certified": {f"{r.target:g}/{r.procedure}": {
                "violation_rate": round(float(r.violation_rate), 4), "p_device": round(float(r.mean_p_device), 4),
                "acc_device": round(float(r.mean_acc_device), 4) if np.isfinite(r.mean_acc_device) else None}
                for r in rows.itertuples()},
        }
    return {"variant": variant, "samples": n, "splits": p.splits, "n_calibration": sizes[0],
            "n_fit": sizes[1], "delta": p.delta, "targets": [float(t) for t in p.targets],
            "p_value": p.p_value, "family": p.family,
            # of the certified rules only: the paper's rule (threshold = target) promises nothing
            "max_violation_rate": round(float(validity.loc[validity["procedure"] != PAPER_RULE,
                                                           "violation_rate"].max()), 4),
            "seconds": round(seconds, 2), "methods": methods}


def certify_run(held: Held, p: CertifySettings, sizes: tuple[int, int]) -> dict[str, pd.DataFrame]:
    """Every split and method; the output tables (deterministic given the seed in ``p``)."""
    out = Tables([], [], [], [], [], [])
    perms = ct.random_splits(len(held.labels), sizes[0], p.splits, p.seed)
    for split, perm in enumerate(perms):
        run_split(split, perm, held, sizes, p, out)
    thresholds = pd.DataFrame(out.thresholds).astype({"split": np.int64, "test_n_device": np.int64})
    return {
        "thresholds": thresholds,
        "validity": validity_table(thresholds, p.delta),
        "exits": pd.DataFrame(out.exits).astype({"split": np.int64, "exit": np.int64}),
        "aurc": pd.DataFrame(out.aurc).astype({"split": np.int64}),
        "smooth_ece": pd.DataFrame(out.smooth).astype({"exit": np.int64}),
        "kernel_reliability": pd.concat(out.reliability, ignore_index=True),
        "risk_coverage": pd.concat(out.curves, ignore_index=True),
    }
