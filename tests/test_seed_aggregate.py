"""The aggregate over training seeds (eeoffload.evaluation.aggregate_runs): means and seed intervals
of every rate, totals of the counts, population intervals on the pooled counts (docs/metrics.md)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from eeoffload import statistics as stats
from eeoffload.evaluation import EvaluationSettings, OFFLOAD_COLUMNS, aggregate_runs, evaluate_run

SETTINGS = EvaluationSettings(p_tar=np.round(np.arange(0.5, 0.991, 0.01), 10), deadline_p_tar=[0.75, 0.85],
                              t_tar_ms=np.arange(0.0, 20.0, 1.0), batch_size=50, batch_order="shuffled",
                              resamples=5, seed=0)


def run(seed: int, n: int = 400) -> object:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    logits = rng.normal(0, 1, (2, n, 10))
    logits[:, np.arange(n), labels] += np.array([[1.5], [2.5]])
    logits[0] *= 2.0  # an over-confident side branch
    return evaluate_run(logits, labels, [2.0, 1.0], np.array([1.0, 8.0]), SETTINGS)


def test_one_seed_is_its_own_aggregate() -> None:
    one = run(0)
    agg = aggregate_runs([one])
    pd.testing.assert_frame_equal(agg.offload[OFFLOAD_COLUMNS], one.offload, check_dtype=False)
    assert (agg.offload["n_seeds"] == 1).all() and agg.offload["p_device_seed_lo"].isna().all()
    for cal, numbers in one.headline.items():
        for key, value in numbers.items():
            if value is None:
                assert agg.headline[cal][key] is None, key
            else:
                assert agg.headline[cal][key] == pytest.approx(value), key


def test_three_seeds_mean_t_interval_and_pooled_population_interval() -> None:
    runs = [run(s) for s in (0, 1, 2)]
    agg = aggregate_runs(runs)
    key = (agg.offload["calibration"] == "conventional") & np.isclose(agg.offload["p_tar"], 0.8)
    row = agg.offload[key].iloc[0]
    per_seed = [r.offload[(r.offload["calibration"] == "conventional") & np.isclose(r.offload["p_tar"], 0.8)].iloc[0]
                for r in runs]
    values = [float(r["p_device"]) for r in per_seed]
    t = stats.t_interval(values)
    assert row["p_device"] == pytest.approx(np.mean(values))
    assert (row["p_device_seed_lo"], row["p_device_seed_hi"]) == pytest.approx((t["lo"], t["hi"]))
    assert (row["p_device_seed_min"], row["p_device_seed_max"]) == pytest.approx((min(values), max(values)))
    # counts are totals, and the population interval is Wilson on the pooled counts
    n_device = sum(int(r["n_device"]) for r in per_seed)
    n = sum(int(r["n_samples"]) for r in per_seed)
    assert row["n_device"] == n_device and row["n_samples"] == n == 3 * 400
    lo, hi = stats.wilson_interval(n_device, n)
    assert (row["p_device_lo"], row["p_device_hi"]) == pytest.approx((float(lo), float(hi)))
    k_out = sum(int(r["n_outage_batches"]) for r in per_seed)
    n_b = sum(int(r["n_batches"]) for r in per_seed)
    lo, hi = stats.clopper_pearson_interval(k_out, n_b)
    assert row["n_batches"] == n_b and (row["outage_lo"], row["outage_hi"]) == pytest.approx((float(lo), float(hi)),
                                                                                               nan_ok=True)
    assert (agg.offload["n_seeds"] == 3).all()
    # the headline: means with their seed interval, population bounds from the pooled grid
    h = agg.headline["calibrated"]
    assert h["n_seeds"] == 3
    vals = [r.headline["calibrated"]["acc_device@0.75"] for r in runs]
    assert h["acc_device@0.75"] == pytest.approx(np.mean(vals), abs=1e-6)
    assert h["acc_device@0.75_seed_lo"] <= h["acc_device@0.75"] <= h["acc_device@0.75_seed_hi"]
    grid = agg.offload[(agg.offload["calibration"] == "calibrated") & np.isclose(agg.offload["p_tar"], 0.75)].iloc[0]
    assert h["acc_device_lo@0.75"] == pytest.approx(grid["acc_device_lo"], abs=1e-6)
    assert "acc_device_lo@0.75_seed_lo" not in h


def test_deadline_aggregate_pools_batches() -> None:
    runs = [run(s) for s in (0, 1)]
    agg = aggregate_runs(runs).deadline
    assert list(agg.columns[:8]) == list(runs[0].deadline.columns)
    row = agg.iloc[5]
    k = sum(int(r.deadline.iloc[5]["n_missed_batches"]) for r in runs)
    n = sum(int(r.deadline.iloc[5]["n_batches"]) for r in runs)
    lo, hi = stats.clopper_pearson_interval(k, n)
    assert row["n_missed_batches"] == k and row["n_batches"] == n
    assert (row["missed_lo"], row["missed_hi"]) == pytest.approx((float(lo), float(hi)))
    assert math.isnan(row["missed_deadline_seed_lo"])  # a t-interval needs 3 seeds


def test_trajectory_mean_over_seeds_with_and_without_snapshots() -> None:
    from pipeline.trajectory import mean_over_seeds

    table = pd.DataFrame({"variant": ["a", "a", "a", "a"], "seed": [0, 1, 0, 1], "epoch": [1, 1, 2, 2],
                          "x": [0.1, 0.3, 0.5, np.nan]})
    out = mean_over_seeds(table, ["variant", "epoch"])
    assert out["x"].tolist() == pytest.approx([0.2, 0.5]) and out["n_seeds"].tolist() == [2, 2]
    empty = mean_over_seeds(pd.DataFrame(), ["variant", "epoch"])  # train.snapshot_epochs past the schedule
    assert empty.empty and list(empty.columns) == ["variant", "epoch", "n_seeds"]
