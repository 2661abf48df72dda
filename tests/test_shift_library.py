"""eeoffload.shift and eeoffload.severity on synthetic logits and images made here.

Tolerances fixed before running: a certified rule on data exchangeable with its calibration data
violates its target in at most the 99.9% quantile of Binomial(draws, delta) of the draws (LTT's
guarantee: probability <= delta per draw); the severity classifier separates clean images from
severity-5 noise, blur and contrast with accuracy >= 0.8 on held-out images.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binom

from eeoffload import corruptions as co
from eeoffload import offload
from eeoffload import severity as sv
from eeoffload import shift as sh

GRID = np.round(np.arange(0.1, 0.9951, 0.005), 10)
DELTA = 0.1
TARGET = 0.8


def exit_logits(n: int, signal: float, rng: np.random.Generator, scale: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """(2, n, 10) logits and labels: one side branch and a better final exit, both over-confident
    (x ``scale``); a shift lowers ``signal`` but keeps the scale (confidence stays high)."""
    y = rng.integers(0, 10, n)
    z = rng.normal(0, 1, (2, n, 10))
    z[0, np.arange(n), y] += signal
    z[1, np.arange(n), y] += signal + 1.0
    return z * scale, y


def test_exit_confidence_is_the_library_rule() -> None:
    rng = np.random.default_rng(0)
    z, y = exit_logits(300, 2.0, rng)
    conf, ok = sh.exit_confidence(z, y, [1.5, 2.0])
    ref_conf, ref_ok = offload.exit_confidence(z, y, [1.5, 2.0])
    assert np.allclose(conf, ref_conf) and np.array_equal(ok, ref_ok)
    per_sample = np.stack([np.full(300, 1.5), np.full(300, 2.0)])
    assert np.allclose(sh.exit_confidence(z, y, per_sample)[0], conf)


def test_calibration_fitted_on_clean_data_fails_under_shift_and_recalibration_repairs_it() -> None:
    rng = np.random.default_rng(1)
    clean_z, clean_y = exit_logits(3000, 2.5, rng)
    shifted_z, shifted_y = exit_logits(3000, 1.0, rng)
    clean_t = sh.fit_temperatures(clean_z, clean_y)
    shifted_t = sh.fit_temperatures(shifted_z[:, :1500], shifted_y[:1500])
    ece = {name: sh.exit_rows(*sh.exit_confidence(shifted_z[:, 1500:], shifted_y[1500:], t), 15)[0]["ece"]
           for name, t in (("clean", clean_t), ("recalibrated", shifted_t))}
    assert ece["recalibrated"] < ece["clean"]
    order = np.arange(1500)
    row = sh.rule_at_p_tar(*sh.exit_confidence(shifted_z[:, 1500:], shifted_y[1500:], clean_t), 0.875, order, 100)
    assert set(row) >= {"p_device", "acc_device", "acc_total", "outage", "n_outage", "n_counted"}
    assert row["n_counted"] <= 15


def test_certified_rule_holds_when_exchangeable_and_breaks_under_shift() -> None:
    rng = np.random.default_rng(2)
    test_z, test_y = exit_logits(4000, 2.0, rng)
    shifted_z, shifted_y = exit_logits(4000, 0.8, rng)
    draws = 60
    clean, shifted = 0, 0
    order = np.arange(4000)
    for d in range(draws):
        # a fresh clean calibration draw each time (the guarantee is over it)
        z, y = exit_logits(1000, 2.0, np.random.default_rng(100 + d))
        rule = sh.certify_rule(z, y, np.random.default_rng(d).permutation(1000), 500, GRID, TARGET, DELTA)
        clean += sh.certified_outcome(rule, test_z, test_y, TARGET, order, 512)["violated"]
        shifted += sh.certified_outcome(rule, shifted_z, shifted_y, TARGET, order, 512)["violated"]
    assert clean <= binom.ppf(0.999, draws, DELTA)
    assert shifted > clean


def test_batch_outages_by_hand() -> None:
    on = np.array([1, 1, 0, 0, 1, 0, 1, 1, 1], bool)
    right = np.array([1, 0, 1, 1, 1, 1, 1, 1, 1], bool)
    # batches of 3: [acc 1/2 < 0.9: outage], [1/1: fine], [3/3: fine]
    assert sh.batch_outages(on, right, 0.9, 3) == (1, 3)
    assert sh.batch_outages(np.zeros(9, bool), right, 0.9, 3) == (0, 3)  # nothing kept: no outage


def test_stream_monitor_notices_the_shift_and_saves_outage() -> None:
    rng = np.random.default_rng(3)
    ref_z, ref_y = exit_logits(1000, 2.5, rng)
    clean_z, clean_y = exit_logits(1000, 2.5, rng)
    bad_z, bad_y = exit_logits(2000, 0.7, rng, scale=1.0)  # the shift lowers confidence and accuracy
    t = sh.fit_temperatures(ref_z, ref_y)
    z, y = np.concatenate([clean_z, bad_z], axis=1), np.concatenate([clean_y, bad_y])
    conf, ok = sh.exit_confidence(z, y, t)
    on, right = sh.device_decisions(conf, ok, 0.875)
    reference = 1 - sh.exit_confidence(ref_z, ref_y, t)[0][0]
    row, m = sh.stream_run(reference, 1 - conf[0], on, right, 1000, 0.875, 100, 0.01, seed=0)
    assert not row["false_alarm"] and 0 <= row["delay"] <= 200
    assert row["outage_share_monitored"] <= row["outage_share"]
    assert row["p_device_monitored"] <= row["p_device"]
    assert len(m.martingale) == 3000


def smooth_images(n: int, rng: np.random.Generator) -> np.ndarray:
    low = rng.uniform(40, 215, (n, 8, 8, 3))
    return np.clip(np.kron(low, np.ones((1, 4, 4, 1))) + rng.normal(0, 3, (n, 32, 32, 3)), 0, 255).astype(np.uint8)


def test_severity_classifier_tells_the_corruptions_apart() -> None:
    rng = np.random.default_rng(4)
    settings = [co.CLEAN, ("gaussian_noise", 5), ("gaussian_blur", 5), ("contrast", 5)]
    feats, labels = {}, {}
    for part in ("fit", "test"):
        images = smooth_images(60, rng)
        feats[part] = np.concatenate([sv.image_statistics(co.corrupt(images, c, s, seed=1)) for c, s in settings])
        labels[part] = np.repeat(np.arange(len(settings)), 60)
    model = sv.fit_nearest_centroid(feats["fit"], labels["fit"])
    assert (model.predict(feats["test"]) == labels["test"]).mean() >= 0.8
    assert sv.image_statistics(smooth_images(2, rng)).shape == (2, len(sv.STATISTICS))


def test_resampled_outage_is_the_mean_over_orders() -> None:
    rng = np.random.default_rng(5)
    z, y = exit_logits(400, 1.5, rng)
    conf, ok = sh.exit_confidence(z, y, [1.0, 1.0])
    orders = np.stack([np.random.default_rng(s).permutation(400) for s in range(3)])
    row = sh.rule_at_p_tar(conf, ok, 0.6, orders[0], 50, orders)
    per_order = [sh.rule_at_p_tar(conf, ok, 0.6, o, 50)["outage"] for o in orders]
    assert np.isclose(row["outage_resampled"], np.mean(per_order))
    assert np.isclose(sh.rule_at_p_tar(conf, ok, 0.6, orders[0], 50, orders[:1])["outage_resampled"], per_order[0])
