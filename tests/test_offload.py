"""Offloading model and metrics (eeoffload.offload) on hand-computed cases and against the
plain-loop reference of tests/reference_metrics.py."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from tests import reference_metrics as ref
from eeoffload import latency, offload

# Two side branches, a dozen samples (exit index 0 = branch 1, 1 = branch 2, 2 = offloaded).
CONF_1 = [0.95, 0.60, 0.40, 0.80, 0.30, 0.70, 0.50, 0.20, 0.91, 0.65, 0.10, 0.89]
CONF_2 = [0.10, 0.95, 0.75, 0.60, 0.40, 0.20, 0.95, 0.99, 0.20, 0.72, 0.30, 0.90]


def test_decision_rule_first_confident_branch_else_offload() -> None:
    exits = offload.first_confident_exit([CONF_1, CONF_2], [0.5, 0.7, 0.9])
    assert exits.shape == (12, 3)
    assert exits[:, 0].tolist() == [0, 0, 1, 0, 2, 0, 0, 1, 0, 0, 2, 0]
    assert exits[:, 1].tolist() == [0, 1, 1, 0, 2, 0, 1, 1, 0, 1, 2, 0]  # sample 5: 0.70 >= 0.7
    assert exits[:, 2].tolist() == [0, 1, 2, 2, 2, 2, 1, 1, 0, 2, 2, 1]  # sample 11: 0.90 >= 0.9


def test_decision_rule_without_side_branches_offloads_everything() -> None:
    assert offload.first_confident_exit(np.empty((0, 4)), [0.5]).tolist() == [[0]] * 4


# One side branch, a dozen samples in decreasing confidence.
CONF = np.array([[0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5, 0.45, 0.4], [0.99] * 12])
CORRECT = np.array([[1, 1, 0, 1, 1, 0, 1, 0, 1, 0, 0, 0], [1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 0]], dtype=bool)


def test_device_metrics_by_hand() -> None:
    m = offload.device_metrics(CONF, CORRECT, [0.8, 0.5, 0.99])
    # p_tar 0.8: samples 0..3 on the device; 3 of them right; the cloud gets 6 of samples 4..11 right.
    assert m["p_device"][0] == pytest.approx(4 / 12)
    assert m["conf_device"][0] == pytest.approx(0.875)
    assert m["acc_device"][0] == pytest.approx(0.75)
    assert m["acc_total"][0] == pytest.approx(9 / 12)
    # p_tar 0.5: samples 0..9 on the device (mean confidence 0.725, 6 right), the cloud gets 1 of 2.
    assert m["p_device"][1] == pytest.approx(10 / 12)
    assert m["conf_device"][1] == pytest.approx(0.725)
    assert m["acc_device"][1] == pytest.approx(0.6)
    assert m["acc_total"][1] == pytest.approx(7 / 12)
    # p_tar 0.99: nothing on the device.
    assert m["p_device"][2] == 0.0
    assert math.isnan(m["conf_device"][2]) and math.isnan(m["acc_device"][2])
    assert m["acc_total"][2] == pytest.approx(9 / 12)


# Eleven samples, batches of 3: [0,1,2] [3,4,5] [6,7,8], samples 9 and 10 dropped (in sample order).
OUT_CONF = np.array([[0.9, 0.8, 0.7, 0.3, 0.2, 0.1, 0.9, 0.65, 0.1, 0.99, 0.99], [0.5] * 11])
OUT_CORRECT = np.array([[1, 1, 0, 1, 1, 1, 1, 0, 1, 0, 0], [1] * 11], dtype=bool)


def test_outage_batching_drops_last_partial_batch_and_leaves_out_empty_batches() -> None:
    outage, n_batches = offload.outage_probability(OUT_CONF, OUT_CORRECT, [0.6, 0.5, 0.95], np.arange(11), 3)
    # p_tar 0.6: batch 0 acc 2/3 (ok), batch 1 no device sample (left out), batch 2 acc 1/2 (outage);
    # the dropped samples 9, 10 (confident and wrong) do not count.
    assert outage[0] == pytest.approx(0.5) and n_batches[0] == 2
    assert outage[1] == 0.0 and n_batches[1] == 2  # p_tar 0.5: batch 2 acc 1/2 is not < 0.5
    assert math.isnan(outage[2]) and n_batches[2] == 0


def test_outage_counts_report_empty_batches() -> None:
    c = offload.outage_counts(OUT_CONF, OUT_CORRECT, [0.6, 0.5, 0.95], np.arange(11), 3)
    # p_tar 0.6: 1 outage (batch 2) of 2 counted; batch 1 has no device sample: empty, not "no outage".
    assert c.n_outage.tolist() == [1, 0, 0] and c.n_counted.tolist() == [2, 2, 0]
    assert c.n_empty.tolist() == [1, 1, 3]  # p_tar 0.95: no device sample in any of the 3 batches
    assert c.n_outage.dtype == np.int64 and (c.n_counted + c.n_empty == 3).all()
    assert c.outage[0] == pytest.approx(0.5) and math.isnan(c.outage[2])


def test_device_counts_and_missed_deadline_counts() -> None:
    m = offload.device_metrics(CONF, CORRECT, [0.8, 0.99])
    assert m["n_device"].tolist() == [4, 0] and m["n_device_correct"].tolist() == [3, 0]
    assert m["n_correct"].tolist() == [9, 9] and m["n_samples"].tolist() == [12, 12]
    conf = np.array([[0.9, 0.8, 0.5, 0.4, 0.95, 0.9, 0.85, 0.1], [0.5] * 8])
    correct = np.array([[1, 1, 0, 0, 1, 0, 0, 0], [0, 0, 1, 0, 0, 0, 0, 1]], dtype=bool)
    n_missed, n_batches = offload.missed_deadline_counts(conf, correct, [0.7], [3.0, 7.0], [2.0, 10.0],
                                                         np.arange(8), 4)
    assert n_batches == 2 and n_missed.tolist() == [[2, 1]] and n_missed.dtype == np.int64


def test_outage_follows_the_given_order() -> None:
    # Reversed: [10,9,8] acc 0/2, [7,6,5] acc 1/2, [4,3,2] acc 0/1 -> all three outages.
    outage, n_batches = offload.outage_probability(OUT_CONF, OUT_CORRECT, [0.6], np.arange(11)[::-1], 3)
    assert outage.tolist() == [1.0] and n_batches.tolist() == [3]


def test_resampled_outage_mean_and_percentile_interval() -> None:
    orders = np.stack([np.arange(11), np.arange(11)[::-1]])  # outage 0.5 and 1.0 at p_tar 0.6
    mean, low, high = offload.resampled_outage(OUT_CONF, OUT_CORRECT, [0.6, 0.995], orders, 3)
    assert mean[0] == pytest.approx(0.75)
    assert low[0] == pytest.approx(0.5 + 0.025 * 0.5) and high[0] == pytest.approx(0.5 + 0.975 * 0.5)
    assert np.isnan([mean[1], low[1], high[1]]).all()


def test_orders_are_seeded_permutations() -> None:
    assert offload.sample_order(5, "sample_id", 0).tolist() == [0, 1, 2, 3, 4]
    shuffled = offload.sample_order(50, "shuffled", 3)
    assert sorted(shuffled.tolist()) == list(range(50))
    assert np.array_equal(shuffled, offload.sample_order(50, "shuffled", 3))
    orders = offload.resample_orders(50, 4, 3)
    assert orders.shape == (4, 50) and np.array_equal(orders, offload.resample_orders(50, 4, 3))
    with pytest.raises(ValueError, match="batch_order"):
        offload.sample_order(5, "random", 0)


def test_offloaded_sample_time_and_per_sample_latency() -> None:
    # 23500 bytes at 18.8 Mbit/s = 10 ms upload.
    ms = latency.offloaded_sample_ms(offload_edge_ms=3.0, upload_bytes=23500, uplink_mbps=18.8, rtt_ms=2.0, cloud_ms=5.0)
    assert ms == pytest.approx(3.0 + 10.0 + 2.0 + 5.0)
    exit_ms = latency.per_exit_ms([1.5, 4.0], ms)
    assert exit_ms.tolist() == pytest.approx([1.5, 4.0, 20.0])


def test_missed_deadline_arithmetic() -> None:
    conf = np.array([[0.9, 0.8, 0.5, 0.4, 0.95, 0.9, 0.85, 0.1], [0.5] * 8])
    correct = np.array([[1, 1, 0, 0, 1, 0, 0, 0], [0, 0, 1, 0, 0, 0, 0, 1]], dtype=bool)
    # p_tar 0.7, batches of 4, device 2 ms, offloaded 10 ms.
    # Batch 0: device 0,1 (right), offloaded 2 (right), 3 (wrong): mean (2+2+10+10)/4 = 6 ms, acc 0.75.
    # Batch 1: device 4 (right), 5, 6 (wrong), offloaded 7 (right): mean 4 ms, acc 0.5 < 0.7 -> always missed.
    missed = offload.missed_deadline_probability(
        conf, correct, [0.7], [3.0, 4.0, 5.0, 6.0, 7.0], [2.0, 10.0], np.arange(8), 4
    )
    assert missed.shape == (1, 5)
    assert missed[0].tolist() == [1.0, 1.0, 1.0, 0.5, 0.5]  # batch 0 misses while 6 > t_tar
    # At p_tar 0.5 batch 1 meets accuracy (0.5 is not < 0.5): misses only when its mean time 4 > t_tar.
    missed = offload.missed_deadline_probability(conf, correct, [0.5], [3.0, 5.0], [2.0, 10.0], np.arange(8), 4)
    # p_tar 0.5: batch 0 device 0,1,2 (0.5 >= 0.5): mean (6+10)/4 = 4, acc 2/4; batch 1 as before.
    assert missed[0].tolist() == [1.0, 0.0]


@pytest.mark.parametrize(("n_exits", "batch_size"), [(2, 64), (3, 50), (1, 100)])
def test_vectorised_equals_reference(n_exits: int, batch_size: int) -> None:
    rng = np.random.default_rng(n_exits)
    n = 430
    confidence = np.round(rng.uniform(0.3, 1.0, size=(n_exits, n)), 2)  # ties with the grid values
    correct = rng.uniform(size=(n_exits, n)) < confidence
    p_tar = np.round(np.arange(0.5, 0.99 + 1e-9, 0.025), 10)[::-1]  # descending: any grid order works
    t_tar = np.linspace(0.0, 30.0, 17)
    exit_ms = rng.uniform(1.0, 30.0, size=n_exits)
    order = offload.sample_order(n, "shuffled", 1)
    orders = offload.resample_orders(n, 4, 1)

    m = offload.device_metrics(confidence, correct, p_tar)
    r = ref.reference_device_metrics(confidence, correct, p_tar)
    for key in r:
        np.testing.assert_allclose(m[key], r[key], rtol=1e-12, equal_nan=True)
    outage, counted = offload.outage_probability(confidence, correct, p_tar, order, batch_size)
    r_outage, r_counted = ref.reference_outage(confidence, correct, p_tar, order, batch_size)
    np.testing.assert_array_equal(outage, r_outage)
    np.testing.assert_array_equal(counted, r_counted)
    for mine, theirs in zip(
        offload.resampled_outage(confidence, correct, p_tar, orders, batch_size),
        ref.reference_resampled_outage(confidence, correct, p_tar, orders, batch_size),
    ):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(
        offload.missed_deadline_probability(confidence, correct, p_tar, t_tar, exit_ms, order, batch_size),
        ref.reference_missed_deadline(confidence, correct, p_tar, t_tar, exit_ms, order, batch_size),
    )


def test_exit_confidence_applies_temperature_per_exit() -> None:
    logits = np.array([[[0.0, 2 * math.log(3.0)]], [[math.log(3.0), 0.0]]])  # 2 exits, 1 sample
    conf, correct = offload.exit_confidence(logits, [1], [2.0, 1.0])
    assert conf[:, 0].tolist() == pytest.approx([0.75, 0.75])
    assert correct[:, 0].tolist() == [True, False]


def test_full_size_grid_is_fast() -> None:
    """One variant x calibration at paper size (7000 samples, 99 p_tar, 200 re-batchings, 301 t_tar)."""
    confidence, correct = ref.random_case(7000, 3, seed=0)
    p_tar = np.round(np.arange(0.5, 0.99 + 1e-9, 0.005), 10)
    order = offload.sample_order(7000, "shuffled", 0)
    start = time.perf_counter()
    offload.device_metrics(confidence, correct, p_tar)
    offload.outage_probability(confidence, correct, p_tar, order, 512)
    offload.resampled_outage(confidence, correct, p_tar, offload.resample_orders(7000, 200, 0), 512)
    offload.missed_deadline_probability(confidence, correct, p_tar, np.arange(0, 150.25, 0.5), [1, 2, 9], order, 512)
    assert time.perf_counter() - start < 2.5  # x4 for 2 variants x 2 calibrations: still under 5 s


def test_evaluate_run_writes_counts_and_population_intervals() -> None:
    from eeoffload.evaluation import DEADLINE_COLUMNS, OFFLOAD_COLUMNS, EvaluationSettings, evaluate_run

    rng = np.random.default_rng(0)
    n = 600
    labels = rng.integers(0, 10, n)
    logits = rng.normal(size=(2, n, 10)) * np.array([2.0, 4.0])[:, None, None]
    logits[np.arange(2)[:, None], np.arange(n)[None, :], labels[None, :]] += np.array([1.5, 3.0])[:, None]
    settings = EvaluationSettings(p_tar=np.round(np.arange(0.5, 0.991, 0.01), 10), deadline_p_tar=[0.75],
                                  t_tar_ms=np.arange(0.0, 20.0, 1.0), batch_size=50, batch_order="shuffled",
                                  resamples=5, seed=0)
    r = evaluate_run(logits, labels, [1.5, 1.0], np.array([1.0, 12.0]), settings)
    off, dl = r.offload, r.deadline
    assert list(off.columns) == OFFLOAD_COLUMNS and list(dl.columns) == DEADLINE_COLUMNS
    for c in ("n_samples", "n_device", "n_batches", "n_batches_empty", "n_outage_batches"):
        assert off[c].dtype == np.int64, c
    assert (off["n_device"] == np.round(off["p_device"] * n)).all()
    assert (off["n_batches"] + off["n_batches_empty"] == n // 50).all()
    counted = off["n_batches"] > 0
    assert np.allclose(off.loc[counted, "outage"], off.loc[counted, "n_outage_batches"] / off.loc[counted, "n_batches"])
    assert off.loc[~counted, ["outage", "outage_lo", "outage_hi"]].isna().all().all()
    for v, lo, hi in (("p_device", "p_device_lo", "p_device_hi"), ("acc_device", "acc_device_lo", "acc_device_hi"),
                      ("acc_total", "acc_total_lo", "acc_total_hi"), ("outage", "outage_lo", "outage_hi")):
        ok = off[v].notna()
        assert (off.loc[ok, lo] <= off.loc[ok, v] + 1e-12).all() and (off.loc[ok, v] <= off.loc[ok, hi] + 1e-12).all()
        assert (off[lo].isna() == off[v].isna()).all(), v
    assert (dl["n_batches"] == n // 50).all() and dl["n_missed_batches"].dtype == np.int64
    assert np.allclose(dl["missed_deadline"], dl["n_missed_batches"] / dl["n_batches"])
    assert (dl["missed_lo"] <= dl["missed_deadline"]).all() and (dl["missed_deadline"] <= dl["missed_hi"]).all()
    numbers = r.headline["calibrated"]
    assert {"outage_lo@0.85", "outage_hi@0.85", "acc_device_lo@0.85", "acc_device_hi@0.85"} <= set(numbers)
