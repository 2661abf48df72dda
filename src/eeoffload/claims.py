"""The paper's claims, checked against this run's metrics: pure functions over the metrics DataFrames.

Each check returns a :class:`~eeoffload.claims_evidence.Claim`: the claim as the paper states it
(restated where the paper's words need a testable form; every claim's figure and text are data,
:data:`CLAIMS`), this run's numbers that decided the verdict, and one of five verdicts
(:data:`HOLDS`, :data:`DOES_NOT_HOLD`, :data:`INCONCLUSIVE`, :data:`NOT_ENOUGH_DATA`,
:data:`NOT_APPLICABLE`). The rules that turn numbers into a verdict (what each verdict means, the
noise rule, the coverage rule, exact comparisons up to EPS, the p_tar lookup, where latency no longer
binds) live in :mod:`eeoffload.claims_evidence`; this module re-exports the constants of those rules
that callers use (the verdicts, :data:`VERDICTS`, :data:`CONVENTIONAL`, :data:`CALIBRATED`,
:data:`EPS`, :data:`MIN_COVERAGE`).

Nothing here is written by hand from a look at the figures.

Inputs are the DataFrames of ``reports/metrics/<variant>/offload.parquet`` (one row per
calibration x p_tar) and ``deadline.parquet`` (one row per calibration x p_tar x t_tar_ms); see
docs/metrics.md. They may also be seed aggregates (:func:`eeoffload.statistics.aggregate_over_seeds`
over those tables, with the population bounds among the aggregated columns).

Ranges. A claim "at every p_tar" speaks of the whole evaluated p_tar grid; C6 of its part below
0.875; C10's level of :data:`P_TAR_OUTAGE_RANGE` (coverage rule: claims_evidence).

Tolerances. Fixed from the paper's wording before looking at any result, the same for every run:

* "a <= b", "a >= b", "zero": exact, up to EPS (float round-off only), and the noise rule.
* "near x", "close to x", "around x": within :data:`NEAR` (+-0.1 in probability) of x.
* "greater or close to p_tar" (accuracy on device, Fig. 3(b)): accuracy >= p_tar - :data:`CLOSE_ACC`.
* "very low" outage: at most :data:`VERY_LOW` at every p_tar of :data:`P_TAR_OUTAGE_RANGE`.
* "for a large t_tar" / "sufficiently large latency targets" (C8, C11): where latency no longer
  binds: the value at the largest t_tar, with both curves flat (the rule: claims_evidence).
* "where latency binds" (C9): the t_tar grid points from the first one at which either curve has
  left its value at the smallest t_tar, up to (not including) the t_tar from which both curves are
  flat.
* A p_tar of a claim (0.75, 0.85, 0.875, ...) is looked up on the evaluated grid within
  P_TAR_MATCH; if the grid lacks it the claim is not applicable.

Over 300 lines: one job, the eleven claims, each a function that reads as the paper's sentence it
checks, next to the table that runs them; the machinery they share is in claims_evidence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import numpy as np
import pandas as pd

from eeoffload.claims_evidence import (
    CALIBRATED,
    CONVENTIONAL,
    DOES_NOT_HOLD,
    EPS,
    HOLDS,
    INCONCLUSIVE,
    MIN_COVERAGE,
    NOT_APPLICABLE,
    NOT_ENOUGH_DATA,
    P_TAR_MATCH,
    VERDICTS,
    Band,
    Claim,
    Curves,
    at_most,
    band_of,
    bands_of,
    combine,
    coverage_text,
    deadline_curves,
    finish,
    mean_gap,
    neg,
    p_on_grid,
    paired_device_points,
    sig_above,
    strictly_below,
)

#: The public names, with the evidence rules' constants that callers read here (``claims.HOLDS``).
__all__ = [
    "C9_MIN_SHARE", "CALIBRATED", "CAL_MISSED_REACHABLE", "CLAIMS", "CLOSE_ACC", "COLUMNS", "CONVENTIONAL",
    "CONV_MISSED_FLOOR", "CONV_OUTAGE_AT_EDGE", "DOES_NOT_HOLD", "EPS", "HOLDS", "INCONCLUSIVE", "MIN_COVERAGE",
    "NEAR", "NOT_APPLICABLE", "NOT_ENOUGH_DATA", "ONE_BRANCH_DEADLINE", "ONE_BRANCH_OFFLOAD", "P_TAR_HIGH",
    "P_TAR_LOW", "P_TAR_OUTAGE_EDGE", "P_TAR_OUTAGE_RANGE", "P_TAR_TWO_BRANCH", "VERDICTS", "VERY_LOW",
    "claim_acc_device_meets_target", "claim_acc_total_higher", "claim_cal_outage_zero", "claim_conf_tracks_acc",
    "claim_conv_outage_near", "claim_missed_high_p_tar", "claim_missed_low_p_tar", "claim_outage_lower",
    "claim_p_device_lower", "claim_two_branch_missed", "claim_two_branch_outage", "claims_table", "paper_variants",
    "summary",
]

#: "near x" / "close to x" / "around x" in probability: |value - x| <= NEAR.
NEAR = 0.1
#: "accuracy always greater or close to p_tar": accuracy >= p_tar - CLOSE_ACC.
CLOSE_ACC = 0.01
#: "very low" outage probability: at most VERY_LOW at every p_tar of P_TAR_OUTAGE_RANGE.
VERY_LOW = 0.05
#: C9: share of the binding t_tar range where the conventional curve must be lower beyond the noise.
C9_MIN_SHARE = 0.5

#: The p_tar values the paper names.
P_TAR_OUTAGE_EDGE = 0.875  # Sec. IV-D: calibrated outage zero below it; conventional near 0.4 at it
CONV_OUTAGE_AT_EDGE = 0.4
P_TAR_HIGH = 0.85  # Sec. IV-E, Fig. 5(c)
CAL_MISSED_REACHABLE = 0.1  # calibrated "can reach 0.1"
CONV_MISSED_FLOOR = 0.7  # conventional "unable to obtain lower than around 0.7"
P_TAR_LOW = 0.75  # Fig. 5(a)
P_TAR_TWO_BRANCH = (0.825, 0.85)  # Fig. 6
#: C10's "p_tar range the paper plots" for the two-branch calibrated outage (Fig. 7). The paper's
#: text does not give the figure's axis; this is the range its outage text speaks of: from the
#: grid's default start (0.5) up to 0.875, the largest p_tar it names for the outage (IV-D).
P_TAR_OUTAGE_RANGE = (0.5, 0.875)

#: Every claim: id -> (figure, the claim as checked). Both the check and its not-applicable row use it.
CLAIMS: dict[str, tuple[str, str]] = {
    "C1": ("Fig. 2", (
        "Calibration lowers the probability of classifying on the device "
        "(calibrated <= conventional at every p_tar, and lower on average beyond the intervals).")),
    "C2": ("Fig. 3(b)", (
        f"Calibrated accuracy on device >= p_tar for every p_tar (paper: 'greater or close to'; slack "
        f"{CLOSE_ACC}); judged where samples are classified on the device.")),
    "C3": ("Fig. 3(c)", (
        "Calibrated total accuracy (device + cloud) >= conventional at every p_tar, and higher on "
        "average beyond the intervals ('outperforms').")),
    "C4": ("Fig. 3(a)", (
        "Calibration brings the mean confidence on device closer to the accuracy on device "
        "(mean |confidence - accuracy| over p_tar smaller, beyond the intervals).")),
    "C5": ("Fig. 4", "Calibrated inference outage <= conventional, for every p_tar."),
    "C6": ("Fig. 4", f"Calibrated outage is zero for every p_tar < {P_TAR_OUTAGE_EDGE}."),
    "C7": ("Fig. 4", (
        f"Conventional outage is near {CONV_OUTAGE_AT_EDGE} at p_tar = {P_TAR_OUTAGE_EDGE} (within +-{NEAR}).")),
    "C8": ("Fig. 5(c)", (
        f"At p_tar = {P_TAR_HIGH}, judged where latency no longer binds (largest t_tar, both curves flat), the "
        f"calibrated network's missed-deadline probability is near {CAL_MISSED_REACHABLE} (<= "
        f"{CAL_MISSED_REACHABLE + NEAR:g}) while the conventional one stays near {CONV_MISSED_FLOOR} or above "
        f"(>= {CONV_MISSED_FLOOR - NEAR:g}).")),
    "C9": ("Fig. 5(a)", (
        f"At p_tar = {P_TAR_LOW}, over the t_tar range where latency binds (from the first t_tar at which either "
        f"curve leaves its starting value up to where both are flat), the conventional network's "
        f"missed-deadline probability is lower: beyond the intervals on at least {C9_MIN_SHARE:.0%} of that "
        f"range, and higher beyond them nowhere in it.")),
    "C10": ("Fig. 7", (
        f"With two branches the calibrated network's outage is at most the one-branch calibrated outage at "
        f"every p_tar, and very low (<= {VERY_LOW}) at every p_tar in "
        f"{P_TAR_OUTAGE_RANGE[0]:g}..{P_TAR_OUTAGE_RANGE[1]:g}.")),
    "C11": ("Fig. 6 vs 5", (
        f"At p_tar {', '.join(f'{p:g}' for p in P_TAR_TWO_BRANCH)}, judged where latency no longer binds "
        f"(largest t_tar, curves flat), the conventional two-branch network misses the deadline more often than "
        f"the one-branch one (beyond the intervals); the calibrated two-branch network does not.")),
}


def _na(cid: str, variant: str | None, why: str) -> Claim:
    """Claim ``cid``'s not-applicable row."""
    fig, text = CLAIMS[cid]
    return Claim(cid, fig, text, variant or "-", why, NOT_APPLICABLE)


