"""The claims' evidence rules (eeoffload.claims), pinned on synthetic metrics: for every claim one case
that holds, one that does not hold, one inside the noise (inconclusive) and one with too little
coverage (not enough data), including the 10-of-99 case of issue 12; no claim holds on a smoke-like
run; unknown intervals never hold; seed intervals widen the noise."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from eeoffload import claims as C
from eeoffload.statistics import aggregate_over_seeds
from tests.synthetic_metrics import NOISE, deadline_frame, offload_frame, with_intervals

ONE, TWO = "one_branch", "two_branch"
CONV, CAL = C.CONVENTIONAL, C.CALIBRATED


def frames(shape: str = "paper") -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Paper-shaped (every claim holds) or inverted metrics of the one- and two-branch variants."""
    return ({ONE: offload_frame(1, shape=shape), TWO: offload_frame(2, shape=shape)},
            {ONE: deadline_frame(1, shape=shape), TWO: deadline_frame(2, shape=shape)})


def verdict(cid: str, off: dict, dl: dict) -> tuple[str, str]:
    row = C.claims_table(off, dl, ONE, TWO).set_index("id").loc[cid]
    return row["verdict"], row["numbers"]


def rows(df: pd.DataFrame, cal: str, where: Callable[[pd.Series], pd.Series] | None = None) -> pd.Series:
    mask = df["calibration"] == cal
    return mask & where(df["p_tar"]) if where else mask


def only_ten_of_99(df: pd.DataFrame, cals: tuple[str, ...] = (CONV, CAL)) -> pd.DataFrame:
    """Issue 12's case: the device classifies samples at only 10 of the 99 p_tar (0.5, 0.55, ..., 0.95):
    elsewhere p_device is 0 and every device quantity is undefined, as evaluate writes it."""
    df = df.copy()
    keep = np.isclose((df["p_tar"] - 0.5) / 0.05, np.round((df["p_tar"] - 0.5) / 0.05))
    drop = ~keep & df["calibration"].isin(cals)
    df.loc[drop, "p_device"] = 0.0
    df.loc[drop, ["conf_device", "acc_device", "outage", "outage_resampled", "outage_low", "outage_high"]] = np.nan
    df.loc[drop, "n_batches"] = 0
    df = with_intervals(df)
    assert int(keep[df["calibration"] == CAL].sum()) == 10 and len(df) == 2 * 99
    return df


def modified(off_or_dl: pd.DataFrame, mask: pd.Series, column: str, value) -> pd.DataFrame:
    df = off_or_dl.copy()
    df.loc[mask, column] = value(df.loc[mask]) if callable(value) else value
    return with_intervals(df)


def truncated(dl: pd.DataFrame, t_max: float) -> pd.DataFrame:
    """The t_tar grid cut at t_max, before the curves are flat: latency may still bind at its end."""
    return dl[dl["t_tar_ms"] <= t_max].reset_index(drop=True)


def test_paper_shape_holds_everywhere_and_inverted_never_holds() -> None:
    t = C.claims_table(*frames(), ONE, TWO)
    assert (t["verdict"] == C.HOLDS).all(), t[t["verdict"] != C.HOLDS][["id", "numbers"]]
    assert (t["intervals"] == "population").all() and (t["coverage"] >= C.MIN_COVERAGE).all()
    t = C.claims_table(*frames("inverted"), ONE, TWO)
    assert not (t["verdict"] == C.HOLDS).any(), t[["id", "verdict"]]


# --------------------------------------------------------------------------- per claim: the four cases
# Each case: (claim id, expected verdict, a function (off, dl) -> (off, dl) changing the paper shape).


def _inv_offload(off: dict, dl: dict) -> tuple[dict, dict]:
    return {ONE: offload_frame(1, shape="inverted"), TWO: off[TWO]}, dl


def _inv_deadline(off: dict, dl: dict) -> tuple[dict, dict]:
    return off, {ONE: deadline_frame(1, shape="inverted"), TWO: dl[TWO]}


def _one(fn: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[dict, dict], tuple[dict, dict]]:
    return lambda off, dl: ({**off, ONE: fn(off[ONE])}, dl)


def _one_dl(fn: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[dict, dict], tuple[dict, dict]]:
    return lambda off, dl: (off, {**dl, ONE: fn(dl[ONE])})


def _two(fn: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[dict, dict], tuple[dict, dict]]:
    return lambda off, dl: ({**off, TWO: fn(off[TWO])}, dl)


def _two_dl(fn: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[dict, dict], tuple[dict, dict]]:
    return lambda off, dl: (off, {**dl, TWO: fn(dl[TWO])})


