"""The paper's claims, checked against this run's metrics: pure functions over the metrics DataFrames.

Each check returns a :class:`Claim`: the claim as the paper states it, this run's numbers (short
text) and a verdict computed from the data: :data:`HOLDS`, :data:`DOES_NOT_HOLD`, or
:data:`NOT_APPLICABLE` when the data needed is missing (e.g. no two-branch variant, or a p_tar that
the evaluation grid lacks). Nothing here is written by hand from a look at the figures.

Inputs are the DataFrames of ``reports/metrics/<variant>/offload.parquet`` (one row per
calibration x p_tar) and ``deadline.parquet`` (one row per calibration x p_tar x t_tar_ms); see
docs/interfaces.md.

Tolerances. They were fixed from the paper's wording before looking at any result, and are the
same for every run:

* "a <= b", "a >= b", "zero": exact, up to :data:`EPS` (float round-off only). The paper states
  these without qualification ("for all values of p_tar calibration improves the outage";
  "remains zero"), so no slack is given.
* "near x", "close to x", "around x": within :data:`NEAR` (+-0.1 in probability) of x.
* "greater or close to p_tar" (accuracy on device, Fig. 3(b)): accuracy >= p_tar - :data:`CLOSE_ACC`
  (one percentage point).
* "very low" outage: mean over the p_tar grid at most :data:`VERY_LOW`.
* "for a large t_tar" / "for sufficiently large latency targets": the best (lowest) missed-deadline
  probability over the t_tar grid, which for a non-increasing curve is its value at the largest
  t_tar evaluated.
* A p_tar of a claim (0.75, 0.85, 0.875, ...) is looked up on the evaluated grid within
  :data:`P_TAR_MATCH`; if the grid lacks it the claim is not applicable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
NOT_APPLICABLE = "not applicable"

CONVENTIONAL = "conventional"
CALIBRATED = "calibrated"

#: Float round-off allowed in exact comparisons ("<=", ">=", "is zero").
EPS = 1e-9
#: "near x" / "close to x" / "around x" in probability: |value - x| <= NEAR.
NEAR = 0.1
#: "accuracy always greater or close to p_tar": accuracy >= p_tar - CLOSE_ACC.
CLOSE_ACC = 0.01
#: "very low" outage probability: mean over the p_tar grid <= VERY_LOW.
VERY_LOW = 0.05
#: A claim's p_tar is matched to the evaluated grid within this distance.
P_TAR_MATCH = 1e-6

#: The p_tar values the paper names.
P_TAR_OUTAGE_EDGE = 0.875  # Sec. IV-D: calibrated outage zero below it; conventional near 0.4 at it
CONV_OUTAGE_AT_EDGE = 0.4
P_TAR_HIGH = 0.85  # Sec. IV-E, Fig. 5(c)
CAL_MISSED_REACHABLE = 0.1  # calibrated "can reach 0.1"
CONV_MISSED_FLOOR = 0.7  # conventional "unable to obtain lower than around 0.7"
P_TAR_LOW = 0.75  # Fig. 5(a)
P_TAR_TWO_BRANCH = (0.825, 0.85)  # Fig. 6


@dataclass(frozen=True)
class Claim:
    id: str
    figure: str
    claim: str
    variant: str
    numbers: str
    verdict: str


def _verdict(ok: bool) -> str:
    return HOLDS if ok else DOES_NOT_HOLD


def _na(cid: str, figure: str, claim: str, variant: str | None, why: str) -> Claim:
    return Claim(cid, figure, claim, variant or "-", why, NOT_APPLICABLE)


def _pair(offload: pd.DataFrame, column: str) -> pd.DataFrame | None:
    """conventional and calibrated ``column`` side by side, indexed by p_tar (rows with both only)."""
    need = {"calibration", "p_tar", column}
    if offload is None or not need <= set(offload.columns):
        return None
    wide = offload.pivot_table(index="p_tar", columns="calibration", values=column, aggfunc="first",
                               dropna=False)
    if CONVENTIONAL not in wide.columns or CALIBRATED not in wide.columns:
        return None
    wide = wide[[CONVENTIONAL, CALIBRATED]].sort_index()
    return wide


def _at(series: pd.Series, p: float) -> tuple[float, float] | None:
    """(grid p_tar, value) of ``series`` (indexed by p_tar) at p, or None if the grid lacks p."""
    idx = np.asarray(series.index, dtype=float)
    if idx.size == 0:
        return None
    i = int(np.argmin(np.abs(idx - p)))
    if abs(idx[i] - p) > P_TAR_MATCH:
        return None
    return float(idx[i]), float(series.iloc[i])


def _deadline_curves(deadline: pd.DataFrame, p: float) -> pd.DataFrame | None:
    """missed_deadline vs t_tar_ms at p_tar p, conventional and calibrated side by side."""
    need = {"calibration", "p_tar", "t_tar_ms", "missed_deadline"}
    if deadline is None or not need <= set(deadline.columns):
        return None
    sub = deadline[np.abs(deadline["p_tar"].to_numpy(dtype=float) - p) <= P_TAR_MATCH]
    if sub.empty:
        return None
    wide = sub.pivot_table(index="t_tar_ms", columns="calibration", values="missed_deadline", aggfunc="first")
    if CONVENTIONAL not in wide.columns or CALIBRATED not in wide.columns:
        return None
    return wide[[CONVENTIONAL, CALIBRATED]].sort_index().dropna()


def _f(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"


# --------------------------------------------------------------------------- one-branch claims


def claim_p_device_lower(offload: pd.DataFrame, variant: str) -> Claim:
    cid, fig = "C1", "Fig. 2"
    text = ("Calibration lowers the probability of classifying on the device "
            "(calibrated <= conventional at every p_tar, lower on average).")
    w = _pair(offload, "p_device")
    if w is None or w.dropna().empty:
        return _na(cid, fig, text, variant, "no conventional/calibrated p_device")
    w = w.dropna()
    diff = w[CALIBRATED] - w[CONVENTIONAL]
    n_higher = int((diff > EPS).sum())
    mean_drop = float(-diff.mean())
    ok = n_higher == 0 and mean_drop > EPS
    worst = float(diff.max())
    return Claim(cid, fig, text, variant,
                 f"mean p_device conventional {_f(w[CONVENTIONAL].mean())}, calibrated {_f(w[CALIBRATED].mean())}; "
                 f"calibrated higher at {n_higher}/{len(w)} p_tar (max excess {_f(max(worst, 0.0))})",
                 _verdict(ok))


def claim_acc_device_meets_target(offload: pd.DataFrame, variant: str) -> Claim:
    cid, fig = "C2", "Fig. 3(b)"
    text = f"Calibrated accuracy on device >= p_tar for every p_tar (paper: 'greater or close to'; slack {CLOSE_ACC})."
    need = {"calibration", "p_tar", "acc_device", "p_device"}
    if offload is None or not need <= set(offload.columns):
        return _na(cid, fig, text, variant, "no acc_device")
    cal = offload[(offload["calibration"] == CALIBRATED) & (offload["p_device"] > 0)].dropna(subset=["acc_device"])
    if cal.empty:
        return _na(cid, fig, text, variant, "no p_tar with samples classified on the device")
    gap = cal["acc_device"].to_numpy(dtype=float) - cal["p_tar"].to_numpy(dtype=float)
    bad = gap < -CLOSE_ACC - EPS
    i = int(np.argmin(gap))
    conv = offload[(offload["calibration"] == CONVENTIONAL) & (offload["p_device"] > 0)].dropna(subset=["acc_device"])
    conv_below = int((conv["acc_device"] < conv["p_tar"] - CLOSE_ACC - EPS).sum()) if len(conv) else 0
    return Claim(cid, fig, text, variant,
                 f"calibrated below p_tar - {CLOSE_ACC} at {int(bad.sum())}/{len(cal)} p_tar "
                 f"(worst: accuracy {_f(cal['acc_device'].iloc[i])} at p_tar {cal['p_tar'].iloc[i]:.3f}); "
                 f"conventional below at {conv_below}/{len(conv)}",
                 _verdict(not bad.any()))


def claim_acc_total_higher(offload: pd.DataFrame, variant: str) -> Claim:
    cid, fig = "C3", "Fig. 3(c)"
    text = "Calibrated total accuracy (device + cloud) >= conventional, for every p_tar."
    w = _pair(offload, "acc_total")
    if w is None or w.dropna().empty:
        return _na(cid, fig, text, variant, "no acc_total")
    w = w.dropna()
    diff = w[CALIBRATED] - w[CONVENTIONAL]
    n_lower = int((diff < -EPS).sum())
    return Claim(cid, fig, text, variant,
                 f"calibrated lower at {n_lower}/{len(w)} p_tar (min difference {diff.min():+.4f}, "
                 f"max {diff.max():+.4f})",
                 _verdict(n_lower == 0))


def claim_conf_tracks_acc(offload: pd.DataFrame, variant: str) -> Claim:
    cid, fig = "C4", "Fig. 3(a)"
    text = ("Calibration brings the mean confidence on device closer to the accuracy on device "
            "(mean |confidence - accuracy| over p_tar smaller).")
    need = {"calibration", "conf_device", "acc_device"}
    if offload is None or not need <= set(offload.columns):
        return _na(cid, fig, text, variant, "no conf_device/acc_device")
    gaps = {}
    for cal in (CONVENTIONAL, CALIBRATED):
        rows = offload[offload["calibration"] == cal].dropna(subset=["conf_device", "acc_device"])
        if rows.empty:
            return _na(cid, fig, text, variant, f"no {cal} rows with samples on device")
        gaps[cal] = float(np.mean(np.abs(rows["conf_device"] - rows["acc_device"])))
    return Claim(cid, fig, text, variant,
                 f"mean |conf - acc| conventional {_f(gaps[CONVENTIONAL])}, calibrated {_f(gaps[CALIBRATED])}",
                 _verdict(gaps[CALIBRATED] < gaps[CONVENTIONAL] - EPS))


def claim_outage_lower(offload: pd.DataFrame, variant: str) -> Claim:
    cid, fig = "C5", "Fig. 4"
    text = "Calibrated inference outage <= conventional, for every p_tar."
    w = _pair(offload, "outage")
    if w is None or w.dropna().empty:
        return _na(cid, fig, text, variant, "no outage")
    w = w.dropna()
    diff = w[CALIBRATED] - w[CONVENTIONAL]
    n_higher = int((diff > EPS).sum())
    txt = f"calibrated higher at {n_higher}/{len(w)} p_tar"
    if n_higher:
        i = int(np.argmax(diff.to_numpy()))
        txt += (f" (worst at p_tar {w.index[i]:.3f}: {_f(w[CALIBRATED].iloc[i])} vs "
                f"{_f(w[CONVENTIONAL].iloc[i])})")
    txt += f"; mean outage conventional {_f(w[CONVENTIONAL].mean())}, calibrated {_f(w[CALIBRATED].mean())}"
    return Claim(cid, fig, text, variant, txt, _verdict(n_higher == 0))


def claim_cal_outage_zero(offload: pd.DataFrame, variant: str) -> Claim:
    cid, fig = "C6", "Fig. 4"
    p = P_TAR_OUTAGE_EDGE
    text = f"Calibrated outage is zero for every p_tar < {p}."
    w = _pair(offload, "outage")
    if w is None:
        return _na(cid, fig, text, variant, "no outage")
    below = w[CALIBRATED][w.index < p - P_TAR_MATCH].dropna()
    if below.empty:
        return _na(cid, fig, text, variant, f"no p_tar < {p} evaluated")
    n_pos = int((below > EPS).sum())
    txt = f"max calibrated outage for p_tar < {p}: {_f(below.max())}; non-zero at {n_pos}/{len(below)} p_tar"
    if n_pos:
        txt += f" (first at p_tar {below[below > EPS].index[0]:.3f})"
    return Claim(cid, fig, text, variant, txt, _verdict(n_pos == 0))


def claim_conv_outage_near(offload: pd.DataFrame, variant: str) -> Claim:
    cid, fig = "C7", "Fig. 4"
    p, target = P_TAR_OUTAGE_EDGE, CONV_OUTAGE_AT_EDGE
    text = f"Conventional outage is near {target} at p_tar = {p} (within +-{NEAR})."
    w = _pair(offload, "outage")
    if w is None:
        return _na(cid, fig, text, variant, "no outage")
    hit = _at(w[CONVENTIONAL].dropna(), p)
    if hit is None:
        return _na(cid, fig, text, variant,
                   f"no conventional outage at p_tar {p} (not on the evaluated grid, or no batch with a "
                   f"sample classified on the device)")
    cal = _at(w[CALIBRATED].dropna(), p)
    return Claim(cid, fig, text, variant,
                 f"outage at p_tar {hit[0]:.3f}: conventional {_f(hit[1])}, calibrated "
                 f"{_f(cal[1]) if cal else 'n/a'}",
                 _verdict(abs(hit[1] - target) <= NEAR + EPS))


def claim_missed_high_p_tar(deadline: pd.DataFrame, variant: str) -> Claim:
    cid, fig = "C8", "Fig. 5(c)"
    p = P_TAR_HIGH
    text = (f"At p_tar = {p}, for a large t_tar the calibrated network reaches a missed-deadline probability "
            f"near {CAL_MISSED_REACHABLE} (<= {CAL_MISSED_REACHABLE + NEAR:g}) while the conventional one "
            f"stays near {CONV_MISSED_FLOOR} or above (>= {CONV_MISSED_FLOOR - NEAR:g}).")
    w = _deadline_curves(deadline, p)
    if w is None or w.empty:
        return _na(cid, fig, text, variant, f"no missed-deadline curves at p_tar {p}")
    cal_min, conv_min = float(w[CALIBRATED].min()), float(w[CONVENTIONAL].min())
    t_cal = float(w[CALIBRATED].idxmin())
    ok_cal = cal_min <= CAL_MISSED_REACHABLE + NEAR + EPS
    ok_conv = conv_min >= CONV_MISSED_FLOOR - NEAR - EPS
    return Claim(cid, fig, text, variant,
                 f"lowest over t_tar <= {w.index.max():g} ms: calibrated {_f(cal_min)} (from t_tar {t_cal:g} ms), "
                 f"conventional {_f(conv_min)}",
                 _verdict(ok_cal and ok_conv))


def claim_missed_low_p_tar(deadline: pd.DataFrame, variant: str) -> Claim:
    cid, fig = "C9", "Fig. 5(a)"
    p = P_TAR_LOW
    text = f"At p_tar = {p} the conventional network can have the lower missed-deadline probability (for some t_tar)."
    w = _deadline_curves(deadline, p)
    if w is None or w.empty:
        return _na(cid, fig, text, variant, f"no missed-deadline curves at p_tar {p}")
    diff = w[CALIBRATED] - w[CONVENTIONAL]
    n_lower = int((diff > EPS).sum())
    txt = f"conventional lower at {n_lower}/{len(w)} t_tar"
    if n_lower:
        t = float(diff.idxmax())
        txt += (f" (largest gap at t_tar {t:g} ms: conventional {_f(w.loc[t, CONVENTIONAL])}, "
                f"calibrated {_f(w.loc[t, CALIBRATED])})")
    t_last = w.index.max()
    txt += (f"; at t_tar {t_last:g} ms: conventional {_f(w.loc[t_last, CONVENTIONAL])}, "
            f"calibrated {_f(w.loc[t_last, CALIBRATED])}")
    return Claim(cid, fig, text, variant, txt, _verdict(n_lower > 0))


# --------------------------------------------------------------------------- two-branch claims


def claim_two_branch_outage(offload_one: pd.DataFrame | None, offload_two: pd.DataFrame | None,
                            one: str | None, two: str | None) -> Claim:
    cid, fig = "C10", "Fig. 7"
    text = (f"With two branches the conventional network's outage grows (mean over p_tar above the "
            f"one-branch one) while the calibrated one's stays very low (mean <= {VERY_LOW}).")
    label = f"{one} vs {two}" if one and two else (one or two)
    if offload_one is None or offload_two is None:
        return _na(cid, fig, text, label, "needs a one-branch and a two-branch variant")
    w1, w2 = _pair(offload_one, "outage"), _pair(offload_two, "outage")
    if w1 is None or w2 is None:
        return _na(cid, fig, text, label, "no outage")
    common = w1.index.intersection(w2.index)
    if len(common) == 0:
        return _na(cid, fig, text, label, "no common p_tar")
    w1, w2 = w1.loc[common], w2.loc[common]
    conv1, conv2 = float(w1[CONVENTIONAL].mean()), float(w2[CONVENTIONAL].mean())
    cal1, cal2 = float(w1[CALIBRATED].mean()), float(w2[CALIBRATED].mean())
    ok = conv2 > conv1 + EPS and cal2 <= VERY_LOW + EPS
    return Claim(cid, fig, text, label,
                 f"mean outage over {len(common)} p_tar: conventional {_f(conv1)} -> {_f(conv2)}, "
                 f"calibrated {_f(cal1)} -> {_f(cal2)} (one -> two branches)",
                 _verdict(ok))


def claim_two_branch_missed(deadline_one: pd.DataFrame | None, deadline_two: pd.DataFrame | None,
                            one: str | None, two: str | None) -> Claim:
    cid, fig = "C11", "Fig. 6 vs 5"
    ps = ", ".join(f"{p:g}" for p in P_TAR_TWO_BRANCH)
    text = (f"At p_tar {ps} and the largest t_tar, the conventional two-branch network misses the deadline "
            f"more often than the one-branch one; the calibrated two-branch network does not.")
    label = f"{one} vs {two}" if one and two else (one or two)
    if deadline_one is None or deadline_two is None:
        return _na(cid, fig, text, label, "needs a one-branch and a two-branch variant")
    parts, ok = [], True
    for p in P_TAR_TWO_BRANCH:
        w1, w2 = _deadline_curves(deadline_one, p), _deadline_curves(deadline_two, p)
        if w1 is None or w2 is None or w1.empty or w2.empty:
            return _na(cid, fig, text, label, f"no missed-deadline curves at p_tar {p} for both variants")
        t = min(w1.index.max(), w2.index.max())
        a1, a2 = w1[w1.index <= t].iloc[-1], w2[w2.index <= t].iloc[-1]
        ok &= bool(a2[CONVENTIONAL] > a1[CONVENTIONAL] + EPS and a2[CALIBRATED] <= a1[CALIBRATED] + EPS)
        parts.append(f"p_tar {p:g}, t_tar {t:g} ms: conventional {_f(a1[CONVENTIONAL])} -> {_f(a2[CONVENTIONAL])}, "
                     f"calibrated {_f(a1[CALIBRATED])} -> {_f(a2[CALIBRATED])}")
    return Claim(cid, fig, text, label, "; ".join(parts), _verdict(ok))


# --------------------------------------------------------------------------- the table


def paper_variants(variants: dict) -> tuple[str | None, str | None]:
    """The variants playing the paper's one-branch and two-branch networks: the first (in params
    order) with exactly 1 and 2 side branches; None where there is none."""
    one = next((v for v, spec in variants.items() if len((spec or {}).get("branches", [])) == 1), None)
    two = next((v for v, spec in variants.items() if len((spec or {}).get("branches", [])) == 2), None)
    return one, two


ONE_BRANCH_OFFLOAD: tuple[Callable[[pd.DataFrame, str], Claim], ...] = (
    claim_p_device_lower, claim_acc_device_meets_target, claim_acc_total_higher, claim_conf_tracks_acc,
    claim_outage_lower, claim_cal_outage_zero, claim_conv_outage_near,
)
ONE_BRANCH_DEADLINE: tuple[Callable[[pd.DataFrame, str], Claim], ...] = (
    claim_missed_high_p_tar, claim_missed_low_p_tar,
)
COLUMNS = ["id", "figure", "claim", "variant", "numbers", "verdict"]


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
    for fn in ONE_BRANCH_OFFLOAD:
        rows.append(fn(off1, one_branch) if off1 is not None else
                    _na_like(fn, off1, one_branch, "no one-branch variant"))
    for fn in ONE_BRANCH_DEADLINE:
        rows.append(fn(dl1, one_branch) if dl1 is not None else
                    _na_like(fn, dl1, one_branch, "no one-branch variant"))
    off2 = offload.get(two_branch) if two_branch else None
    dl2 = deadline.get(two_branch) if two_branch else None
    rows.append(claim_two_branch_outage(off1, off2, one_branch, two_branch))
    rows.append(claim_two_branch_missed(dl1, dl2, one_branch, two_branch))
    return pd.DataFrame([asdict(r) for r in rows], columns=COLUMNS)


def _na_like(fn: Callable[[pd.DataFrame, str], Claim], _df: object, variant: str | None, why: str) -> Claim:
    """The not-applicable row of claim ``fn`` (its id, figure and text, taken from a run on empty data)."""
    probe = fn(pd.DataFrame(), variant or "-")
    return Claim(probe.id, probe.figure, probe.claim, variant or "-", why, NOT_APPLICABLE)


def summary(table: pd.DataFrame) -> dict[str, int]:
    """Count of claims per verdict."""
    return {v: int((table["verdict"] == v).sum()) for v in (HOLDS, DOES_NOT_HOLD, NOT_APPLICABLE)}
