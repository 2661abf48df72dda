"""Temperature scaling and calibration metrics (eeoffload.calibration) on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from eeoffload import calibration as cal
from eeoffload import temperature as ts

# Four 2-class samples: confidence 0.95 (one right, one wrong), 0.65 (both right).
PROBS = np.array([[0.95, 0.05], [0.95, 0.05], [0.35, 0.65], [0.35, 0.65]])
LABELS = np.array([0, 1, 1, 1])


def test_softmax_with_temperature_by_hand() -> None:
    np.testing.assert_allclose(ts.softmax([[0.0, math.log(3.0)]]), [[0.25, 0.75]])
    np.testing.assert_allclose(ts.softmax([[0.0, 2 * math.log(3.0)]], temperature=2.0), [[0.25, 0.75]])
    np.testing.assert_allclose(ts.softmax(torch.tensor([[1000.0, 1000.0]])), [[0.5, 0.5]])  # no overflow


def _calibrated_logits(n: int, t_true: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z) (a calibrated model), logits z * t_true: dividing by t_true recovers z."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, size=(n, 10))
    p = ts.softmax(z)
    labels = (p.cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1)
    return (z * t_true).astype(np.float32), labels


@pytest.mark.parametrize("t_true", [0.5, 2.5])
def test_fit_temperature_recovers_known_temperature(t_true: float) -> None:
    logits, labels = _calibrated_logits(20000, t_true, seed=1)
    t = ts.fit_temperature(logits, labels)
    assert t == pytest.approx(t_true, rel=0.02)
    assert ts.temperature_nll(logits, labels, t) <= ts.temperature_nll(logits, labels, 1.0)


def test_fit_temperature_nll_never_increases_and_accepts_tensors() -> None:
    logits, labels = _calibrated_logits(500, 1.0, seed=2)
    t = ts.fit_temperature(torch.from_numpy(logits), torch.from_numpy(labels))
    assert t > 0
    assert ts.temperature_nll(logits, labels, t) <= ts.temperature_nll(logits, labels, 1.0) + 1e-12
    assert ts.fit_temperature(np.empty((0, 10)), np.empty(0, dtype=np.int64)) == 1.0


def test_fit_global_temperature_shares_one_t_over_side_branches() -> None:
    z1, y = _calibrated_logits(6000, 1.0, seed=3)
    rng = np.random.default_rng(4)
    z2 = z1 + rng.normal(0, 0.01, size=z1.shape)  # a second branch, as calibrated as the first
    final = z1 * 0.5
    temps = ts.fit_global_temperature([z1 * 2.0, z2 * 2.0, final], y)
    assert len(temps) == 3 and temps[0] == temps[1]
    assert temps[0] == pytest.approx(2.0, rel=0.03)
    assert temps[2] == pytest.approx(0.5, rel=0.03)


def test_metrics_on_hand_computed_case() -> None:
    # Bins of width 1/15: 0.95 in bin 14 (acc 0.5, gap 0.45), 0.65 in bin 9 (acc 1.0, gap 0.35).
    assert cal.expected_calibration_error(PROBS, LABELS) == pytest.approx(0.5 * 0.45 + 0.5 * 0.35)
    assert cal.maximum_calibration_error(PROBS, LABELS) == pytest.approx(0.45)
    assert cal.accuracy(PROBS, LABELS) == pytest.approx(0.75)
    nll = -(math.log(0.95) + math.log(0.05) + 2 * math.log(0.65)) / 4
    assert cal.negative_log_likelihood(PROBS, LABELS) == pytest.approx(nll)
    # Brier: 2*0.05^2, 2*0.95^2, 2*0.35^2, 2*0.35^2 -> (0.005 + 1.805 + 0.49) / 4
    assert cal.brier_score(PROBS, LABELS) == pytest.approx(0.575)


def test_nll_from_logits_matches_nll_of_probabilities() -> None:
    logits = np.log(PROBS)
    assert ts.temperature_nll(logits, LABELS, 1.0) == pytest.approx(cal.negative_log_likelihood(PROBS, LABELS))


def test_reliability_bins_schema_and_empty_bins() -> None:
    bins = cal.reliability_bins(PROBS, LABELS, n_bins=15)
    assert list(bins.columns) == ["bin", "bin_lower", "bin_upper", "count", "confidence", "accuracy"]
    assert len(bins) == 15 and bins["count"].dtype == np.int64
    assert bins["count"].tolist() == [0] * 9 + [2] + [0] * 4 + [2]
    assert bins.loc[9, "confidence"] == pytest.approx(0.65) and bins.loc[9, "accuracy"] == 1.0
    assert bins.loc[14, "confidence"] == pytest.approx(0.95) and bins.loc[14, "accuracy"] == 0.5
    assert bins.loc[0, ["confidence", "accuracy"]].isna().all()
    assert bins.loc[14, "bin_upper"] == 1.0 and bins.loc[0, "bin_lower"] == 0.0


def test_bin_is_lower_exclusive_upper_inclusive() -> None:
    probs = np.array([[1.0, 0.0], [0.5, 0.5]])  # confidence 1.0 -> last bin; 0.5 = upper edge of bin 0 of 2
    bins = cal.reliability_bins(probs, np.array([0, 0]), n_bins=2)
    assert bins["count"].tolist() == [1, 1]


def _logits_frame() -> pd.DataFrame:
    rows = []
    for split, ids in (("val", [5, 3]), ("test", [9, 7, 8])):
        for exit_ in (2, 1):  # rows deliberately out of order
            for sid in ids:
                rows.append({"sample_id": sid, "split": split, "label": sid % 3, "exit": exit_,
                             **{f"logit_{c}": float(10 * exit_ + c + sid) for c in range(3)}})
    frame = pd.DataFrame(rows)
    return frame.astype({"sample_id": "int64", "label": "int64", "exit": "int64",
                         **{f"logit_{c}": "float32" for c in range(3)}})


def test_exit_logits_from_frame_pivots_by_exit_and_sample_id() -> None:
    test = cal.exit_logits_from_frame(_logits_frame(), "test")
    assert test.logits.shape == (2, 3, 3) and test.logits.dtype == np.float32
    assert test.sample_id.tolist() == [7, 8, 9]
    assert test.labels.tolist() == [1, 2, 0]
    assert test.logits[1, 0].tolist() == [27.0, 28.0, 29.0]  # exit 2, sample 7


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.astype({"exit": "int32"}), "'exit' must be int64"),
        (lambda f: f.drop(columns=["label"]), "missing column 'label'"),
        (lambda f: f.astype({"logit_1": "float64"}), "'logit_1' must be float32"),
        (lambda f: f.drop(columns=["logit_1"]), "logit_0..logit_<C-1>"),
        (lambda f: f.assign(exit=f["exit"] + 1), "exits must be numbered 1..n"),
    ],
)
def test_logits_frame_validation(change, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        cal.exit_logits_from_frame(change(_logits_frame()), "test")


def test_logits_frame_exits_must_hold_same_samples() -> None:
    frame = _logits_frame()
    frame = frame[~((frame["exit"] == 2) & (frame["sample_id"] == 9))]
    with pytest.raises(ValueError, match="same samples"):
        cal.exit_logits_from_frame(frame, "test")
