"""eeoffload.statistics against published tables: binomial intervals (Newcombe 1998), Student t
quantiles, the t-interval over seeds and aggregate_over_seeds."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from eeoffload import statistics as S

# R. G. Newcombe, "Two-sided confidence intervals for the single proportion: comparison of seven
# methods", Stat. Med. 17 (1998) 857-872, Table I: (k, n) -> Wilson (method 3), Clopper-Pearson
# (method 5), 95%, to 4 decimals.
NEWCOMBE = [
    (81, 263, (0.2553, 0.3662), (0.2527, 0.3676)),
    (15, 148, (0.0624, 0.1605), (0.0578, 0.1617)),
    (0, 20, (0.0000, 0.1611), (0.0000, 0.1684)),
    (1, 29, (0.0061, 0.1718), (0.0009, 0.1776)),
]


@pytest.mark.parametrize(("k", "n", "wilson", "exact"), NEWCOMBE)
def test_binomial_intervals_match_newcombe_table(k: int, n: int, wilson: tuple, exact: tuple) -> None:
    lo, hi = S.wilson_interval(k, n)
    assert (float(lo), float(hi)) == pytest.approx(wilson, abs=5e-5)
    lo, hi = S.clopper_pearson_interval(k, n)
    assert (float(lo), float(hi)) == pytest.approx(exact, abs=5e-5)


def test_clopper_pearson_closed_forms_and_vectorised() -> None:
    # k = 0: hi = 1 - (alpha/2)^(1/n); k = n: lo = (alpha/2)^(1/n) (Clopper and Pearson 1934).
    k = np.array([[0, 13], [5, 0]])
    n = np.array([[13, 13], [10, 0]])
    lo, hi = S.clopper_pearson_interval(k, n)
    assert lo.shape == hi.shape == (2, 2)
    assert lo[0, 0] == 0.0 and hi[0, 0] == pytest.approx(1 - 0.025 ** (1 / 13), abs=1e-12)
    assert hi[0, 1] == 1.0 and lo[0, 1] == pytest.approx(0.025 ** (1 / 13), abs=1e-12)
    # 5/10: the textbook [0.1871, 0.8129] (symmetric).
    assert (lo[1, 0], hi[1, 0]) == pytest.approx((0.187086, 0.812914), abs=1e-6)
    assert math.isnan(lo[1, 1]) and math.isnan(hi[1, 1])  # n = 0: undefined
    wlo, whi = S.wilson_interval(k, n)
    assert math.isnan(wlo[1, 1]) and wlo[0, 0] == 0.0 and whi[0, 1] == 1.0
    # Wilson lies inside Clopper-Pearson for these counts (CP is conservative).
    assert (wlo[:, :1] >= lo[:, :1] - 1e-12).all() and (whi[:, :1] <= hi[:, :1] + 1e-12).all()
    with pytest.raises(ValueError):
        S.clopper_pearson_interval(5, 3)


def test_clopper_pearson_large_n_agrees_with_scipy_when_available() -> None:
    stats = pytest.importorskip("scipy.stats")
    for k, n in ((4000, 7000), (6999, 7000), (3, 512)):
        lo, hi = S.clopper_pearson_interval(k, n)
        assert float(lo) == pytest.approx(stats.beta.ppf(0.025, k, n - k + 1), abs=1e-9)
        assert float(hi) == pytest.approx(stats.beta.ppf(0.975, k + 1, n - k), abs=1e-9)


@pytest.mark.parametrize(("df", "t"), [(1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (29, 2.045)])
def test_t_quantile_matches_table(df: int, t: float) -> None:
    # Two-sided 95% critical values of Student's t (any statistics table, e.g. Wasserman 2004).
    assert S.t_quantile(0.975, df) == pytest.approx(t, abs=5e-4)


def test_regularized_beta_known_values() -> None:
    assert S.regularized_beta(0.5, 2.0, 2.0) == pytest.approx(0.5)
    assert S.regularized_beta(0.3, 1.0, 1.0) == pytest.approx(0.3)  # uniform
    assert S.regularized_beta(0.2, 2.0, 3.0) == pytest.approx(0.1808)  # 1 - P(Bin(4, .2) <= 1)
    assert S.beta_quantile(0.1808, 2.0, 3.0) == pytest.approx(0.2, abs=1e-9)


def test_t_interval_over_seeds() -> None:
    r = S.t_interval([1.0, 2.0, 3.0])
    half = 4.302652729749464 / math.sqrt(3)  # s = 1
    assert r["mean"] == 2.0 and r["lo"] == pytest.approx(2 - half) and r["hi"] == pytest.approx(2 + half)
    assert (r["min"], r["max"], r["n"]) == (1.0, 3.0, 3)
    two = S.t_interval([1.0, np.nan, 3.0])  # only two defined values: spread, no t-interval
    assert two["n"] == 2 and two["mean"] == 2.0 and math.isnan(two["lo"]) and math.isnan(two["hi"])
    assert (two["min"], two["max"]) == (1.0, 3.0)
    assert S.t_interval([])["n"] == 0


def test_aggregate_over_seeds() -> None:
    frames = [pd.DataFrame({"calibration": ["a", "a", "b"], "p_tar": [0.5, 0.6, 0.5],
                            "outage": [x, np.nan if i == 2 else x + 1, 10.0 * x], "n": [1, 2, 3]})
              for i, x in enumerate([1.0, 2.0, 3.0])]
    out = S.aggregate_over_seeds(frames, ["calibration", "p_tar"], ["outage", "n"])
    assert list(out.columns) == ["calibration", "p_tar",
                                 "outage", "outage_seed_min", "outage_seed_max", "outage_seed_lo", "outage_seed_hi",
                                 "outage_seed_n", "n", "n_seed_min", "n_seed_max", "n_seed_lo", "n_seed_hi",
                                 "n_seed_n", "n_seeds"]
    first = out.iloc[0]
    half = 4.302652729749464 / math.sqrt(3)
    assert (first["calibration"], first["p_tar"]) == ("a", 0.5)
    assert first["outage"] == 2.0 and first["outage_seed_lo"] == pytest.approx(2 - half)
    assert (first["outage_seed_min"], first["outage_seed_max"], first["outage_seed_n"]) == (1.0, 3.0, 3)
    second = out.iloc[1]  # one seed undefined: mean of two, no t-interval, but 3 seeds hold the row
    assert second["outage"] == 2.5 and math.isnan(second["outage_seed_lo"]) and second["outage_seed_n"] == 2
    assert second["n_seeds"] == 3 and out["n_seeds"].dtype == np.int64 and out["outage_seed_n"].dtype == np.int64
    assert out.iloc[2]["outage"] == 20.0
    # A key present in only one frame.
    extra = frames[0].iloc[:1].assign(p_tar=0.9)
    out = S.aggregate_over_seeds([*frames, extra], ["calibration", "p_tar"], ["outage"])
    assert out.iloc[-1]["n_seeds"] == 1 and out.iloc[-1]["outage"] == 1.0
    with pytest.raises(ValueError, match="repeated"):
        S.aggregate_over_seeds([pd.concat([frames[0], frames[0]])], ["calibration", "p_tar"], ["outage"])
    with pytest.raises(ValueError, match="lacks"):
        S.aggregate_over_seeds(frames, ["calibration"], ["missing"])