def _copy_from(df: pd.DataFrame, column: str, src: str, dst: str, shift: float) -> pd.DataFrame:
    """``column`` of calibration ``dst`` := that of ``src`` + shift (same p_tar order)."""
    df = df.copy()
    df.loc[df["calibration"] == dst, column] = df.loc[df["calibration"] == src, column].to_numpy() + shift
    return with_intervals(df)


def _at(p: float) -> Callable[[pd.Series], pd.Series]:
    return lambda s: np.isclose(s, p)


def _missed_floor(df: pd.DataFrame, p: float, cal: str, shift: float) -> pd.DataFrame:
    """The missed-deadline curve of ``cal`` at p_tar p moved by ``shift`` where it is flat at its end."""
    df = df.copy()
    m = (df["calibration"] == cal) & np.isclose(df["p_tar"], p)
    last = df.loc[m, "missed_deadline"].iloc[-1]
    flat = m & np.isclose(df["missed_deadline"], last)
    df.loc[flat, "missed_deadline"] = last + shift
    return with_intervals(df)


def _set_floor(df: pd.DataFrame, p: float, cal: str, value: float) -> pd.DataFrame:
    m = (df["calibration"] == cal) & np.isclose(df["p_tar"], p)
    last = df.loc[m, "missed_deadline"].iloc[-1]
    return _missed_floor(df, p, cal, value - last)


half = NOISE / 2  # a difference inside the noise (intervals +-NOISE overlap)

CASES = [
    # C1 p_device lower
    ("C1", C.DOES_NOT_HOLD, _inv_offload),
    ("C1", C.INCONCLUSIVE, _one(lambda d: _copy_from(d, "p_device", CONV, CAL, half))),
    ("C1", C.NOT_ENOUGH_DATA, _one(only_ten_of_99)),
    # C2 calibrated accuracy on device >= p_tar - CLOSE_ACC
    ("C2", C.DOES_NOT_HOLD, _one(lambda d: modified(d, rows(d, CAL), "acc_device", lambda r: r["p_tar"] - 0.05))),
    ("C2", C.INCONCLUSIVE, _one(lambda d: modified(d, rows(d, CAL, _at(0.8)), "acc_device",
                                                   0.8 - C.CLOSE_ACC - half))),
    ("C2", C.NOT_ENOUGH_DATA, _one(only_ten_of_99)),
    # C3 calibrated total accuracy >= conventional, higher on average
    ("C3", C.DOES_NOT_HOLD, _inv_offload),
    ("C3", C.INCONCLUSIVE, _one(lambda d: _copy_from(d, "acc_total", CONV, CAL, half))),
    ("C3", C.NOT_ENOUGH_DATA, _one(only_ten_of_99)),
    # C4 confidence closer to accuracy
    ("C4", C.DOES_NOT_HOLD, _inv_offload),
    ("C4", C.INCONCLUSIVE, _one(lambda d: _copy_from(_copy_from(d, "conf_device", CONV, CAL, 0.0), "acc_device",
                                                     CONV, CAL, half))),
    ("C4", C.NOT_ENOUGH_DATA, _one(only_ten_of_99)),
    # C5 calibrated outage <= conventional
    ("C5", C.DOES_NOT_HOLD, _inv_offload),
    ("C5", C.INCONCLUSIVE, _one(lambda d: modified(d, rows(d, CAL, _at(0.95)), "outage",
                                                   lambda r: d.loc[rows(d, CONV, _at(0.95)), "outage"].to_numpy()
                                                   + half))),
    ("C5", C.NOT_ENOUGH_DATA, _one(only_ten_of_99)),
    # C6 calibrated outage zero below 0.875
    ("C6", C.DOES_NOT_HOLD, _one(lambda d: modified(d, rows(d, CAL, _at(0.8)), "outage", 0.1))),
    ("C6", C.INCONCLUSIVE, _one(lambda d: modified(d, rows(d, CAL, _at(0.8)), "outage", half))),
    ("C6", C.NOT_ENOUGH_DATA, _one(lambda d: only_ten_of_99(d, (CAL,)))),
    # C7 conventional outage near 0.4 at 0.875
    ("C7", C.DOES_NOT_HOLD, _one(lambda d: modified(d, rows(d, CONV, _at(0.875)), "outage", 0.7))),
    ("C7", C.INCONCLUSIVE, _one(lambda d: modified(d, rows(d, CONV, _at(0.875)), "outage",
                                                   C.CONV_OUTAGE_AT_EDGE + C.NEAR + half))),
    ("C7", C.NOT_ENOUGH_DATA, _one(lambda d: modified(d, rows(d, CONV, _at(0.875)), "outage", np.nan))),
    # C8 at 0.85 and large t_tar: calibrated near 0.1, conventional near 0.7 or above
    ("C8", C.DOES_NOT_HOLD, _inv_deadline),
    ("C8", C.INCONCLUSIVE, _one_dl(lambda d: _set_floor(d, 0.85, CAL, C.CAL_MISSED_REACHABLE + C.NEAR + half))),
    ("C8", C.NOT_ENOUGH_DATA, _one_dl(lambda d: truncated(d, 90.0))),
    # C9 at 0.75 the conventional network lower where latency binds
    ("C9", C.DOES_NOT_HOLD, _inv_deadline),
    ("C9", C.INCONCLUSIVE, _one_dl(lambda d: _copy_from(d.assign(p_tar=d["p_tar"]), "missed_deadline", CONV, CAL,
                                                        0.0).pipe(lambda x: _shift_conv(x, 0.75, half)))),
    ("C9", C.NOT_ENOUGH_DATA, _one_dl(lambda d: truncated(d, 50.0))),
    # C10 two-branch calibrated outage <= one-branch, very low over 0.5..0.875
    ("C10", C.DOES_NOT_HOLD, _two(lambda d: modified(d, rows(d, CAL, lambda s: s >= 0.875 - 1e-9), "outage", 0.2))),
    ("C10", C.INCONCLUSIVE, _two(lambda d: modified(d, rows(d, CAL, lambda s: s >= 0.9), "outage",
                                                    lambda r: offload_frame(1).set_index(["calibration", "p_tar"])
                                                    .loc[list(zip(r["calibration"], r["p_tar"])), "outage"]
                                                    .to_numpy() + half))),
    ("C10", C.NOT_ENOUGH_DATA, _two(lambda d: only_ten_of_99(d, (CAL,)))),
    # C11 two vs one branch at 0.825/0.85, large t_tar
    ("C11", C.DOES_NOT_HOLD, _two_dl(lambda d: _set_floor(d, 0.85, CAL, 0.3))),
    ("C11", C.INCONCLUSIVE, _two_dl(lambda d: _set_floor(d, 0.85, CONV, 0.8 + half))),
    ("C11", C.NOT_ENOUGH_DATA, _two_dl(lambda d: truncated(d, 90.0))),
]


