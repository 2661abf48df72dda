"""The paper's claims, checked against this run's metrics: pure functions over the metrics DataFrames.

Each check returns a :class:`Claim`: the claim as the paper states it (restated where the paper's
words need a testable form), this run's numbers that decided the verdict, and one of five verdicts:

* :data:`HOLDS`: the data cover the range the claim speaks of, and the point estimates satisfy it;
  where the claim asserts a difference ("lower", "grows", "outperforms"), that difference lies
  outside the noise intervals;
* :data:`DOES_NOT_HOLD`: a difference contrary to the claim lies outside the noise intervals;
* :data:`INCONCLUSIVE`: neither: the point estimates contradict the claim only within the noise,
  or the difference it asserts is inside the noise, or the noise is unknown (see below);
* :data:`NOT_ENOUGH_DATA`: the claim's quantity is defined on less than :data:`MIN_COVERAGE` of the
  range it speaks of (e.g. no sample classified on the device at most p_tar), or the t_tar grid
  ends before latency stops binding;
* :data:`NOT_APPLICABLE`: the data needed is missing altogether (no two-branch variant, a p_tar
  that the evaluated grid lacks, no such column).

Nothing here is written by hand from a look at the figures.

Inputs are the DataFrames of ``reports/metrics/<variant>/offload.parquet`` (one row per
calibration x p_tar) and ``deadline.parquet`` (one row per calibration x p_tar x t_tar_ms); see
docs/metrics.md. They may also be seed aggregates (:func:`eeoffload.statistics.aggregate_over_seeds`
over those tables, with the population bounds among the aggregated columns).

Noise rule. Every value v comes with a noise interval [lo, hi], the union of
  * its population interval: columns :data:`POPULATION_BOUNDS` (Wilson or Clopper-Pearson 95%, from
    the evaluate stage). Frames without them (an older evaluate) get the outage interval derived
    from ``outage`` and ``n_batches`` (Clopper-Pearson on round(outage * n_batches) of n_batches);
    any other missing population interval is **unknown**;
  * when present, its seed interval: ``<col>_seed_lo``/``<col>_seed_hi`` (t-interval over >= 3
    seeds), else ``<col>_seed_min``/``<col>_seed_max`` (the seeds' spread).
A difference between a and b counts only when the intervals are disjoint (a.lo > b.hi or
a.hi < b.lo, beyond :data:`EPS`); a value differs from a constant c only when its whole interval
lies on one side of c. Where a population interval is unknown, no difference can count: a claim
that would hold or not hold on its point estimates is :data:`INCONCLUSIVE`, and its numbers say
"intervals unknown". A claim never holds on missing evidence.

Coverage rule. A claim "at every p_tar" speaks of the whole evaluated p_tar grid (C6: of its
part below 0.875; C10's level: of :data:`P_TAR_OUTAGE_RANGE`); it needs its quantity defined at a
share >= :data:`MIN_COVERAGE` of those grid points, else :data:`NOT_ENOUGH_DATA`. For claims
comparing the two calibrations, a p_tar counts only where at least one of them classifies a
sample on the device (elsewhere both offload everything and the comparison says nothing).

Tolerances. Fixed from the paper's wording before looking at any result, the same for every run:

* "a <= b", "a >= b", "zero": exact, up to :data:`EPS` (float round-off only), and the noise rule.
* "near x", "close to x", "around x": within :data:`NEAR` (+-0.1 in probability) of x.
* "greater or close to p_tar" (accuracy on device, Fig. 3(b)): accuracy >= p_tar - :data:`CLOSE_ACC`.
* "very low" outage: at most :data:`VERY_LOW` at every p_tar of :data:`P_TAR_OUTAGE_RANGE`.
* "for a large t_tar" / "sufficiently large latency targets" (C8, C11): where latency no longer
  binds: the value at the largest t_tar of the grid, provided both curves are flat (unchanged
  within EPS) over at least the last two grid points; otherwise :data:`NOT_ENOUGH_DATA`.
* "where latency binds" (C9): the t_tar grid points from the first one at which either curve has
  left its value at the smallest t_tar, up to (not including) the t_tar from which both curves are
  flat.
* A p_tar of a claim (0.75, 0.85, 0.875, ...) is looked up on the evaluated grid within
  :data:`P_TAR_MATCH`; if the grid lacks it the claim is not applicable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from eeoffload.statistics import clopper_pearson_interval

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
INCONCLUSIVE = "inconclusive"
NOT_ENOUGH_DATA = "not enough data"
NOT_APPLICABLE = "not applicable"
#: Every verdict, in the order the report lists them.
VERDICTS = (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE, NOT_ENOUGH_DATA, NOT_APPLICABLE)

CONVENTIONAL = "conventional"
CALIBRATED = "calibrated"

#: Float round-off allowed in exact comparisons ("<=", ">=", "is zero").
EPS = 1e-9
#: "near x" / "close to x" / "around x" in probability: |value - x| <= NEAR.
NEAR = 0.1
#: "accuracy always greater or close to p_tar": accuracy >= p_tar - CLOSE_ACC.
CLOSE_ACC = 0.01
#: "very low" outage probability: at most VERY_LOW at every p_tar of P_TAR_OUTAGE_RANGE.
VERY_LOW = 0.05
#: A claim's p_tar is matched to the evaluated grid within this distance.
P_TAR_MATCH = 1e-6
#: Coverage rule: share of the claim's p_tar (or t_tar) range where its quantity must be defined.
MIN_COVERAGE = 0.8
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

#: Population interval columns (lo, hi) of each quantity (written by the evaluate stage).
POPULATION_BOUNDS = {
    "p_device": ("p_device_lo", "p_device_hi"),
    "acc_device": ("acc_device_lo", "acc_device_hi"),
    "acc_total": ("acc_total_lo", "acc_total_hi"),
    "outage": ("outage_lo", "outage_hi"),
    "missed_deadline": ("missed_lo", "missed_hi"),
}


@dataclass(frozen=True)
class Claim:
    id: str
    figure: str
    claim: str
    variant: str
    numbers: str
    verdict: str
    coverage: float = float("nan")  # share of the claim's range with defined values (NaN: not applicable)
    intervals: str = "-"  # what the noise intervals were: population / population+seeds / unknown


def _na(cid: str, figure: str, claim: str, variant: str | None, why: str) -> Claim:
    return Claim(cid, figure, claim, variant or "-", why, NOT_APPLICABLE)


def _f(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"


# --------------------------------------------------------------------------- bands (value + noise)


@dataclass
class Band:
    """One quantity along an index (p_tar or t_tar): value, noise interval, and what the noise is."""

    v: pd.Series
    lo: pd.Series  # -inf where the population interval is unknown
    hi: pd.Series  # +inf where the population interval is unknown
    known: bool  # population interval known (given or derived) wherever v is defined
    seeds: bool  # a seed interval was merged in

    def loc(self, index: pd.Index) -> Band:
        return Band(self.v.reindex(index), self.lo.reindex(index), self.hi.reindex(index), self.known, self.seeds)

    def mean(self) -> tuple[float, float, float]:
        """Mean of value, lo and hi (a conservative interval of the mean: errors fully correlated)."""
        return float(self.v.mean()), float(self.lo.mean()), float(self.hi.mean())

    def at(self, key: float) -> tuple[float, float, float]:
        """(value, lo, hi) at ``key``; value NaN where the index lacks it."""
        if key not in self.v.index:
            return np.nan, -np.inf, np.inf
        return float(self.v.loc[key]), float(self.lo.loc[key]), float(self.hi.loc[key])


def _band(rows: pd.DataFrame, column: str, index: str) -> Band:
    """The band of ``column`` over ``index`` for rows of one calibration (first row per index)."""
    rows = rows.drop_duplicates(subset=index).set_index(index).sort_index()
    rows.index = rows.index.astype(float)
    v = pd.to_numeric(rows[column], errors="coerce").astype(float)
    lo_c, hi_c = POPULATION_BOUNDS.get(column, (f"{column}_lo", f"{column}_hi"))
    if lo_c in rows.columns and hi_c in rows.columns:
        lo = pd.to_numeric(rows[lo_c], errors="coerce").astype(float)
        hi = pd.to_numeric(rows[hi_c], errors="coerce").astype(float)
    elif column == "outage" and "n_batches" in rows.columns:
        n = pd.to_numeric(rows["n_batches"], errors="coerce").to_numpy(float)
        k = np.round(v.to_numpy(float) * n)
        k = np.where(np.isfinite(k) & (n > 0), k, np.nan)
        lo_a, hi_a = clopper_pearson_interval(k, np.where(np.isfinite(k), n, 0))
        lo, hi = pd.Series(lo_a, index=v.index), pd.Series(hi_a, index=v.index)
    else:
        lo = pd.Series(np.nan, index=v.index)
        hi = pd.Series(np.nan, index=v.index)
    defined = v.notna()
    known = bool((lo.notna() & hi.notna())[defined].all())
    lo = lo.where(lo.notna(), -np.inf)
    hi = hi.where(hi.notna(), np.inf)
    seeds = False
    for lo_s, hi_s in ((f"{column}_seed_lo", f"{column}_seed_hi"), (f"{column}_seed_min", f"{column}_seed_max")):
        if lo_s in rows.columns and hi_s in rows.columns:
            slo = pd.to_numeric(rows[lo_s], errors="coerce").astype(float)
            shi = pd.to_numeric(rows[hi_s], errors="coerce").astype(float)
            use = slo.notna() & shi.notna()
            if use[defined].any():
                seeds = True
            lo = lo.where(~use, np.minimum(lo, slo))
            hi = hi.where(~use, np.maximum(hi, shi))
            if use[defined].all():
                break  # t-intervals everywhere: the spread is not needed
    return Band(v, lo, hi, known, seeds)


def _bands(offload: pd.DataFrame | None, column: str, index: str = "p_tar") -> dict[str, Band] | None:
    """Conventional and calibrated bands of ``column``, or None if the frame lacks them."""
    if offload is None or not {"calibration", index, column} <= set(offload.columns):
        return None
    out = {}
    for cal in (CONVENTIONAL, CALIBRATED):
        rows = offload[offload["calibration"] == cal]
        if rows.empty:
            return None
        out[cal] = _band(rows, column, index)
    return out


def _intervals_label(*bands: Band) -> str:
    if not all(b.known for b in bands):
        return "unknown"
    return "population+seeds" if any(b.seeds for b in bands) else "population"


def _intervals_text(*bands: Band) -> str:
    label = _intervals_label(*bands)
    if label == "unknown":
        return ("; intervals unknown (no population interval columns: metrics from an older evaluate), "
                "so no difference can count")
    return "; intervals: " + ("population 95% and seeds" if label == "population+seeds" else "population 95%")


# --------------------------------------------------------------------------- comparisons


def _sig_above(a_lo: np.ndarray, b_hi: np.ndarray) -> np.ndarray:
    """a above b beyond the noise: a's interval lies wholly above b's."""
    return np.asarray(a_lo, float) > np.asarray(b_hi, float) + EPS


def _combine(*verdicts: str) -> str:
    """Worst of several parts: does not hold > inconclusive > holds."""
    if DOES_NOT_HOLD in verdicts:
        return DOES_NOT_HOLD
    if INCONCLUSIVE in verdicts:
        return INCONCLUSIVE
    return HOLDS


def _at_most(a: Band, b: Band | float | pd.Series, index: pd.Index) -> tuple[str, int, int, list[float]]:
    """Non-strict "a <= b at every point of ``index``": (verdict, point violations, violations beyond
    the noise, p_tar of those beyond the noise)."""
    av, alo = a.v.reindex(index).to_numpy(float), a.lo.reindex(index).to_numpy(float)
    if isinstance(b, Band):
        bv, bhi = b.v.reindex(index).to_numpy(float), b.hi.reindex(index).to_numpy(float)
    else:
        bv = np.broadcast_to(np.asarray(b.reindex(index) if isinstance(b, pd.Series) else b, float), av.shape)
        bhi = bv
    point = av > bv + EPS
    sig = point & _sig_above(alo, bhi)
    verdict = DOES_NOT_HOLD if sig.any() else (INCONCLUSIVE if point.any() else HOLDS)
    return verdict, int(point.sum()), int(sig.sum()), [float(x) for x in np.asarray(index)[sig]]


def _neg(b: Band) -> Band:
    return Band(-b.v, -b.hi, -b.lo, b.known, b.seeds)


def _strictly_below(a: tuple[float, float, float], b: tuple[float, float, float]) -> str:
    """Strict "a < b" on (value, lo, hi): holds if a.hi < b.lo, does not hold if a.lo > b.hi."""
    if a[2] < b[1] - EPS:
        return HOLDS
    if a[1] > b[2] + EPS:
        return DOES_NOT_HOLD
    return INCONCLUSIVE


def _finish(cid: str, fig: str, text: str, variant: str, numbers: str, verdict: str, coverage: float,
            *bands: Band) -> Claim:
    """Apply the coverage rule and the unknown-noise rule, then build the row."""
    label = _intervals_label(*bands) if bands else "-"
    numbers += _intervals_text(*bands) if bands else ""
    if not coverage >= MIN_COVERAGE:
        verdict = NOT_ENOUGH_DATA
    elif label == "unknown" and verdict in (HOLDS, DOES_NOT_HOLD):
        verdict = INCONCLUSIVE
    return Claim(cid, fig, text, variant, numbers, verdict, float(coverage), label)


def _coverage_text(n_def: int, n_all: int, what: str = "p_tar") -> str:
    share = n_def / n_all if n_all else 0.0
    return f"defined at {n_def}/{n_all} {what} ({share:.0%}; needs {MIN_COVERAGE:.0%})"


def _device_points(offload: pd.DataFrame) -> pd.Index:
    """p_tar where at least one calibration classifies a sample on the device (all p_tar if the
    frame has no p_device column)."""
    grid = pd.Index(sorted(offload["p_tar"].astype(float).unique()))
    if "p_device" not in offload.columns:
        return grid
    on = offload[pd.to_numeric(offload["p_device"], errors="coerce") > 0]
    return pd.Index(sorted(on["p_tar"].astype(float).unique()))


def _paired_device_points(offload: pd.DataFrame, b: dict) -> tuple[pd.Index, pd.Index]:
    """(the p_tar grid of both calibrations, its points where a sample is kept on the device and
    both calibrations' values are defined): what C1 and C3 compare."""
    grid = b[CONVENTIONAL].v.index.union(b[CALIBRATED].v.index)
    idx = _device_points(offload).intersection(grid)
    keep = b[CONVENTIONAL].v.reindex(idx).notna().to_numpy() & b[CALIBRATED].v.reindex(idx).notna().to_numpy()
    return grid, idx[keep]


# --------------------------------------------------------------------------- one-branch claims


def claim_p_device_lower(offload: pd.DataFrame, variant: str) -> Claim:
    cid, fig = "C1", "Fig. 2"
    text = ("Calibration lowers the probability of classifying on the device "
            "(calibrated <= conventional at every p_tar, and lower on average beyond the intervals).")
    b = _bands(offload, "p_device")
    if b is None:
        return _na(cid, fig, text, variant, "no conventional/calibrated p_device")
    grid, idx = _paired_device_points(offload, b)
    every, n_point, n_sig, _ = _at_most(b[CALIBRATED], b[CONVENTIONAL], idx)
    cal, conv = b[CALIBRATED].loc(idx), b[CONVENTIONAL].loc(idx)
    mean_cal, mean_conv = cal.mean(), conv.mean()
    lower = _strictly_below(mean_cal, mean_conv) if len(idx) else INCONCLUSIVE
    numbers = (f"{_coverage_text(len(idx), len(grid))} (p_tar with a sample on the device); "
               f"calibrated higher at {n_point}/{len(idx)} p_tar, beyond the intervals at {n_sig}; "
               f"mean p_device conventional {_f(mean_conv[0])} [{_f(mean_conv[1])}, {_f(mean_conv[2])}], "
               f"calibrated {_f(mean_cal[0])} [{_f(mean_cal[1])}, {_f(mean_cal[2])}]")
    return _finish(cid, fig, text, variant, numbers, _combine(every, lower), len(idx) / max(len(grid), 1),
                   b[CONVENTIONAL], b[CALIBRATED])


def claim_acc_device_meets_target(offload: pd.DataFrame, variant: str) -> Claim:
    cid, fig = "C2", "Fig. 3(b)"
    text = (f"Calibrated accuracy on device >= p_tar for every p_tar (paper: 'greater or close to'; slack "
            f"{CLOSE_ACC}); judged where samples are classified on the device.")
    need = {"calibration", "p_tar", "acc_device", "p_device"}
    if offload is None or not need <= set(offload.columns):
        return _na(cid, fig, text, variant, "no acc_device")
    cal_rows = offload[offload["calibration"] == CALIBRATED]
    if cal_rows.empty:
        return _na(cid, fig, text, variant, "no calibrated rows")
    grid = pd.Index(sorted(cal_rows["p_tar"].astype(float).unique()))
    band = _band(cal_rows, "acc_device", "p_tar")
    on = cal_rows.drop_duplicates("p_tar").set_index("p_tar")["p_device"]
    on.index = on.index.astype(float)
    idx = grid[(band.v.reindex(grid).notna() & (on.reindex(grid) > 0)).to_numpy()]
    target = pd.Series(idx.to_numpy(float) - CLOSE_ACC, index=idx)
    verdict, n_point, n_sig, _ = _at_most(_neg(band), -target, idx)
    numbers = f"{_coverage_text(len(idx), len(grid))}; calibrated below p_tar - {CLOSE_ACC} at {n_point}/{len(idx)}"
    numbers += f" p_tar, beyond the interval at {n_sig}"
    if len(idx):
        gap = band.v.reindex(idx) - idx.to_numpy(float)
        worst = float(gap.idxmin())
        v, lo, hi = band.at(worst)
        numbers += f" (worst: accuracy {_f(v)} [{_f(lo)}, {_f(hi)}] at p_tar {worst:.3f})"
    conv = offload[(offload["calibration"] == CONVENTIONAL) & (offload["p_device"] > 0)].dropna(subset=["acc_device"])
    if len(conv):
        conv_below = int((conv["acc_device"] < conv["p_tar"] - CLOSE_ACC - EPS).sum())
        numbers += f"; conventional below at {conv_below}/{len(conv)}"
    return _finish(cid, fig, text, variant, numbers, verdict, len(idx) / max(len(grid), 1), band)


def claim_acc_total_higher(offload: pd.DataFrame, variant: str) -> Claim:
    cid, fig = "C3", "Fig. 3(c)"
    text = ("Calibrated total accuracy (device + cloud) >= conventional at every p_tar, and higher on "
            "average beyond the intervals ('outperforms').")
    b = _bands(offload, "acc_total")
    if b is None:
        return _na(cid, fig, text, variant, "no acc_total")
    grid, idx = _paired_device_points(offload, b)
    every, n_point, n_sig, _ = _at_most(b[CONVENTIONAL], b[CALIBRATED], idx)
    cal, conv = b[CALIBRATED].loc(idx), b[CONVENTIONAL].loc(idx)
    mean_cal, mean_conv = cal.mean(), conv.mean()
    higher = _strictly_below(mean_conv, mean_cal) if len(idx) else INCONCLUSIVE
    diff = (cal.v - conv.v) if len(idx) else pd.Series(dtype=float)
    numbers = (f"{_coverage_text(len(idx), len(grid))} (p_tar with a sample on the device); "
               f"calibrated lower at {n_point}/{len(idx)} p_tar, beyond the intervals at {n_sig}")
    if len(idx):
        numbers += f" (difference min {diff.min():+.4f}, max {diff.max():+.4f})"
    numbers += (f"; mean conventional {_f(mean_conv[0])} [{_f(mean_conv[1])}, {_f(mean_conv[2])}], "
                f"calibrated {_f(mean_cal[0])} [{_f(mean_cal[1])}, {_f(mean_cal[2])}]")
    return _finish(cid, fig, text, variant, numbers, _combine(every, higher), len(idx) / max(len(grid), 1),
                   b[CONVENTIONAL], b[CALIBRATED])


def _gap(conf: pd.Series, acc: Band) -> tuple[float, float, float]:
    """Mean over the index of |conf - acc|, with the interval of that mean from acc's interval
    (distance from conf to [lo, hi] up to the farther end; errors fully correlated: conservative)."""
    c = conf.to_numpy(float)
    v, lo, hi = acc.v.to_numpy(float), acc.lo.to_numpy(float), acc.hi.to_numpy(float)
    g = np.abs(c - v)
    g_lo = np.maximum(0.0, np.maximum(c - hi, lo - c))
    g_hi = np.maximum(np.abs(c - lo), np.abs(c - hi))
    return float(g.mean()), float(g_lo.mean()), float(g_hi.mean())


def claim_conf_tracks_acc(offload: pd.DataFrame, variant: str) -> Claim:
    cid, fig = "C4", "Fig. 3(a)"
    text = ("Calibration brings the mean confidence on device closer to the accuracy on device "
            "(mean |confidence - accuracy| over p_tar smaller, beyond the intervals).")
    need = {"calibration", "p_tar", "conf_device", "acc_device"}
    if offload is None or not need <= set(offload.columns):
        return _na(cid, fig, text, variant, "no conf_device/acc_device")
    acc = _bands(offload, "acc_device")
    conf = _bands(offload, "conf_device")
    if acc is None or conf is None:
        return _na(cid, fig, text, variant, "no conventional/calibrated rows")
    grid = acc[CONVENTIONAL].v.index.union(acc[CALIBRATED].v.index)
    ok = np.ones(len(grid), bool)
    for cal in (CONVENTIONAL, CALIBRATED):
        ok &= acc[cal].v.reindex(grid).notna().to_numpy() & conf[cal].v.reindex(grid).notna().to_numpy()
    idx = grid[ok]
    if len(idx) == 0:
        return _finish(cid, fig, text, variant, f"{_coverage_text(0, len(grid))}", INCONCLUSIVE, 0.0,
                       acc[CONVENTIONAL], acc[CALIBRATED])
    gaps = {cal: _gap(conf[cal].v.reindex(idx), acc[cal].loc(idx)) for cal in (CONVENTIONAL, CALIBRATED)}
    verdict = _strictly_below(gaps[CALIBRATED], gaps[CONVENTIONAL])
    numbers = (f"{_coverage_text(len(idx), len(grid))} (both calibrations); mean |conf - acc| conventional "
               f"{_f(gaps[CONVENTIONAL][0])} [{_f(gaps[CONVENTIONAL][1])}, {_f(gaps[CONVENTIONAL][2])}], calibrated "
               f"{_f(gaps[CALIBRATED][0])} [{_f(gaps[CALIBRATED][1])}, {_f(gaps[CALIBRATED][2])}]")
    return _finish(cid, fig, text, variant, numbers, verdict, len(idx) / len(grid), acc[CONVENTIONAL],
                   acc[CALIBRATED])


def claim_outage_lower(offload: pd.DataFrame, variant: str) -> Claim:
    cid, fig = "C5", "Fig. 4"
    text = "Calibrated inference outage <= conventional, for every p_tar."
    b = _bands(offload, "outage")
    if b is None:
        return _na(cid, fig, text, variant, "no outage")
    grid = b[CONVENTIONAL].v.index.union(b[CALIBRATED].v.index)
    idx = grid[b[CONVENTIONAL].v.reindex(grid).notna().to_numpy() & b[CALIBRATED].v.reindex(grid).notna().to_numpy()]
    verdict, n_point, n_sig, _ = _at_most(b[CALIBRATED], b[CONVENTIONAL], idx)
    numbers = (f"{_coverage_text(len(idx), len(grid))} (both calibrations); calibrated higher at "
               f"{n_point}/{len(idx)} p_tar, beyond the intervals at {n_sig}")
    if n_point:
        diff = b[CALIBRATED].v.reindex(idx) - b[CONVENTIONAL].v.reindex(idx)
        p = float(diff.idxmax())
        numbers += (f" (worst at p_tar {p:.3f}: {_f(b[CALIBRATED].v.loc[p])} vs {_f(b[CONVENTIONAL].v.loc[p])})")
    if len(idx):
        numbers += (f"; mean outage conventional {_f(b[CONVENTIONAL].v.reindex(idx).mean())}, calibrated "
                    f"{_f(b[CALIBRATED].v.reindex(idx).mean())}")
    return _finish(cid, fig, text, variant, numbers, verdict, len(idx) / max(len(grid), 1), b[CONVENTIONAL],
                   b[CALIBRATED])


def claim_cal_outage_zero(offload: pd.DataFrame, variant: str) -> Claim:
    cid, fig = "C6", "Fig. 4"
    p = P_TAR_OUTAGE_EDGE
    text = f"Calibrated outage is zero for every p_tar < {p}."
    b = _bands(offload, "outage")
    if b is None:
        return _na(cid, fig, text, variant, "no outage")
    band = b[CALIBRATED]
    grid = band.v.index[band.v.index < p - P_TAR_MATCH]
    if len(grid) == 0:
        return _na(cid, fig, text, variant, f"no p_tar < {p} evaluated")
    idx = grid[band.v.reindex(grid).notna().to_numpy()]
    verdict, n_point, n_sig, _ = _at_most(band, 0.0, idx)
    numbers = f"{_coverage_text(len(idx), len(grid), f'p_tar < {p}')}"
    if len(idx):
        numbers += f"; max calibrated outage {_f(band.v.reindex(idx).max())}"
    numbers += f"; non-zero at {n_point}/{len(idx)} p_tar, beyond the interval at {n_sig}"
    if n_point:
        first = float(idx[(band.v.reindex(idx) > EPS).to_numpy()][0])
        numbers += f" (first at p_tar {first:.3f})"
    return _finish(cid, fig, text, variant, numbers, verdict, len(idx) / len(grid), band)


def _p_on_grid(index: pd.Index, p: float) -> float | None:
    idx = np.asarray(index, dtype=float)
    if idx.size == 0:
        return None
    i = int(np.argmin(np.abs(idx - p)))
    return float(idx[i]) if abs(idx[i] - p) <= P_TAR_MATCH else None


def claim_conv_outage_near(offload: pd.DataFrame, variant: str) -> Claim:
    cid, fig = "C7", "Fig. 4"
    p, target = P_TAR_OUTAGE_EDGE, CONV_OUTAGE_AT_EDGE
    text = f"Conventional outage is near {target} at p_tar = {p} (within +-{NEAR})."
    b = _bands(offload, "outage")
    if b is None:
        return _na(cid, fig, text, variant, "no outage")
    band = b[CONVENTIONAL]
    at = _p_on_grid(band.v.index, p)
    if at is None:
        return _na(cid, fig, text, variant, f"p_tar {p} is not on the evaluated grid")
    v, lo, hi = band.at(at)
    cal = b[CALIBRATED].v.get(at, np.nan)
    if not np.isfinite(v):
        return _finish(cid, fig, text, variant, f"{_coverage_text(0, 1)}: no batch with a sample classified on "
                       f"the device at p_tar {at:.3f}", INCONCLUSIVE, 0.0, band)
    lo_ok, hi_ok = target - NEAR, target + NEAR
    if abs(v - target) <= NEAR + EPS:
        verdict = HOLDS
    elif lo > hi_ok + EPS or hi < lo_ok - EPS:
        verdict = DOES_NOT_HOLD
    else:
        verdict = INCONCLUSIVE
    numbers = (f"outage at p_tar {at:.3f}: conventional {_f(v)} [{_f(lo)}, {_f(hi)}] (band {lo_ok:g}..{hi_ok:g}), "
               f"calibrated {_f(cal)}")
    return _finish(cid, fig, text, variant, numbers, verdict, 1.0, band)


# --------------------------------------------------------------------------- missed deadline


def _curves(deadline: pd.DataFrame | None, p: float) -> dict[str, Band] | None:
    """missed_deadline vs t_tar_ms at p_tar p, conventional and calibrated."""
    need = {"calibration", "p_tar", "t_tar_ms", "missed_deadline"}
    if deadline is None or not need <= set(deadline.columns):
        return None
    sub = deadline[np.abs(deadline["p_tar"].to_numpy(dtype=float) - p) <= P_TAR_MATCH]
    if sub.empty:
        return None
    return _bands(sub, "missed_deadline", "t_tar_ms")


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


def _curve_coverage(bands: dict[str, Band]) -> tuple[int, int]:
    grid = bands[CONVENTIONAL].v.index.union(bands[CALIBRATED].v.index)
    ok = bands[CONVENTIONAL].v.reindex(grid).notna().to_numpy() & bands[CALIBRATED].v.reindex(grid).notna().to_numpy()
    return int(ok.sum()), len(grid)


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


def claim_missed_high_p_tar(deadline: pd.DataFrame, variant: str) -> Claim:
    cid, fig = "C8", "Fig. 5(c)"
    p = P_TAR_HIGH
    text = (f"At p_tar = {p}, judged where latency no longer binds (largest t_tar, both curves flat), the "
            f"calibrated network's missed-deadline probability is near {CAL_MISSED_REACHABLE} (<= "
            f"{CAL_MISSED_REACHABLE + NEAR:g}) while the conventional one stays near {CONV_MISSED_FLOOR} or above "
            f"(>= {CONV_MISSED_FLOOR - NEAR:g}).")
    b = _curves(deadline, p)
    if b is None:
        return _na(cid, fig, text, variant, f"no missed-deadline curves at p_tar {p}")
    n_def, n_all = _curve_coverage(b)
    free = _latency_free(b)
    if isinstance(free, str):
        return _finish(cid, fig, text, variant, free, NOT_ENOUGH_DATA, 0.0, b[CONVENTIONAL], b[CALIBRATED])
    t_free, t_max = free
    cal, conv = b[CALIBRATED].at(t_max), b[CONVENTIONAL].at(t_max)
    if not (np.isfinite(cal[0]) and np.isfinite(conv[0])):
        return _finish(cid, fig, text, variant, f"missed deadline undefined at t_tar {t_max:g} ms", NOT_ENOUGH_DATA,
                       0.0, b[CONVENTIONAL], b[CALIBRATED])
    cal_max, conv_min = CAL_MISSED_REACHABLE + NEAR, CONV_MISSED_FLOOR - NEAR
    ok_cal = HOLDS if cal[0] <= cal_max + EPS else (DOES_NOT_HOLD if cal[1] > cal_max + EPS else INCONCLUSIVE)
    ok_conv = HOLDS if conv[0] >= conv_min - EPS else (DOES_NOT_HOLD if conv[2] < conv_min - EPS else INCONCLUSIVE)
    numbers = (f"{_coverage_text(n_def, n_all, 't_tar')}; latency no longer binds from t_tar {t_free:g} ms; at "
               f"t_tar {t_max:g} ms: calibrated {_f(cal[0])} [{_f(cal[1])}, {_f(cal[2])}], conventional "
               f"{_f(conv[0])} [{_f(conv[1])}, {_f(conv[2])}]")
    return _finish(cid, fig, text, variant, numbers, _combine(ok_cal, ok_conv), n_def / max(n_all, 1),
                   b[CONVENTIONAL], b[CALIBRATED])


def claim_missed_low_p_tar(deadline: pd.DataFrame, variant: str) -> Claim:
    cid, fig = "C9", "Fig. 5(a)"
    p = P_TAR_LOW
    text = (f"At p_tar = {p}, over the t_tar range where latency binds (from the first t_tar at which either "
            f"curve leaves its starting value up to where both are flat), the conventional network's "
            f"missed-deadline probability is lower: beyond the intervals on at least {C9_MIN_SHARE:.0%} of that "
            f"range, and higher beyond them nowhere in it.")
    b = _curves(deadline, p)
    if b is None:
        return _na(cid, fig, text, variant, f"no missed-deadline curves at p_tar {p}")
    n_def, n_all = _curve_coverage(b)
    free = _latency_free(b)
    if isinstance(free, str):
        return _finish(cid, fig, text, variant, free, NOT_ENOUGH_DATA, 0.0, b[CONVENTIONAL], b[CALIBRATED])
    t_free, _ = free
    conv, cal = b[CONVENTIONAL], b[CALIBRATED]
    grid = conv.v.index.intersection(cal.v.index)
    left = np.zeros(len(grid), bool)
    for band in (conv, cal):
        v = band.v.reindex(grid).to_numpy(float)
        left |= np.abs(v - v[0]) > EPS
    if not left.any():
        return _finish(cid, fig, text, variant, "the curves never change over the t_tar grid: latency never binds",
                       NOT_ENOUGH_DATA, 0.0, conv, cal)
    t_first = float(grid[np.nonzero(left)[0][0]])
    rng = grid[(grid >= t_first) & (grid < t_free)]
    if len(rng) == 0:
        return _finish(cid, fig, text, variant, "no t_tar where latency binds", NOT_ENOUGH_DATA, 0.0, conv, cal)
    lower = _sig_above(cal.lo.reindex(rng), conv.hi.reindex(rng))
    higher = _sig_above(conv.lo.reindex(rng), cal.hi.reindex(rng))
    point_lower = (conv.v.reindex(rng) < cal.v.reindex(rng) - EPS).to_numpy()
    share = float(lower.mean())
    if higher.any():
        verdict = DOES_NOT_HOLD
    elif share >= C9_MIN_SHARE:
        verdict = HOLDS
    else:
        verdict = INCONCLUSIVE
    numbers = (f"{_coverage_text(n_def, n_all, 't_tar')}; latency binds for t_tar {t_first:g}..{float(rng[-1]):g} ms "
               f"({len(rng)} points); conventional lower at {int(point_lower.sum())}, beyond the intervals at "
               f"{int(lower.sum())} ({share:.0%}), higher beyond them at {int(higher.sum())}")
    if point_lower.any():
        diff = (cal.v.reindex(rng) - conv.v.reindex(rng))
        t = float(diff.idxmax())
        numbers += (f"; largest gap at t_tar {t:g} ms: conventional {_f(conv.v.loc[t])} [{_f(conv.lo.loc[t])}, "
                    f"{_f(conv.hi.loc[t])}], calibrated {_f(cal.v.loc[t])} [{_f(cal.lo.loc[t])}, {_f(cal.hi.loc[t])}]")
    return _finish(cid, fig, text, variant, numbers, verdict, n_def / max(n_all, 1), conv, cal)


# --------------------------------------------------------------------------- two-branch claims


def claim_two_branch_outage(offload_one: pd.DataFrame | None, offload_two: pd.DataFrame | None,
                            one: str | None, two: str | None) -> Claim:
    cid, fig = "C10", "Fig. 7"
    lo_p, hi_p = P_TAR_OUTAGE_RANGE
    text = (f"With two branches the calibrated network's outage is at most the one-branch calibrated outage at "
            f"every p_tar, and very low (<= {VERY_LOW}) at every p_tar in {lo_p:g}..{hi_p:g}.")
    label = f"{one} vs {two}" if one and two else (one or two)
    if offload_one is None or offload_two is None:
        return _na(cid, fig, text, label, "needs a one-branch and a two-branch variant")
    b1, b2 = _bands(offload_one, "outage"), _bands(offload_two, "outage")
    if b1 is None or b2 is None:
        return _na(cid, fig, text, label, "no outage")
    c1, c2 = b1[CALIBRATED], b2[CALIBRATED]
    grid = c1.v.index.intersection(c2.v.index)
    if len(grid) == 0:
        return _na(cid, fig, text, label, "no common p_tar")
    both = grid[c1.v.reindex(grid).notna().to_numpy() & c2.v.reindex(grid).notna().to_numpy()]
    at_most, n_point, n_sig, _ = _at_most(c2, c1, both)
    rng = c2.v.index[(c2.v.index >= lo_p - P_TAR_MATCH) & (c2.v.index <= hi_p + P_TAR_MATCH)]
    rng_def = rng[c2.v.reindex(rng).notna().to_numpy()]
    low, n_low_point, n_low_sig, _ = _at_most(c2, VERY_LOW, rng_def)
    cov_a = len(both) / len(grid)
    cov_b = len(rng_def) / len(rng) if len(rng) else 0.0
    numbers = (f"calibrated outage, one vs two branches: {_coverage_text(len(both), len(grid))}; two-branch higher "
               f"at {n_point}/{len(both)} p_tar, beyond the intervals at {n_sig}; two-branch in {lo_p:g}..{hi_p:g}: "
               f"{_coverage_text(len(rng_def), len(rng))}, max {_f(c2.v.reindex(rng_def).max())}, above {VERY_LOW} "
               f"at {n_low_point}, beyond the interval at {n_low_sig}")
    m1, m2 = b1[CONVENTIONAL].v.reindex(grid).mean(), b2[CONVENTIONAL].v.reindex(grid).mean()
    numbers += f"; mean conventional outage {_f(m1)} -> {_f(m2)} (one -> two branches)"
    return _finish(cid, fig, text, label, numbers, _combine(at_most, low), min(cov_a, cov_b), c1, c2)


def claim_two_branch_missed(deadline_one: pd.DataFrame | None, deadline_two: pd.DataFrame | None,
                            one: str | None, two: str | None) -> Claim:
    cid, fig = "C11", "Fig. 6 vs 5"
    ps = ", ".join(f"{p:g}" for p in P_TAR_TWO_BRANCH)
    text = (f"At p_tar {ps}, judged where latency no longer binds (largest t_tar, curves flat), the conventional "
            f"two-branch network misses the deadline more often than the one-branch one (beyond the intervals); "
            f"the calibrated two-branch network does not.")
    label = f"{one} vs {two}" if one and two else (one or two)
    if deadline_one is None or deadline_two is None:
        return _na(cid, fig, text, label, "needs a one-branch and a two-branch variant")
    parts, verdicts, bands, coverage = [], [], [], 1.0
    for p in P_TAR_TWO_BRANCH:
        w1, w2 = _curves(deadline_one, p), _curves(deadline_two, p)
        if w1 is None or w2 is None:
            return _na(cid, fig, text, label, f"no missed-deadline curves at p_tar {p} for both variants")
        bands += [w1[CONVENTIONAL], w1[CALIBRATED], w2[CONVENTIONAL], w2[CALIBRATED]]
        for w in (w1, w2):
            n_def, n_all = _curve_coverage(w)
            coverage = min(coverage, n_def / max(n_all, 1))
        f1, f2 = _latency_free(w1), _latency_free(w2)
        if isinstance(f1, str) or isinstance(f2, str):
            return _finish(cid, fig, text, label, f"p_tar {p:g}: {f1 if isinstance(f1, str) else f2}",
                           NOT_ENOUGH_DATA, 0.0, *bands)
        t = min(f1[1], f2[1])
        if t < max(f1[0], f2[0]):
            return _finish(cid, fig, text, label, f"p_tar {p:g}: the two variants' t_tar grids end before both "
                           f"are flat", NOT_ENOUGH_DATA, 0.0, *bands)
        a1c, a2c = w1[CONVENTIONAL].at(t), w2[CONVENTIONAL].at(t)
        a1k, a2k = w1[CALIBRATED].at(t), w2[CALIBRATED].at(t)
        if not all(np.isfinite(x[0]) for x in (a1c, a2c, a1k, a2k)):
            return _finish(cid, fig, text, label, f"p_tar {p:g}: missed deadline undefined at t_tar {t:g} ms for "
                           f"one of the variants", NOT_ENOUGH_DATA, 0.0, *bands)
        conv_more = _strictly_below(a1c, a2c)
        cal_not = (DOES_NOT_HOLD if a2k[1] > a1k[2] + EPS else (INCONCLUSIVE if a2k[0] > a1k[0] + EPS else HOLDS))
        verdicts += [conv_more, cal_not]
        parts.append(f"p_tar {p:g}, t_tar {t:g} ms: conventional {_f(a1c[0])} [{_f(a1c[1])}, {_f(a1c[2])}] -> "
                     f"{_f(a2c[0])} [{_f(a2c[1])}, {_f(a2c[2])}], calibrated {_f(a1k[0])} [{_f(a1k[1])}, "
                     f"{_f(a1k[2])}] -> {_f(a2k[0])} [{_f(a2k[1])}, {_f(a2k[2])}]")
    return _finish(cid, fig, text, label, "; ".join(parts), _combine(*verdicts), coverage, *bands)


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
    """Count of claims per verdict, over all five verdicts (:data:`VERDICTS`)."""
    return {v: int((table["verdict"] == v).sum()) for v in VERDICTS}
