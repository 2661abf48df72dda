"""The paper's missed-deadline claims (C8, C9: Fig. 5; C11: Figs. 5 vs 6) and the rule they share: where
latency no longer binds on the missed-deadline curves.

Where latency no longer binds ("for a large t_tar", "sufficiently large latency targets"): at the
largest t_tar of the grid, provided every curve is flat (unchanged within EPS) over at least the
last two grid points; otherwise :data:`~eeoffload.claims_evidence.NOT_ENOUGH_DATA`
(:func:`deadline_curves`). The verdict rules themselves are :mod:`eeoffload.claims_evidence`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from eeoffload.claims_evidence import (
    CALIBRATED,
    CONVENTIONAL,
    DOES_NOT_HOLD,
    EPS,
    HOLDS,
    INCONCLUSIVE,
    NOT_ENOUGH_DATA,
    P_TAR_MATCH,
    Band,
    Claim,
    bands_of,
    combine,
    coverage_text,
    sig_above,
    strictly_below,
)
from eeoffload.claims_spec import (
    C9_MIN_SHARE,
    CAL_MISSED_REACHABLE,
    CONV_MISSED_FLOOR,
    NEAR,
    P_TAR_HIGH,
    P_TAR_LOW,
    P_TAR_TWO_BRANCH,
    claim_row,
    fmt,
    fmt_ci,
    not_applicable,
)


@dataclass
class Curves:
    """The missed-deadline curves (missed_deadline vs t_tar_ms) of both calibrations at one p_tar."""

    bands: dict[str, Band]
    n_def: int  # t_tar where both curves are defined
    n_all: int  # t_tar of either curve
    free: tuple[float, float] | str  # (t_free, t_max) where latency no longer binds, or why not judged

    @property
    def coverage(self) -> float:
        return self.n_def / max(self.n_all, 1)


def _flat_from(bands: dict[str, Band]) -> tuple[float, float] | None:
    """(t_free, t_max): the smallest t_tar from which every curve equals its value at the largest
    t_tar (within EPS), and the largest t_tar; None if some curve is undefined at the end."""
    t_free, t_max = -np.inf, None
    for b in bands.values():
        v = b.v.dropna()
        if v.empty:
            return None
        last = float(v.iloc[-1])
        t_max = float(v.index[-1]) if t_max is None else min(t_max, float(v.index[-1]))
        differs = np.abs(v.to_numpy(float) - last) > EPS
        t = float(v.index[0]) if not differs.any() else float(v.index[np.nonzero(differs)[0][-1] + 1])
        t_free = max(t_free, t)
    return t_free, t_max


def _latency_free(bands: dict[str, Band]) -> tuple[float, float] | str:
    """(t_free, t_max) where latency no longer binds, or the reason it cannot be judged."""
    flat = _flat_from(bands)
    if flat is None:
        return "missed deadline undefined at the largest t_tar"
    t_free, t_max = flat
    if t_free >= t_max:
        return (f"the curves still change at the largest t_tar ({t_max:g} ms): latency may still bind, the "
                f"t_tar grid ends too early")
    return t_free, t_max


def deadline_curves(deadline: pd.DataFrame | None, p: float) -> Curves | None:
    """The curves at p_tar ``p`` (within :data:`P_TAR_MATCH`), their coverage and where latency no
    longer binds; None if the frame has no such curves."""
    need = {"calibration", "p_tar", "t_tar_ms", "missed_deadline"}
    if deadline is None or not need <= set(deadline.columns):
        return None
    sub = deadline[np.abs(deadline["p_tar"].to_numpy(dtype=float) - p) <= P_TAR_MATCH]
    if sub.empty:
        return None
    bands = bands_of(sub, "missed_deadline", "t_tar_ms")
    if bands is None:
        return None
    grid = bands[CONVENTIONAL].v.index.union(bands[CALIBRATED].v.index)
    ok = bands[CONVENTIONAL].v.reindex(grid).notna().to_numpy() & bands[CALIBRATED].v.reindex(grid).notna().to_numpy()
    return Curves(bands, int(ok.sum()), len(grid), _latency_free(bands))


# --------------------------------------------------------------------------- the claims


def _curves_or_row(cid: str, deadline: pd.DataFrame | None, p: float, variant: str) -> Curves | Claim:
    """C8/C9's prologue: the curves at p_tar ``p`` with where latency no longer binds, or the claim's
    row when there are none (not applicable) or latency may still bind at the grid's end."""
    w = deadline_curves(deadline, p)
    if w is None:
        return not_applicable(cid, variant, f"no missed-deadline curves at p_tar {p}")
    if isinstance(w.free, str):
        return claim_row(cid, variant, w.free, NOT_ENOUGH_DATA, 0.0, w.bands[CONVENTIONAL], w.bands[CALIBRATED])
    return w