def _shift_conv(df: pd.DataFrame, p: float, shift: float) -> pd.DataFrame:
    """At p_tar p: the calibrated curve equals the conventional one, which is moved down by ``shift``
    where it is below 1 (a conventional advantage inside the noise)."""
    df = df.copy()
    m = (df["calibration"] == CONV) & np.isclose(df["p_tar"], p) & (df["missed_deadline"] < 1.0)
    df.loc[m, "missed_deadline"] = (df.loc[m, "missed_deadline"] - shift).clip(lower=0.0)
    return with_intervals(df)


@pytest.mark.parametrize(("cid", "want", "change"), CASES, ids=[f"{c}-{v}" for c, v, _ in CASES])
def test_claim_rule(cid: str, want: str, change: Callable) -> None:
    off, dl = change(*frames())
    got, numbers = verdict(cid, off, dl)
    assert got == want, (cid, numbers)


def test_every_claim_has_all_four_cases() -> None:
    ids = [f"C{i}" for i in range(1, 12)]
    for cid in ids:
        have = {v for c, v, _ in CASES if c == cid}
        assert {C.DOES_NOT_HOLD, C.INCONCLUSIVE, C.NOT_ENOUGH_DATA} <= have, cid
    holds = C.claims_table(*frames(), ONE, TWO).set_index("id")["verdict"]
    assert set(holds.index) == set(ids) and (holds == C.HOLDS).all()


def test_ten_of_99_is_not_enough_for_c2_c5_c6() -> None:
    """Issue 12: metrics defined at only 10 of 99 p_tar used to give "holds" for C2, C5 and C6."""
    off, dl = frames()
    off = {ONE: only_ten_of_99(off[ONE]), TWO: only_ten_of_99(off[TWO])}
    t = C.claims_table(off, dl, ONE, TWO).set_index("id")
    for cid in ("C1", "C2", "C3", "C4", "C5", "C6", "C10"):
        assert t.loc[cid, "verdict"] == C.NOT_ENOUGH_DATA, (cid, t.loc[cid, "numbers"])
        assert t.loc[cid, "coverage"] < C.MIN_COVERAGE
    assert "10/99" in t.loc["C2", "numbers"] and "needs 80%" in t.loc["C2", "numbers"]


