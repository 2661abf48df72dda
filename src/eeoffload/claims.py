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

The claims' texts and tolerances (fixed from the paper's wording before looking at any result, the
same for every run) are :mod:`eeoffload.claims_spec`'s; the missed-deadline claims (C8, C9, C11)
:mod:`eeoffload.claims_deadline`'s. This module holds the outage and accuracy claims and the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import numpy as np
import pandas as pd

from eeoffload.claims_deadline import claim_missed_high_p_tar, claim_missed_low_p_tar, claim_two_branch_missed
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
    Claim,
    at_most,
    band_of,
    bands_of,
    combine,
    coverage_text,
    mean_gap,
    neg,
    p_on_grid,
    paired_device_points,
    strictly_below,
)
from eeoffload.claims_spec import (
    C9_MIN_SHARE,
    CAL_MISSED_REACHABLE,
    CLAIMS,
    CLOSE_ACC,
    CONV_MISSED_FLOOR,
    CONV_OUTAGE_AT_EDGE,
    NEAR,
    P_TAR_HIGH,
    P_TAR_LOW,
    P_TAR_OUTAGE_EDGE,
    P_TAR_OUTAGE_RANGE,
    P_TAR_TWO_BRANCH,
    VERY_LOW,
    claim_row,
    fmt,
    fmt_ci,
    not_applicable,
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

# --------------------------------------------------------------------------- one-branch claims


def claim_p_device_lower(offload: pd.DataFrame, variant: str) -> Claim:
    cid = "C1"
    b = bands_of(offload, "p_device")
    if b is None:
        return not_applicable(cid, variant, "no conventional/calibrated p_device")
    grid, idx = paired_device_points(offload, b)
    every, n_point, n_sig, _ = at_most(b[CALIBRATED], b[CONVENTIONAL], idx)
    cal, conv = b[CALIBRATED].loc(idx), b[CONVENTIONAL].loc(idx)
    mean_cal, mean_conv = cal.mean(), conv.mean()
    lower = strictly_below(mean_cal, mean_conv) if len(idx) else INCONCLUSIVE
    numbers = (f"{coverage_text(len(idx), len(grid))} (p_tar with a sample on the device); "
               f"calibrated higher at {n_point}/{len(idx)} p_tar, beyond the intervals at {n_sig}; "
               f"mean p_device conventional {fmt(mean_conv[0])} {fmt_ci(mean_conv[1], mean_conv[2])}, "
               f"calibrated {fmt(mean_cal[0])} {fmt_ci(mean_cal[1], mean_cal[2])}")
    return claim_row(cid, variant, numbers, combine(every, lower), len(idx) / max(len(grid), 1),
                b[CONVENTIONAL], b[CALIBRATED])


def claim_acc_device_meets_target(offload: pd.DataFrame, variant: str) -> Claim:
    cid = "C2"
    need = {"calibration", "p_tar", "acc_device", "p_device"}
    if offload is None or not need <= set(offload.columns):
        return not_applicable(cid, variant, "no acc_device")
    cal_rows = offload[offload["calibration"] == CALIBRATED]
    if cal_rows.empty:
        return not_applicable(cid, variant, "no calibrated rows")
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
        numbers += f" (worst: accuracy {fmt(v)} {fmt_ci(lo, hi)} at p_tar {worst:.3f})"
    conv = offload[(offload["calibration"] == CONVENTIONAL) & (offload["p_device"] > 0)].dropna(subset=["acc_device"])
    if len(conv):
        conv_below = int((conv["acc_device"] < conv["p_tar"] - CLOSE_ACC - EPS).sum())
        numbers += f"; conventional below at {conv_below}/{len(conv)}"
    return claim_row(cid, variant, numbers, verdict, len(idx) / max(len(grid), 1), band)


def claim_acc_total_higher(offload: pd.DataFrame, variant: str) -> Claim:
    cid = "C3"
    b = bands_of(offload, "acc_total")
    if b is None:
        return not_applicable(cid, variant, "no acc_total")
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
    numbers += (f"; mean conventional {fmt(mean_conv[0])} {fmt_ci(mean_conv[1], mean_conv[2])}, "
                f"calibrated {fmt(mean_cal[0])} {fmt_ci(mean_cal[1], mean_cal[2])}")
    return claim_row(cid, variant, numbers, combine(every, higher), len(idx) / max(len(grid), 1),
                b[CONVENTIONAL], b[CALIBRATED])


def claim_conf_tracks_acc(offload: pd.DataFrame, variant: str) -> Claim:
    cid = "C4"
    need = {"calibration", "p_tar", "conf_device", "acc_device"}
    if offload is None or not need <= set(offload.columns):
        return not_applicable(cid, variant, "no conf_device/acc_device")
    acc = bands_of(offload, "acc_device")
    conf = bands_of(offload, "conf_device")
    if acc is None or conf is None:
        return not_applicable(cid, variant, "no conventional/calibrated rows")
    grid = acc[CONVENTIONAL].v.index.union(acc[CALIBRATED].v.index)
    ok = np.ones(len(grid), bool)
    for cal in (CONVENTIONAL, CALIBRATED):
        ok &= acc[cal].v.reindex(grid).notna().to_numpy() & conf[cal].v.reindex(grid).notna().to_numpy()
    idx = grid[ok]
    if len(idx) == 0:
        return claim_row(cid, variant, f"{coverage_text(0, len(grid))}", INCONCLUSIVE, 0.0,
                    acc[CONVENTIONAL], acc[CALIBRATED])
    gaps = {cal: mean_gap(conf[cal].v.reindex(idx), acc[cal].loc(idx)) for cal in (CONVENTIONAL, CALIBRATED)}
    verdict = strictly_below(gaps[CALIBRATED], gaps[CONVENTIONAL])
    numbers = (f"{coverage_text(len(idx), len(grid))} (both calibrations); mean |conf - acc| conventional "
               f"{fmt(gaps[CONVENTIONAL][0])} {fmt_ci(gaps[CONVENTIONAL][1], gaps[CONVENTIONAL][2])}, calibrated "
               f"{fmt(gaps[CALIBRATED][0])} {fmt_ci(gaps[CALIBRATED][1], gaps[CALIBRATED][2])}")
    return claim_row(cid, variant, numbers, verdict, len(idx) / len(grid), acc[CONVENTIONAL], acc[CALIBRATED])


def claim_outage_lower(offload: pd.DataFrame, variant: str) -> Claim:
    cid = "C5"
    b = bands_of(offload, "outage")
    if b is None:
        return not_applicable(cid, variant, "no outage")
    grid = b[CONVENTIONAL].v.index.union(b[CALIBRATED].v.index)
    idx = grid[b[CONVENTIONAL].v.reindex(grid).notna().to_numpy() & b[CALIBRATED].v.reindex(grid).notna().to_numpy()]
    verdict, n_point, n_sig, _ = at_most(b[CALIBRATED], b[CONVENTIONAL], idx)
    numbers = (f"{coverage_text(len(idx), len(grid))} (both calibrations); calibrated higher at "
               f"{n_point}/{len(idx)} p_tar, beyond the intervals at {n_sig}")
    if n_point:
        diff = b[CALIBRATED].v.reindex(idx) - b[CONVENTIONAL].v.reindex(idx)
        p = float(diff.idxmax())
        numbers += (f" (worst at p_tar {p:.3f}: {fmt(b[CALIBRATED].v.loc[p])} vs {fmt(b[CONVENTIONAL].v.loc[p])})")
    if len(idx):
        numbers += (f"; mean outage conventional {fmt(b[CONVENTIONAL].v.reindex(idx).mean())}, calibrated "
                    f"{fmt(b[CALIBRATED].v.reindex(idx).mean())}")
    return claim_row(cid, variant, numbers, verdict, len(idx) / max(len(grid), 1), b[CONVENTIONAL], b[CALIBRATED])


def claim_cal_outage_zero(offload: pd.DataFrame, variant: str) -> Claim:
    cid, p = "C6", P_TAR_OUTAGE_EDGE
    b = bands_of(offload, "outage")
    if b is None:
        return not_applicable(cid, variant, "no outage")
    band = b[CALIBRATED]
    grid = band.v.index[band.v.index < p - P_TAR_MATCH]
    if len(grid) == 0:
        return not_applicable(cid, variant, f"no p_tar < {p} evaluated")
    idx = grid[band.v.reindex(grid).notna().to_numpy()]
    verdict, n_point, n_sig, _ = at_most(band, 0.0, idx)
    numbers = f"{coverage_text(len(idx), len(grid), f'p_tar < {p}')}"
    if len(idx):
        numbers += f"; max calibrated outage {fmt(band.v.reindex(idx).max())}"
    numbers += f"; non-zero at {n_point}/{len(idx)} p_tar, beyond the interval at {n_sig}"
    if n_point:
        first = float(idx[(band.v.reindex(idx) > EPS).to_numpy()][0])
        numbers += f" (first at p_tar {first:.3f})"
    return claim_row(cid, variant, numbers, verdict, len(idx) / len(grid), band)


def claim_conv_outage_near(offload: pd.DataFrame, variant: str) -> Claim:
    cid, p, target = "C7", P_TAR_OUTAGE_EDGE, CONV_OUTAGE_AT_EDGE
    b = bands_of(offload, "outage")
    if b is None:
        return not_applicable(cid, variant, "no outage")
    band = b[CONVENTIONAL]
    at = p_on_grid(band.v.index, p)
    if at is None:
        return not_applicable(cid, variant, f"p_tar {p} is not on the evaluated grid")
    v, lo, hi = band.at(at)
    cal = b[CALIBRATED].v.get(at, np.nan)
    if not np.isfinite(v):
        return claim_row(cid, variant, f"{coverage_text(0, 1)}: no batch with a sample classified on the device at "
                    f"p_tar {at:.3f}", INCONCLUSIVE, 0.0, band)
    lo_ok, hi_ok = target - NEAR, target + NEAR
    if abs(v - target) <= NEAR + EPS:
        verdict = HOLDS
    elif lo > hi_ok + EPS or hi < lo_ok - EPS:
        verdict = DOES_NOT_HOLD
    else:
        verdict = INCONCLUSIVE
    numbers = (f"outage at p_tar {at:.3f}: conventional {fmt(v)} {fmt_ci(lo, hi)} (band {lo_ok:g}..{hi_ok:g}), "
               f"calibrated {fmt(cal)}")
    return claim_row(cid, variant, numbers, verdict, 1.0, band)


# --------------------------------------------------------------------------- two-branch claims


def claim_two_branch_outage(offload_one: pd.DataFrame | None, offload_two: pd.DataFrame | None,
                            one: str | None, two: str | None) -> Claim:
    cid, (lo_p, hi_p) = "C10", P_TAR_OUTAGE_RANGE
    label = f"{one} vs {two}" if one and two else (one or two)
    if offload_one is None or offload_two is None:
        return not_applicable(cid, label, "needs a one-branch and a two-branch variant")
    b1, b2 = bands_of(offload_one, "outage"), bands_of(offload_two, "outage")
    if b1 is None or b2 is None:
        return not_applicable(cid, label, "no outage")
    c1, c2 = b1[CALIBRATED], b2[CALIBRATED]
    grid = c1.v.index.intersection(c2.v.index)
    if len(grid) == 0:
        return not_applicable(cid, label, "no common p_tar")
    both = grid[c1.v.reindex(grid).notna().to_numpy() & c2.v.reindex(grid).notna().to_numpy()]
    not_above, n_point, n_sig, _ = at_most(c2, c1, both)
    rng = c2.v.index[(c2.v.index >= lo_p - P_TAR_MATCH) & (c2.v.index <= hi_p + P_TAR_MATCH)]
    rng_def = rng[c2.v.reindex(rng).notna().to_numpy()]
    low, n_low_point, n_low_sig, _ = at_most(c2, VERY_LOW, rng_def)
    cov_a = len(both) / len(grid)
    cov_b = len(rng_def) / len(rng) if len(rng) else 0.0
    numbers = (f"calibrated outage, one vs two branches: {coverage_text(len(both), len(grid))}; two-branch higher "
               f"at {n_point}/{len(both)} p_tar, beyond the intervals at {n_sig}; two-branch in {lo_p:g}..{hi_p:g}: "
               f"{coverage_text(len(rng_def), len(rng))}, max {fmt(c2.v.reindex(rng_def).max())}, above {VERY_LOW} "
               f"at {n_low_point}, beyond the interval at {n_low_sig}")
    m1, m2 = b1[CONVENTIONAL].v.reindex(grid).mean(), b2[CONVENTIONAL].v.reindex(grid).mean()
    numbers += f"; mean conventional outage {fmt(m1)} -> {fmt(m2)} (one -> two branches)"
    return claim_row(cid, label, numbers, combine(not_above, low), min(cov_a, cov_b), c1, c2)


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
            rows.append(fn(frame, one_branch) if frame is not None
                        else not_applicable(cid, one_branch, "no one-branch variant"))
    off2 = offload.get(two_branch) if two_branch else None
    dl2 = deadline.get(two_branch) if two_branch else None
    rows.append(claim_two_branch_outage(off1, off2, one_branch, two_branch))
    rows.append(claim_two_branch_missed(dl1, dl2, one_branch, two_branch))
    return pd.DataFrame([asdict(r) for r in rows], columns=COLUMNS)


def summary(table: pd.DataFrame) -> dict[str, int]:
    """Count of claims per verdict, over all five verdicts (:data:`VERDICTS`)."""
    return {v: int((table["verdict"] == v).sum()) for v in VERDICTS}