def claim_missed_high_p_tar(deadline: pd.DataFrame, variant: str) -> Claim:
    cid = "C8"
    w = _curves_or_row(cid, deadline, P_TAR_HIGH, variant)
    if isinstance(w, Claim):
        return w
    (t_free, t_max), conv_b, cal_b = w.free, w.bands[CONVENTIONAL], w.bands[CALIBRATED]
    cal, conv = cal_b.at(t_max), conv_b.at(t_max)
    if not (np.isfinite(cal[0]) and np.isfinite(conv[0])):
        return claim_row(cid, variant, f"missed deadline undefined at t_tar {t_max:g} ms", NOT_ENOUGH_DATA, 0.0,
                    conv_b, cal_b)
    cal_max, conv_min = CAL_MISSED_REACHABLE + NEAR, CONV_MISSED_FLOOR - NEAR
    ok_cal = HOLDS if cal[0] <= cal_max + EPS else (DOES_NOT_HOLD if cal[1] > cal_max + EPS else INCONCLUSIVE)
    ok_conv = HOLDS if conv[0] >= conv_min - EPS else (DOES_NOT_HOLD if conv[2] < conv_min - EPS else INCONCLUSIVE)
    numbers = (f"{coverage_text(w.n_def, w.n_all, 't_tar')}; latency no longer binds from t_tar {t_free:g} ms; at "
               f"t_tar {t_max:g} ms: calibrated {fmt(cal[0])} {fmt_ci(cal[1], cal[2])}, conventional "
               f"{fmt(conv[0])} {fmt_ci(conv[1], conv[2])}")
    return claim_row(cid, variant, numbers, combine(ok_cal, ok_conv), w.coverage, conv_b, cal_b)


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
        return claim_row(cid, variant, "the curves never change over the t_tar grid: latency never binds",
                    NOT_ENOUGH_DATA, 0.0, conv, cal)
    t_first = float(grid[np.nonzero(left)[0][0]])
    rng = grid[(grid >= t_first) & (grid < t_free)]
    if len(rng) == 0:
        return claim_row(cid, variant, "no t_tar where latency binds", NOT_ENOUGH_DATA, 0.0, conv, cal)
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
        numbers += (f"; largest gap at t_tar {t:g} ms: conventional {fmt(conv.v.loc[t])} "
                    f"{fmt_ci(conv.lo.loc[t], conv.hi.loc[t])}, calibrated {fmt(cal.v.loc[t])} "
                    f"{fmt_ci(cal.lo.loc[t], cal.hi.loc[t])}")
    return claim_row(cid, variant, numbers, verdict, w.coverage, conv, cal)


def claim_two_branch_missed(deadline_one: pd.DataFrame | None, deadline_two: pd.DataFrame | None,
                            one: str | None, two: str | None) -> Claim:
    cid = "C11"
    label = f"{one} vs {two}" if one and two else (one or two)
    if deadline_one is None or deadline_two is None:
        return not_applicable(cid, label, "needs a one-branch and a two-branch variant")
    parts, verdicts, bands, coverage = [], [], [], 1.0
    for p in P_TAR_TWO_BRANCH:
        w1, w2 = deadline_curves(deadline_one, p), deadline_curves(deadline_two, p)
        if w1 is None or w2 is None:
            return not_applicable(cid, label, f"no missed-deadline curves at p_tar {p} for both variants")
        bands += [w1.bands[CONVENTIONAL], w1.bands[CALIBRATED], w2.bands[CONVENTIONAL], w2.bands[CALIBRATED]]
        coverage = min(coverage, w1.coverage, w2.coverage)
        f1, f2 = w1.free, w2.free
        if isinstance(f1, str) or isinstance(f2, str):
            return claim_row(cid, label, f"p_tar {p:g}: {f1 if isinstance(f1, str) else f2}", NOT_ENOUGH_DATA, 0.0,
                        *bands)
        t = min(f1[1], f2[1])
        if t < max(f1[0], f2[0]):
            return claim_row(cid, label, f"p_tar {p:g}: the two variants' t_tar grids end before both are flat",
                        NOT_ENOUGH_DATA, 0.0, *bands)
        a1c, a2c = w1.bands[CONVENTIONAL].at(t), w2.bands[CONVENTIONAL].at(t)
        a1k, a2k = w1.bands[CALIBRATED].at(t), w2.bands[CALIBRATED].at(t)
        if not all(np.isfinite(x[0]) for x in (a1c, a2c, a1k, a2k)):
            return claim_row(cid, label, f"p_tar {p:g}: missed deadline undefined at t_tar {t:g} ms for one of the "
                        f"variants", NOT_ENOUGH_DATA, 0.0, *bands)
        conv_more = strictly_below(a1c, a2c)
        cal_not = (DOES_NOT_HOLD if a2k[1] > a1k[2] + EPS else (INCONCLUSIVE if a2k[0] > a1k[0] + EPS else HOLDS))
        verdicts += [conv_more, cal_not]
        parts.append(f"p_tar {p:g}, t_tar {t:g} ms: conventional {fmt(a1c[0])} {fmt_ci(a1c[1], a1c[2])} -> "
                     f"{fmt(a2c[0])} {fmt_ci(a2c[1], a2c[2])}, calibrated {fmt(a1k[0])} "
                     f"{fmt_ci(a1k[1], a1k[2])} -> {fmt(a2k[0])} {fmt_ci(a2k[1], a2k[2])}")
    return claim_row(cid, label, "; ".join(parts), combine(*verdicts), coverage, *bands)