def _row(cid: str, variant: str, numbers: str, verdict: str, coverage: float, *bands: Band) -> Claim:
    """Claim ``cid``'s row, through the coverage and unknown-noise rules (claims_evidence.finish)."""
    fig, text = CLAIMS[cid]
    return finish(cid, fig, text, variant, numbers, verdict, coverage, *bands)


def _f(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"


def _ci(lo: float | None, hi: float | None) -> str:
    """An interval of a probability as shown: ``[lo, hi]`` clipped to [0, 1] (a t-interval over few
    seeds can reach past the bounds; the verdicts use the raw values)."""
    clip = lambda x: x if x is None or not np.isfinite(x) else min(1.0, max(0.0, float(x)))  # noqa: E731
    return f"[{_f(clip(lo))}, {_f(clip(hi))}]"


# --------------------------------------------------------------------------- one-branch claims


def claim_p_device_lower(offload: pd.DataFrame, variant: str) -> Claim:
    cid = "C1"
    b = bands_of(offload, "p_device")
    if b is None:
        return _na(cid, variant, "no conventional/calibrated p_device")
    grid, idx = paired_device_points(offload, b)
    every, n_point, n_sig, _ = at_most(b[CALIBRATED], b[CONVENTIONAL], idx)
    cal, conv = b[CALIBRATED].loc(idx), b[CONVENTIONAL].loc(idx)
    mean_cal, mean_conv = cal.mean(), conv.mean()
    lower = strictly_below(mean_cal, mean_conv) if len(idx) else INCONCLUSIVE
    numbers = (f"{coverage_text(len(idx), len(grid))} (p_tar with a sample on the device); "
               f"calibrated higher at {n_point}/{len(idx)} p_tar, beyond the intervals at {n_sig}; "
               f"mean p_device conventional {_f(mean_conv[0])} {_ci(mean_conv[1], mean_conv[2])}, "
               f"calibrated {_f(mean_cal[0])} {_ci(mean_cal[1], mean_cal[2])}")
    return _row(cid, variant, numbers, combine(every, lower), len(idx) / max(len(grid), 1),
                b[CONVENTIONAL], b[CALIBRATED])


def claim_acc_device_meets_target(offload: pd.DataFrame, variant: str) -> Claim:
    cid = "C2"
    need = {"calibration", "p_tar", "acc_device", "p_device"}
    if offload is None or not need <= set(offload.columns):
        return _na(cid, variant, "no acc_device")
    cal_rows = offload[offload["calibration"] == CALIBRATED]
    if cal_rows.empty:
        return _na(cid, variant, "no calibrated rows")
    grid = pd.Index(sorted(cal_rows["p_tar"].astype(float).unique()))
    band = band_of(cal_rows, "acc_device", "p_tar")
    on = cal_rows.drop_duplicates("p_tar").set_index("p_tar")["p_device"]
    on.index = on.index.astype(float)
    idx = grid[(band.v.reindex(grid).notna() & (on.reindex(grid) > 0)).to_numpy()]
    target = pd.Series(idx.to_numpy(float) - CLOSE_ACC, index=idx)
    verdict, n_point, n_sig, _ = at_most(neg(band), -target, idx)
    numbers = f"{coverage_text(len(idx), len(grid))}; calibrated below p_tar - {CLOSE_ACC} at {n_point}/{len(idx)}"
    numbers += f" p_tar, beyond the interval at {n_sig}"
    if len(idx):
        gap = band.v.reindex(idx) - idx.to_numpy(float)
        worst = float(gap.idxmin())
        v, lo, hi = band.at(worst)
        numbers += f" (worst: accuracy {_f(v)} {_ci(lo, hi)} at p_tar {worst:.3f})"
    conv = offload[(offload["calibration"] == CONVENTIONAL) & (offload["p_device"] > 0)].dropna(subset=["acc_device"])
    if len(conv):
        conv_below = int((conv["acc_device"] < conv["p_tar"] - CLOSE_ACC - EPS).sum())
        numbers += f"; conventional below at {conv_below}/{len(conv)}"
    return _row(cid, variant, numbers, verdict, len(idx) / max(len(grid), 1), band)


def claim_acc_total_higher(offload: pd.DataFrame, variant: str) -> Claim:
    cid = "C3"
    b = bands_of(offload, "acc_total")
    if b is None:
        return _na(cid, variant, "no acc_total")
    grid, idx = paired_device_points(offload, b)
    every, n_point, n_sig, _ = at_most(b[CONVENTIONAL], b[CALIBRATED], idx)
    cal, conv = b[CALIBRATED].loc(idx), b[CONVENTIONAL].loc(idx)
    mean_cal, mean_conv = cal.mean(), conv.mean()
    higher = strictly_below(mean_conv, mean_cal) if len(idx) else INCONCLUSIVE
    diff = (cal.v - conv.v) if len(idx) else pd.Series(dtype=float)
    numbers = (f"{coverage_text(len(idx), len(grid))} (p_tar with a sample on the device); "
               f"calibrated lower at {n_point}/{len(idx)} p_tar, beyond the intervals at {n_sig}")
    if len(idx):
        numbers += f" (difference min {diff.min():+.4f}, max {diff.max():+.4f})"
    numbers += (f"; mean conventional {_f(mean_conv[0])} {_ci(mean_conv[1], mean_conv[2])}, "
                f"calibrated {_f(mean_cal[0])} {_ci(mean_cal[1], mean_cal[2])}")
    return _row(cid, variant, numbers, combine(every, higher), len(idx) / max(len(grid), 1),
                b[CONVENTIONAL], b[CALIBRATED])


def claim_conf_tracks_acc(offload: pd.DataFrame, variant: str) -> Claim:
    cid = "C4"
    need = {"calibration", "p_tar", "conf_device", "acc_device"}
    if offload is None or not need <= set(offload.columns):
        return _na(cid, variant, "no conf_device/acc_device")
    acc = bands_of(offload, "acc_device")
    conf = bands_of(offload, "conf_device")
    if acc is None or conf is None:
        return _na(cid, variant, "no conventional/calibrated rows")
    grid = acc[CONVENTIONAL].v.index.union(acc[CALIBRATED].v.index)
    ok = np.ones(len(grid), bool)
    for cal in (CONVENTIONAL, CALIBRATED):
        ok &= acc[cal].v.reindex(grid).notna().to_numpy() & conf[cal].v.reindex(grid).notna().to_numpy()
    idx = grid[ok]
    if len(idx) == 0:
        return _row(cid, variant, f"{coverage_text(0, len(grid))}", INCONCLUSIVE, 0.0,
                    acc[CONVENTIONAL], acc[CALIBRATED])
    gaps = {cal: mean_gap(conf[cal].v.reindex(idx), acc[cal].loc(idx)) for cal in (CONVENTIONAL, CALIBRATED)}
    verdict = strictly_below(gaps[CALIBRATED], gaps[CONVENTIONAL])
    numbers = (f"{coverage_text(len(idx), len(grid))} (both calibrations); mean |conf - acc| conventional "
               f"{_f(gaps[CONVENTIONAL][0])} {_ci(gaps[CONVENTIONAL][1], gaps[CONVENTIONAL][2])}, calibrated "
               f"{_f(gaps[CALIBRATED][0])} {_ci(gaps[CALIBRATED][1], gaps[CALIBRATED][2])}")
    return _row(cid, variant, numbers, verdict, len(idx) / len(grid), acc[CONVENTIONAL], acc[CALIBRATED])


def claim_outage_lower(offload: pd.DataFrame, variant: str) -> Claim:
    cid = "C5"
    b = bands_of(offload, "outage")
    if b is None:
        return _na(cid, variant, "no outage")
    grid = b[CONVENTIONAL].v.index.union(b[CALIBRATED].v.index)
    idx = grid[b[CONVENTIONAL].v.reindex(grid).notna().to_numpy() & b[CALIBRATED].v.reindex(grid).notna().to_numpy()]
    verdict, n_point, n_sig, _ = at_most(b[CALIBRATED], b[CONVENTIONAL], idx)
    numbers = (f"{coverage_text(len(idx), len(grid))} (both calibrations); calibrated higher at "
               f"{n_point}/{len(idx)} p_tar, beyond the intervals at {n_sig}")
    if n_point:
        diff = b[CALIBRATED].v.reindex(idx) - b[CONVENTIONAL].v.reindex(idx)
        p = float(diff.idxmax())
        numbers += (f" (worst at p_tar {p:.3f}: {_f(b[CALIBRATED].v.loc[p])} vs {_f(b[CONVENTIONAL].v.loc[p])})")
    if len(idx):
        numbers += (f"; mean outage conventional {_f(b[CONVENTIONAL].v.reindex(idx).mean())}, calibrated "
                    f"{_f(b[CALIBRATED].v.reindex(idx).mean())}")
    return _row(cid, variant, numbers, verdict, len(idx) / max(len(grid), 1), b[CONVENTIONAL], b[CALIBRATED])


def claim_cal_outage_zero(offload: pd.DataFrame, variant: str) -> Claim:
    cid, p = "C6", P_TAR_OUTAGE_EDGE
    b = bands_of(offload, "outage")
    if b is None:
        return _na(cid, variant, "no outage")
    band = b[CALIBRATED]
    grid = band.v.index[band.v.index < p - P_TAR_MATCH]
    if len(grid) == 0:
        return _na(cid, variant, f"no p_tar < {p} evaluated")
    idx = grid[band.v.reindex(grid).notna().to_numpy()]
    verdict, n_point, n_sig, _ = at_most(band, 0.0, idx)
    numbers = f"{coverage_text(len(idx), len(grid), f'p_tar < {p}')}"
    if len(idx):
        numbers += f"; max calibrated outage {_f(band.v.reindex(idx).max())}"
    numbers += f"; non-zero at {n_point}/{len(idx)} p_tar, beyond the interval at {n_sig}"
    if n_point:
        first = float(idx[(band.v.reindex(idx) > EPS).to_numpy()][0])
        numbers += f" (first at p_tar {first:.3f})"
    return _row(cid, variant, numbers, verdict, len(idx) / len(grid), band)


def claim_conv_outage_near(offload: pd.DataFrame, variant: str) -> Claim:
    cid, p, target = "C7", P_TAR_OUTAGE_EDGE, CONV_OUTAGE_AT_EDGE
    b = bands_of(offload, "outage")
    if b is None:
        return _na(cid, variant, "no outage")
    band = b[CONVENTIONAL]
    at = p_on_grid(band.v.index, p)
    if at is None:
        return _na(cid, variant, f"p_tar {p} is not on the evaluated grid")
    v, lo, hi = band.at(at)
    cal = b[CALIBRATED].v.get(at, np.nan)
    if not np.isfinite(v):
        return _row(cid, variant, f"{coverage_text(0, 1)}: no batch with a sample classified on the device at "
                    f"p_tar {at:.3f}", INCONCLUSIVE, 0.0, band)
    lo_ok, hi_ok = target - NEAR, target + NEAR
    if abs(v - target) <= NEAR + EPS:
        verdict = HOLDS
    elif lo > hi_ok + EPS or hi < lo_ok - EPS:
        verdict = DOES_NOT_HOLD
    else:
        verdict = INCONCLUSIVE
    numbers = (f"outage at p_tar {at:.3f}: conventional {_f(v)} {_ci(lo, hi)} (band {lo_ok:g}..{hi_ok:g}), "
               f"calibrated {_f(cal)}")
    return _row(cid, variant, numbers, verdict, 1.0, band)


# --------------------------------------------------------------------------- missed deadline


def _curves_or_row(cid: str, deadline: pd.DataFrame | None, p: float, variant: str) -> Curves | Claim:
    """C8/C9's prologue: the curves at p_tar ``p`` with where latency no longer binds, or the claim's
    row when there are none (not applicable) or latency may still bind at the grid's end."""
    w = deadline_curves(deadline, p)
    if w is None:
        return _na(cid, variant, f"no missed-deadline curves at p_tar {p}")
    if isinstance(w.free, str):
        return _row(cid, variant, w.free, NOT_ENOUGH_DATA, 0.0, w.bands[CONVENTIONAL], w.bands[CALIBRATED])
    return w


def claim_missed_high_p_tar(deadline: pd.DataFrame, variant: str) -> Claim:
    cid = "C8"
    w = _curves_or_row(cid, deadline, P_TAR_HIGH, variant)
    if isinstance(w, Claim):
        return w
    (t_free, t_max), conv_b, cal_b = w.free, w.bands[CONVENTIONAL], w.bands[CALIBRATED]
    cal, conv = cal_b.at(t_max), conv_b.at(t_max)
    if not (np.isfinite(cal[0]) and np.isfinite(conv[0])):
        return _row(cid, variant, f"missed deadline undefined at t_tar {t_max:g} ms", NOT_ENOUGH_DATA, 0.0,
                    conv_b, cal_b)
    cal_max, conv_min = CAL_MISSED_REACHABLE + NEAR, CONV_MISSED_FLOOR - NEAR
    ok_cal = HOLDS if cal[0] <= cal_max + EPS else (DOES_NOT_HOLD if cal[1] > cal_max + EPS else INCONCLUSIVE)
    ok_conv = HOLDS if conv[0] >= conv_min - EPS else (DOES_NOT_HOLD if conv[2] < conv_min - EPS else INCONCLUSIVE)
    numbers = (f"{coverage_text(w.n_def, w.n_all, 't_tar')}; latency no longer binds from t_tar {t_free:g} ms; at "
               f"t_tar {t_max:g} ms: calibrated {_f(cal[0])} {_ci(cal[1], cal[2])}, conventional "
               f"{_f(conv[0])} {_ci(conv[1], conv[2])}")
    return _row(cid, variant, numbers, combine(ok_cal, ok_conv), w.coverage, conv_b, cal_b)


def claim_missed_low_p_tar(deadline: pd.DataFrame, variant: str) -> Claim:
    cid = "C9"
    w = _curves_or_row(cid, deadline, P_TAR_LOW, variant)
    if isinstance(w, Claim):
        return w
    (t_free, _), conv, cal = w.free, w.bands[CONVENTIONAL], w.bands[CALIBRATED]
    grid = conv.v.index.intersection(cal.v.index)
    left = np.zeros(len(grid), bool)
    for band in (conv, cal):
        v = band.v.reindex(grid).to_numpy(float)
        left |= np.abs(v - v[0]) > EPS
    if not left.any():
        return _row(cid, variant, "the curves never change over the t_tar grid: latency never binds",
                    NOT_ENOUGH_DATA, 0.0, conv, cal)
    t_first = float(grid[np.nonzero(left)[0][0]])
    rng = grid[(grid >= t_first) & (grid < t_free)]
    if len(rng) == 0:
        return _row(cid, variant, "no t_tar where latency binds", NOT_ENOUGH_DATA, 0.0, conv, cal)
    lower = sig_above(cal.lo.reindex(rng), conv.hi.reindex(rng))
    higher = sig_above(conv.lo.reindex(rng), cal.hi.reindex(rng))
    point_lower = (conv.v.reindex(rng) < cal.v.reindex(rng) - EPS).to_numpy()
    share = float(lower.mean())
    if higher.any():
        verdict = DOES_NOT_HOLD
    elif share >= C9_MIN_SHARE:
        verdict = HOLDS
    else:
        verdict = INCONCLUSIVE
    numbers = (f"{coverage_text(w.n_def, w.n_all, 't_tar')}; latency binds for t_tar {t_first:g}..{float(rng[-1]):g} "
               f"ms ({len(rng)} points); conventional lower at {int(point_lower.sum())}, beyond the intervals at "
               f"{int(lower.sum())} ({share:.0%}), higher beyond them at {int(higher.sum())}")
    if point_lower.any():
        diff = (cal.v.reindex(rng) - conv.v.reindex(rng))
        t = float(diff.idxmax())
        numbers += (f"; largest gap at t_tar {t:g} ms: conventional {_f(conv.v.loc[t])} "
                    f"{_ci(conv.lo.loc[t], conv.hi.loc[t])}, calibrated {_f(cal.v.loc[t])} {_ci(cal.lo.loc[t], cal.hi.loc[t])}")
    return _row(cid, variant, numbers, verdict, w.coverage, conv, cal)


# --------------------------------------------------------------------------- two-branch claims


def claim_two_branch_outage(offload_one: pd.DataFrame | None, offload_two: pd.DataFrame | None,
                            one: str | None, two: str | None) -> Claim:
    cid, (lo_p, hi_p) = "C10", P_TAR_OUTAGE_RANGE
    label = f"{one} vs {two}" if one and two else (one or two)
    if offload_one is None or offload_two is None:
        return _na(cid, label, "needs a one-branch and a two-branch variant")
    b1, b2 = bands_of(offload_one, "outage"), bands_of(offload_two, "outage")
    if b1 is None or b2 is None:
        return _na(cid, label, "no outage")
    c1, c2 = b1[CALIBRATED], b2[CALIBRATED]
    grid = c1.v.index.intersection(c2.v.index)
    if len(grid) == 0:
        return _na(cid, label, "no common p_tar")
    both = grid[c1.v.reindex(grid).notna().to_numpy() & c2.v.reindex(grid).notna().to_numpy()]
    not_above, n_point, n_sig, _ = at_most(c2, c1, both)
    rng = c2.v.index[(c2.v.index >= lo_p - P_TAR_MATCH) & (c2.v.index <= hi_p + P_TAR_MATCH)]
    rng_def = rng[c2.v.reindex(rng).notna().to_numpy()]
    low, n_low_point, n_low_sig, _ = at_most(c2, VERY_LOW, rng_def)
    cov_a = len(both) / len(grid)
    cov_b = len(rng_def) / len(rng) if len(rng) else 0.0
    numbers = (f"calibrated outage, one vs two branches: {coverage_text(len(both), len(grid))}; two-branch higher "
               f"at {n_point}/{len(both)} p_tar, beyond the intervals at {n_sig}; two-branch in {lo_p:g}..{hi_p:g}: "
               f"{coverage_text(len(rng_def), len(rng))}, max {_f(c2.v.reindex(rng_def).max())}, above {VERY_LOW} "
               f"at {n_low_point}, beyond the interval at {n_low_sig}")
    m1, m2 = b1[CONVENTIONAL].v.reindex(grid).mean(), b2[CONVENTIONAL].v.reindex(grid).mean()
    numbers += f"; mean conventional outage {_f(m1)} -> {_f(m2)} (one -> two branches)"
    return _row(cid, label, numbers, combine(not_above, low), min(cov_a, cov_b), c1, c2)


def claim_two_branch_missed(deadline_one: pd.DataFrame | None, deadline_two: pd.DataFrame | None,
                            one: str | None, two: str | None) -> Claim:
    cid = "C11"
    label = f"{one} vs {two}" if one and two else (one or two)
    if deadline_one is None or deadline_two is None:
        return _na(cid, label, "needs a one-branch and a two-branch variant")
    parts, verdicts, bands, coverage = [], [], [], 1.0
    for p in P_TAR_TWO_BRANCH:
        w1, w2 = deadline_curves(deadline_one, p), deadline_curves(deadline_two, p)
        if w1 is None or w2 is None:
            return _na(cid, label, f"no missed-deadline curves at p_tar {p} for both variants")
        bands += [w1.bands[CONVENTIONAL], w1.bands[CALIBRATED], w2.bands[CONVENTIONAL], w2.bands[CALIBRATED]]
        coverage = min(coverage, w1.coverage, w2.coverage)
        f1, f2 = w1.free, w2.free
        if isinstance(f1, str) or isinstance(f2, str):
            return _row(cid, label, f"p_tar {p:g}: {f1 if isinstance(f1, str) else f2}", NOT_ENOUGH_DATA, 0.0,
                        *bands)
        t = min(f1[1], f2[1])
        if t < max(f1[0], f2[0]):
            return _row(cid, label, f"p_tar {p:g}: the two variants' t_tar grids end before both are flat",
                        NOT_ENOUGH_DATA, 0.0, *bands)
        a1c, a2c = w1.bands[CONVENTIONAL].at(t), w2.bands[CONVENTIONAL].at(t)
        a1k, a2k = w1.bands[CALIBRATED].at(t), w2.bands[CALIBRATED].at(t)
        if not all(np.isfinite(x[0]) for x in (a1c, a2c, a1k, a2k)):
            return _row(cid, label, f"p_tar {p:g}: missed deadline undefined at t_tar {t:g} ms for one of the "
                        f"variants", NOT_ENOUGH_DATA, 0.0, *bands)
        conv_more = strictly_below(a1c, a2c)
        cal_not = (DOES_NOT_HOLD if a2k[1] > a1k[2] + EPS else (INCONCLUSIVE if a2k[0] > a1k[0] + EPS else HOLDS))
        verdicts += [conv_more, cal_not]
        parts.append(f"p_tar {p:g}, t_tar {t:g} ms: conventional {_f(a1c[0])} {_ci(a1c[1], a1c[2])} -> "
                     f"{_f(a2c[0])} {_ci(a2c[1], a2c[2])}, calibrated {_f(a1k[0])} "
                     f"{_ci(a1k[1], a1k[2])} -> {_f(a2k[0])} {_ci(a2k[1], a2k[2])}")
    return _row(cid, label, "; ".join(parts), combine(*verdicts), coverage, *bands)


# --------------------------------------------------------------------------- the table


def paper_variants(variants: dict) -> tuple[str | None, str | None]:
    """The variants playing the paper's one-branch and two-branch networks: the first (in params
    order) with exactly 1 and 2 side branches; None where there is none."""
    one = next((v for v, spec in variants.items() if len((spec or {}).get("branches", [])) == 1), None)
    two = next((v for v, spec in variants.items() if len((spec or {}).get("branches", [])) == 2), None)
    return one, two


#: The one-branch checks, by claim id (the id keys :data:`CLAIMS` for the not-applicable row).
ONE_BRANCH_OFFLOAD: dict[str, Callable[[pd.DataFrame, str], Claim]] = {
    "C1": claim_p_device_lower, "C2": claim_acc_device_meets_target, "C3": claim_acc_total_higher,
    "C4": claim_conf_tracks_acc, "C5": claim_outage_lower, "C6": claim_cal_outage_zero, "C7": claim_conv_outage_near,
}
ONE_BRANCH_DEADLINE: dict[str, Callable[[pd.DataFrame, str], Claim]] = {
    "C8": claim_missed_high_p_tar, "C9": claim_missed_low_p_tar,
}
#: Columns of :func:`claims_table`: the original six, then ``coverage`` (float: share of the claim's
#: range with defined values; NaN where not applicable) and ``intervals`` (the noise intervals used:
#: ``population``, ``population+seeds``, ``unknown``, or ``-``).
COLUMNS = ["id", "figure", "claim", "variant", "numbers", "verdict", "coverage", "intervals"]


def claims_table(offload: dict[str, pd.DataFrame], deadline: dict[str, pd.DataFrame],
                 one_branch: str | None, two_branch: str | None) -> pd.DataFrame:
    """Every claim, checked: one row per claim (columns :data:`COLUMNS`).

    ``offload``/``deadline`` map variant name to its metrics; ``one_branch``/``two_branch`` name the
    variants playing the paper's one- and two-branch networks (None where the run has none: those
    claims are then not applicable).
    """
    rows: list[Claim] = []
    off1 = offload.get(one_branch) if one_branch else None
    dl1 = deadline.get(one_branch) if one_branch else None
    for checks, frame in ((ONE_BRANCH_OFFLOAD, off1), (ONE_BRANCH_DEADLINE, dl1)):
        for cid, fn in checks.items():
            rows.append(fn(frame, one_branch) if frame is not None else _na(cid, one_branch, "no one-branch variant"))
    off2 = offload.get(two_branch) if two_branch else None
    dl2 = deadline.get(two_branch) if two_branch else None
    rows.append(claim_two_branch_outage(off1, off2, one_branch, two_branch))
    rows.append(claim_two_branch_missed(dl1, dl2, one_branch, two_branch))
    return pd.DataFrame([asdict(r) for r in rows], columns=COLUMNS)


def summary(table: pd.DataFrame) -> dict[str, int]:
    """Count of claims per verdict, over all five verdicts (:data:`VERDICTS`)."""
    return {v: int((table["verdict"] == v).sum()) for v in VERDICTS}