def _smoke(floor: float) -> tuple[dict, dict]:
    """A smoke-like run: nothing is ever classified on the device (p_device 0 at every p_tar), so both
    calibrations offload everything and their deadline curves coincide."""
    off, dl = {}, {}
    for v, acc in ((ONE, 0.31), (TWO, 0.29)):
        df = offload_frame(1 if v == ONE else 2)
        df["p_device"] = 0.0
        df[["conf_device", "acc_device", "outage", "outage_resampled", "outage_low", "outage_high"]] = np.nan
        df["n_batches"] = 0
        df["acc_total"] = acc
        off[v] = with_intervals(df)
        d = deadline_frame(1)
        t = d["t_tar_ms"]
        d["missed_deadline"] = np.where(t < 60.0 + (v == TWO) * 5, 1.0, floor)
        dl[v] = with_intervals(d)
    return off, dl


@pytest.mark.parametrize("floor", [0.0, 0.3, 1.0])
def test_no_claim_holds_on_a_smoke_like_run(floor: float) -> None:
    t = C.claims_table(*_smoke(floor), ONE, TWO)
    assert not (t["verdict"] == C.HOLDS).any(), t[t["verdict"] == C.HOLDS][["id", "numbers"]]
    offload_claims = t[t["id"].isin(["C1", "C2", "C3", "C4", "C5", "C6", "C7", "C10"])]
    assert (offload_claims["verdict"] == C.NOT_ENOUGH_DATA).all(), offload_claims[["id", "verdict"]]


def test_unknown_intervals_never_hold() -> None:
    """Metrics of an older evaluate (no interval or count columns): no difference can count."""
    off, dl = frames()
    new_cols = [c for c in off[ONE].columns if c.endswith(("_lo", "_hi")) or c in
                ("n_samples", "n_device", "n_batches_empty", "n_outage_batches")]
    old_off = {v: f.drop(columns=[*new_cols, "n_batches"]) for v, f in off.items()}
    old_dl = {v: f[["calibration", "p_tar", "t_tar_ms", "missed_deadline"]] for v, f in dl.items()}
    t = C.claims_table(old_off, old_dl, ONE, TWO).set_index("id")
    assert (t["verdict"] == C.INCONCLUSIVE).all(), t[["verdict", "numbers"]]
    assert (t["intervals"] == "unknown").all() and "intervals unknown" in t.loc["C1", "numbers"]
    # With n_batches (as older evaluates wrote it) the outage interval is derived: Clopper-Pearson.
    old_off = {v: f.drop(columns=new_cols) for v, f in off.items()}
    t = C.claims_table(old_off, old_dl, ONE, TWO).set_index("id")
    assert t.loc["C5", "verdict"] == C.HOLDS and t.loc["C5", "intervals"] == "population"
    assert t.loc["C1", "verdict"] == C.INCONCLUSIVE


def test_seed_intervals_widen_the_noise() -> None:
    """Three seeds whose calibrated floor at p_tar 0.85 spreads 0.12..0.30 (mean 0.21): with the
    population intervals alone C8 would not hold; the seed t-interval makes it inconclusive."""
    off, dl = frames()
    seeds = [_set_floor(dl[ONE], 0.85, CAL, f) for f in (0.12, 0.21, 0.30)]
    cols = ["missed_deadline", "missed_lo", "missed_hi"]
    agg = aggregate_over_seeds(seeds, ["calibration", "p_tar", "t_tar_ms"], cols)
    agg = agg.rename(columns={"missed_lo": "missed_lo", "missed_hi": "missed_hi"})
    got, numbers = verdict("C8", off, {ONE: agg, TWO: dl[TWO]})
    assert got == C.INCONCLUSIVE, numbers
    row = C.claims_table(off, {ONE: agg, TWO: dl[TWO]}, ONE, TWO).set_index("id").loc["C8"]
    assert row["intervals"] == "population+seeds"
    assert verdict("C8", off, {ONE: _set_floor(dl[ONE], 0.85, CAL, 0.21), TWO: dl[TWO]})[0] == C.DOES_NOT_HOLD


def test_summary_counts_all_five_verdicts() -> None:
    t = C.claims_table(*_smoke(1.0), ONE, None)
    s = C.summary(t)
    assert list(s) == list(C.VERDICTS) and sum(s.values()) == len(t)
    assert s[C.NOT_APPLICABLE] == 2 and s[C.NOT_ENOUGH_DATA] >= 7
