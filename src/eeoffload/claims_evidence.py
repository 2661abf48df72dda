"""The evidence rules of :mod:`eeoffload.claims`: verdicts, noise intervals, comparisons beyond the
noise, and the coverage rule.

Every check of :mod:`eeoffload.claims` ends in :func:`finish`, giving one of five verdicts:

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

Noise rule. Every value v comes with a noise interval [lo, hi] (a :class:`Band` along p_tar or
t_tar, built by :func:`band_of`), the union of
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

Coverage rule. A claim "at every p_tar" speaks of the whole evaluated p_tar grid (or of the part of
it the claim names); it needs its quantity defined at a share >= :data:`MIN_COVERAGE` of those grid
points, else :data:`NOT_ENOUGH_DATA`. For claims comparing the two calibrations, a p_tar counts
only where at least one of them classifies a sample on the device (elsewhere both offload
everything and the comparison says nothing): :func:`paired_device_points`.

Exact comparisons ("a <= b", "a >= b", "zero") allow :data:`EPS` (float round-off only), and the
noise rule. A p_tar of a claim is looked up on the evaluated grid within :data:`P_TAR_MATCH`; if
the grid lacks it the claim is not applicable.

Where latency no longer binds on the missed-deadline curves is the same rule applied along t_tar:
:func:`eeoffload.claims_deadline.deadline_curves`.
"""

from __future__ import annotations

from dataclasses import dataclass

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
#: A claim's p_tar is matched to the evaluated grid within this distance.
P_TAR_MATCH = 1e-6
#: Coverage rule: share of the claim's p_tar (or t_tar) range where its quantity must be defined.
MIN_COVERAGE = 0.8

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
    """One row of the claims table: the claim, the numbers that decided it, and its verdict."""

    id: str
    figure: str
    claim: str
    variant: str
    numbers: str
    verdict: str
    coverage: float = float("nan")  # share of the claim's range with defined values (NaN: not applicable)
    intervals: str = "-"  # what the noise intervals were: population / population+seeds / unknown


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


def band_of(rows: pd.DataFrame, column: str, index: str) -> Band:
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


def bands_of(offload: pd.DataFrame | None, column: str, index: str = "p_tar") -> dict[str, Band] | None:
    """Conventional and calibrated bands of ``column``, or None if the frame lacks them."""
    if offload is None or not {"calibration", index, column} <= set(offload.columns):
        return None
    out = {}
    for cal in (CONVENTIONAL, CALIBRATED):
        rows = offload[offload["calibration"] == cal]
        if rows.empty:
            return None
        out[cal] = band_of(rows, column, index)
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


def sig_above(a_lo: np.ndarray, b_hi: np.ndarray) -> np.ndarray:
    """a above b beyond the noise: a's interval lies wholly above b's."""
    return np.asarray(a_lo, float) > np.asarray(b_hi, float) + EPS


def combine(*verdicts: str) -> str:
    """Worst of several parts: does not hold > inconclusive > holds."""
    if DOES_NOT_HOLD in verdicts:
        return DOES_NOT_HOLD
    if INCONCLUSIVE in verdicts:
        return INCONCLUSIVE
    return HOLDS


def at_most(a: Band, b: Band | float | pd.Series, index: pd.Index) -> tuple[str, int, int, list[float]]:
    """Non-strict "a <= b at every point of ``index``": (verdict, point violations, violations beyond
    the noise, p_tar of those beyond the noise)."""
    av, alo = a.v.reindex(index).to_numpy(float), a.lo.reindex(index).to_numpy(float)
    if isinstance(b, Band):
        bv, bhi = b.v.reindex(index).to_numpy(float), b.hi.reindex(index).to_numpy(float)
    else:
        bv = np.broadcast_to(np.asarray(b.reindex(index) if isinstance(b, pd.Series) else b, float), av.shape)
        bhi = bv
    point = av > bv + EPS
    sig = point & sig_above(alo, bhi)
    verdict = DOES_NOT_HOLD if sig.any() else (INCONCLUSIVE if point.any() else HOLDS)
    return verdict, int(point.sum()), int(sig.sum()), [float(x) for x in np.asarray(index)[sig]]


def neg(b: Band) -> Band:
    """-b, with its interval flipped (so that "a >= b" can be checked as "-a <= -b")."""
    return Band(-b.v, -b.hi, -b.lo, b.known, b.seeds)


def strictly_below(a: tuple[float, float, float], b: tuple[float, float, float]) -> str:
    """Strict "a < b" on (value, lo, hi): holds if a.hi < b.lo, does not hold if a.lo > b.hi."""
    if a[2] < b[1] - EPS:
        return HOLDS
    if a[1] > b[2] + EPS:
        return DOES_NOT_HOLD
    return INCONCLUSIVE


def mean_gap(conf: pd.Series, acc: Band) -> tuple[float, float, float]:
    """Mean over the index of |conf - acc|, with the interval of that mean from acc's interval
    (distance from conf to [lo, hi] up to the farther end; errors fully correlated: conservative)."""
    c = conf.to_numpy(float)
    v, lo, hi = acc.v.to_numpy(float), acc.lo.to_numpy(float), acc.hi.to_numpy(float)
    g = np.abs(c - v)
    g_lo = np.maximum(0.0, np.maximum(c - hi, lo - c))
    g_hi = np.maximum(np.abs(c - lo), np.abs(c - hi))
    return float(g.mean()), float(g_lo.mean()), float(g_hi.mean())


# --------------------------------------------------------------------------- coverage and the verdict


def finish(cid: str, fig: str, text: str, variant: str, numbers: str, verdict: str, coverage: float,
           *bands: Band) -> Claim:
    """Apply the coverage rule and the unknown-noise rule, then build the row."""
    label = _intervals_label(*bands) if bands else "-"
    numbers += _intervals_text(*bands) if bands else ""
    if not coverage >= MIN_COVERAGE:
        verdict = NOT_ENOUGH_DATA
    elif label == "unknown" and verdict in (HOLDS, DOES_NOT_HOLD):
        verdict = INCONCLUSIVE
    return Claim(cid, fig, text, variant, numbers, verdict, float(coverage), label)


def coverage_text(n_def: int, n_all: int, what: str = "p_tar") -> str:
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


def paired_device_points(offload: pd.DataFrame, b: dict) -> tuple[pd.Index, pd.Index]:
    """(the p_tar grid of both calibrations, its points where a sample is kept on the device and
    both calibrations' values are defined): what C1 and C3 compare."""
    grid = b[CONVENTIONAL].v.index.union(b[CALIBRATED].v.index)
    idx = _device_points(offload).intersection(grid)
    keep = b[CONVENTIONAL].v.reindex(idx).notna().to_numpy() & b[CALIBRATED].v.reindex(idx).notna().to_numpy()
    return grid, idx[keep]


def p_on_grid(index: pd.Index, p: float) -> float | None:
    """The grid point within :data:`P_TAR_MATCH` of ``p``, or None."""
    idx = np.asarray(index, dtype=float)
    if idx.size == 0:
        return None
    i = int(np.argmin(np.abs(idx - p)))
    return float(idx[i]) if abs(idx[i] - p) <= P_TAR_MATCH else None
