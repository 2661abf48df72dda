"""Calibrators (eeoffload.calibrators) and top-label metrics (eeoffload.calibration_metrics) on
cases with a known answer; binned ECE cross-checked against torchmetrics. Fast (seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from eeoffload import calibration as cal
from eeoffload import calibration_metrics as cm
from eeoffload import calibrators as cb
from eeoffload import temperature as ts


def calibrated_logits(n: int, n_classes: int, seed: int, scale: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Logits z with labels drawn from softmax(z): softmax(z) is calibrated by construction."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, scale, size=(n, n_classes))
    p = ts.softmax(z)
    labels = (p.cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1)
    return z, np.minimum(labels, n_classes - 1)


def test_temperature_methods_reuse_the_temperature_module() -> None:
    z, y = calibrated_logits(4000, 10, seed=0)
    exits = np.stack([z * 2.0, z * 0.7, z])
    per_exit = cb.fit_exit_calibrators("temperature", exits, y)
    assert [c.temperature for c in per_exit] == [ts.fit_temperature(e, y) for e in exits]
    shared = cb.fit_exit_calibrators("global_temperature", exits, y)
    assert [c.temperature for c in shared] == ts.fit_global_temperature(list(exits), y)
    assert per_exit[0].temperature == pytest.approx(2.0, rel=0.05)


def test_vector_scaling_recovers_a_known_per_class_scale() -> None:
    z, y = calibrated_logits(30000, 5, seed=1)
    w_true = np.array([0.5, 1.0, 1.5, 2.0, 0.8])
    observed = z / w_true  # softmax(w_true * observed) is calibrated
    fitted = cb.VectorScaling().fit(observed, y)
    np.testing.assert_allclose(fitted.w, w_true, rtol=0.06)
    np.testing.assert_allclose(fitted.b - fitted.b.mean(), 0.0, atol=0.05)  # b is defined up to a constant
    nll_fit = ts.temperature_nll(observed * fitted.w + fitted.b, y, 1.0)
    assert nll_fit <= ts.temperature_nll(observed, y, 1.0)


@pytest.mark.parametrize("method", ["histogram_binning", "isotonic", "scaling_binning", "temperature"])
def test_recalibration_brings_ece_near_zero_on_overconfident_data(method: str) -> None:
    """Logits x3 of a calibrated model are over-confident; fitted on 20k samples, the calibrator
    must bring the top-label ECE of fresh samples near zero."""
    z_fit, y_fit = calibrated_logits(20000, 10, seed=2)
    z_new, y_new = calibrated_logits(20000, 10, seed=3)
    calibrator = cb.make_calibrator(method, n_bins=15).fit(3 * z_fit, y_fit)
    top = calibrator.top_label(3 * z_new)
    before = cb.softmax_top_label(3 * z_new)
    assert cm.ece_equal_width(before.confidence, before.correct(y_new)) > 0.1
    # the estimator's own floor on 20k samples is ~0.01; 50-point bins add their noise
    assert cm.ece_equal_width(top.confidence, top.correct(y_new)) < 0.025
    assert cm.ece_equal_mass(top.confidence, top.correct(y_new)) < 0.025


@pytest.mark.parametrize("method", ["histogram_binning", "isotonic"])
def test_binning_keeps_calibrated_data_calibrated(method: str) -> None:
    z_fit, y_fit = calibrated_logits(20000, 10, seed=4)
    z_new, y_new = calibrated_logits(20000, 10, seed=5)
    top = cb.make_calibrator(method).fit(z_fit, y_fit).top_label(z_new)
    assert cm.ece_equal_width(top.confidence, top.correct(y_new)) < 0.02


def test_scaling_binning_outputs_at_most_n_bins_values() -> None:
    z, y = calibrated_logits(6000, 10, seed=6)
    top = cb.ScalingBinning(n_bins=10).fit(2 * z, y).top_label(2 * z)
    assert len(np.unique(top.confidence)) <= 10
    assert np.all((top.confidence >= 0) & (top.confidence <= 1))


def test_per_class_map_falls_back_to_pooled_for_rare_classes() -> None:
    z, y = calibrated_logits(300, 10, seed=7)
    fitted = cb.make_calibrator("isotonic").fit(z, y)
    assert isinstance(fitted, cb.PerClassMap)
    assert fitted.maps == {}  # 30 samples per class < 100: every class uses the pooled map
    assert fitted.top_label(z).confidence.shape == (300,)


def test_unknown_method_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="allowed: none, temperature"):
        cb.make_calibrator("platt")


# --------------------------------------------------------------------------- metrics


def test_binned_ece_matches_torchmetrics_and_the_existing_ece() -> None:
    rng = np.random.default_rng(8)
    probs = ts.softmax(rng.normal(0, 2, size=(5000, 10)))
    labels = rng.integers(0, 10, 5000)
    conf, correct = cal.confidence_and_correct(probs, labels)
    ours = cm.ece_equal_width(conf, correct, 15)
    theirs = float(multiclass_calibration_error(torch.tensor(probs), torch.tensor(labels), num_classes=10,
                                                n_bins=15, norm="l1"))
    assert ours == pytest.approx(theirs, abs=1e-6)
    assert ours == pytest.approx(cal.expected_calibration_error(probs, labels, 15), abs=1e-12)


def test_torchmetrics_extra_bin_for_confidence_exactly_one() -> None:
    """torchmetrics bins [lower, upper) and gives confidence 1.0 a bin of its own; ours (like
    eeoffload.calibration) bins (lower, upper], so 1.0 joins the top bin. Equal once split alike."""
    probs = np.array([[1.0, 0.0], [1.0, 0.0], [0.97, 0.03], [0.96, 0.04]])
    labels = np.array([0, 1, 0, 0])  # the 1.0s: one right, one wrong; the others right
    conf, correct = cal.confidence_and_correct(probs, labels)
    theirs = float(multiclass_calibration_error(torch.tensor(probs), torch.tensor(labels), num_classes=2,
                                                n_bins=10, norm="l1"))
    ours = cm.ece_equal_width(conf, correct, 10)
    assert ours == pytest.approx(abs(0.9825 - 0.75))  # one top bin: mean conf 0.9825, 3 of 4 right
    separate = (2 * abs(1.0 - 0.5) + 2 * abs(0.965 - 1.0)) / 4  # the 1.0s in a bin of their own
    assert theirs == pytest.approx(separate)
    assert ours == pytest.approx(cal.expected_calibration_error(probs, labels, 10))
    assert abs(ours - theirs) > 0.03


def test_equal_mass_ece_by_hand() -> None:
    conf = np.array([0.1, 0.2, 0.3, 0.9])
    correct = np.array([False, True, True, True])
    # two bins of two: {0.1, 0.2} acc 0.5 conf 0.15; {0.3, 0.9} acc 1.0 conf 0.6
    assert cm.ece_equal_mass(conf, correct, 2) == pytest.approx(0.5 * 0.35 + 0.5 * 0.4)


def test_top_label_brier_and_nll_by_hand() -> None:
    conf, correct = np.array([0.8, 0.6]), np.array([True, False])
    assert cm.brier_top_label(conf, correct) == pytest.approx((0.04 + 0.36) / 2)
    assert cm.nll_top_label(conf, correct) == pytest.approx(-(np.log(0.8) + np.log(0.4)) / 2)


def test_smooth_ece_small_when_calibrated_large_when_not() -> None:
    rng = np.random.default_rng(9)
    conf = rng.uniform(0.2, 1.0, 4000)
    correct = rng.uniform(size=4000) < conf
    good = cm.smooth_ece_interval(conf, correct, resamples=50, seed=0)
    bad = cm.smooth_ece_interval(conf, rng.uniform(size=4000) < conf ** 3, resamples=50, seed=0)
    assert good.value < 0.03 < 0.1 < bad.value
    assert 0 <= good.low <= good.high < 0.05 and bad.low <= bad.value <= bad.high
    assert good.value == pytest.approx(cm.smooth_ece(conf, correct)[0])
    curve = cm.kernel_reliability(conf, correct, good.sigma)
    dense = (curve["t"] > 0.3) & (curve["t"] < 0.9)
    np.testing.assert_allclose(curve["accuracy"][dense], curve["t"][dense], atol=0.06)


@pytest.mark.parametrize("method", cb.METHODS)
def test_every_method_round_trips_through_its_stored_state(method: str) -> None:
    """calibrate writes each exit's fitted state as JSON (eeoffload.calibrator_state); the calibrator
    read back gives the same confidences and predictions, bit for bit."""
    import json

    from eeoffload import calibrator_state as cs

    z, y = calibrated_logits(3000, 10, seed=7)
    exits = np.stack([z * 2.5, z])
    fitted = cb.fit_exit_calibrators(method, exits[:, :2000], y[:2000])
    stored = json.loads(json.dumps(cs.run_state(method, fitted)))
    assert ("temperatures" in stored) == (method in cs.TEMPERATURE_METHODS)
    back_method, loaded = cs.run_from_state(stored, n_exits=2)
    assert back_method == method
    for a, b in zip(fitted, loaded, strict=True):
        ta, tb = a.top_label(exits[0, 2000:]), b.top_label(exits[0, 2000:])
        np.testing.assert_array_equal(ta.confidence, tb.confidence)
        np.testing.assert_array_equal(ta.prediction, tb.prediction)
    with pytest.raises(ValueError, match="'exits' must have keys"):
        cs.run_from_state(stored, n_exits=3)


def test_calibration_tables_of_a_top_label_method() -> None:
    """Per exit before/after any calibrator: ECE from its confidences; T and NLL only where defined."""
    z, y = calibrated_logits(4000, 10, seed=8)
    logits = np.stack([z * 3.0, z]).astype(np.float32)
    val = cal.ExitLogits(logits[:, :3000], y[:3000], np.arange(3000))
    test = cal.ExitLogits(logits[:, 3000:], y[3000:], np.arange(1000))
    exits, bins = cal.calibration_tables(test, cal.fit_calibrators(val, "isotonic"), 15, "isotonic")
    side = exits[exits["exit"] == 1].set_index("calibration")
    assert side.loc["calibrated", "method"] == "isotonic" and side.loc["conventional", "temperature"] == 1.0
    assert np.isnan(side.loc["calibrated", "temperature"]) and np.isnan(side.loc["calibrated", "nll"])
    assert side.loc["calibrated", "ece"] < side.loc["conventional", "ece"]
    assert (bins.groupby(["exit", "calibration"])["count"].sum() == 1000).all()
    scaled, _ = cal.calibration_tables(test, cal.fit_calibrators(val, "temperature"), 15)
    t = scaled[(scaled["exit"] == 1) & (scaled["calibration"] == "calibrated")].iloc[0]
    assert t["temperature"] == pytest.approx(3.0, rel=0.1) and np.isfinite(t["nll"])
