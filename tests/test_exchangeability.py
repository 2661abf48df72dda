"""eeoffload.exchangeability: conformal p-values, the Simple Jumper, the false-alarm guarantee and
the detection delay.

Fixed before running: (1) false alarms. Over N_STREAMS seeded exchangeable streams the alarm count
must not exceed the 99.9% quantile of Binomial(N_STREAMS, alpha), which an alarm probability <= alpha
(Ville's inequality) passes with probability >= 0.999. (2) Detection. A shift of the score's mean by
one standard deviation after 200 clean samples, alpha 0.01: every one of 20 seeded streams raises its
alarm within DETECT_WITHIN samples of the shift (not before it).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binom

from eeoffload import exchangeability as ex

N_STREAMS = 300
ALPHA = 0.05
DETECT_WITHIN = 200


def naive_p_values(a: np.ndarray, theta: np.ndarray) -> np.ndarray:
    return np.array([((a[: n + 1] > a[n]).sum() + theta[n] * (a[: n + 1] == a[n]).sum()) / (n + 1)
                     for n in range(len(a))])


def test_p_values_equal_their_definition_with_ties() -> None:
    a = np.random.default_rng(0).integers(0, 4, 1300).astype(float)  # many ties, several chunks
    p = ex.conformal_p_values(a, np.random.default_rng(5))
    theta = np.random.default_rng(5).uniform(size=len(a))
    assert np.allclose(p, naive_p_values(a, theta))
    assert (p > 0).all() and (p <= 1).all()


def test_p_values_are_uniform_on_an_exchangeable_stream() -> None:
    a = np.random.default_rng(1).integers(0, 2, 4000).astype(float)  # binary decisions: ties everywhere
    p = ex.conformal_p_values(a, np.random.default_rng(2))
    counts = np.histogram(p, bins=10, range=(0, 1))[0]
    # each decile's count is Binomial(4000, 0.1) when uniform: 400 +- 5 sd (sd 19)
    assert np.abs(counts - 400).max() < 5 * 19


def test_simple_jumper_by_hand() -> None:
    assert np.allclose(ex.simple_jumper([0.5] * 7), 1.0)  # every bet pays 1
    s = ex.simple_jumper([0.1, 0.9], jump=0.0)
    # J = 0: three separate bets, 1/3 each: (1.4 * 0.6 + 1 + 0.6 * 1.4) / 3
    assert np.isclose(s[0], (1.4 + 1.0 + 0.6) / 3)
    assert np.isclose(s[1], (1.4 * 0.6 + 1.0 + 0.6 * 1.4) / 3)
    capital = np.full(3, 1 / 3)
    total = 1.0
    for p, got in zip([0.2, 0.7, 0.05], ex.simple_jumper([0.2, 0.7, 0.05], jump=0.3)):
        capital = 0.7 * capital + 0.1 * total
        capital = capital * (1 + np.array([-1, 0, 1]) * (p - 0.5))
        total = capital.sum()
        assert np.isclose(got, total)


def test_false_alarm_rate_at_most_alpha_over_many_streams() -> None:
    alarms = 0
    for seed in range(N_STREAMS):
        rng = np.random.default_rng(seed)
        if seed % 2:  # continuous scores (1 - confidence) ...
            reference, stream = rng.beta(2, 5, 100), rng.beta(2, 5, 400)
        else:  # ... and binary device decisions, full of ties
            reference, stream = rng.integers(0, 2, 100), rng.integers(0, 2, 400)
        alarms += ex.monitor(reference, stream, ALPHA, seed).alarm >= 0
    assert alarms <= binom.ppf(0.999, N_STREAMS, ALPHA), alarms


def test_detects_a_shift_within_the_stated_delay() -> None:
    for seed in range(20):
        rng = np.random.default_rng(1000 + seed)
        reference = rng.normal(0, 1, 300)
        stream = np.concatenate([rng.normal(0, 1, 200), rng.normal(1, 1, 600)])
        m = ex.monitor(reference, stream, 0.01, seed)
        delay = ex.detection_delay(m.alarm, 200)
        assert np.isfinite(delay) and delay <= DETECT_WITHIN, (seed, m.alarm)


def test_offload_after_alarm() -> None:
    kept = np.array([True, False, True, True, True])
    assert ex.offload_after_alarm(kept, 2).tolist() == [True, False, True, False, False]
    assert ex.offload_after_alarm(kept, -1).tolist() == kept.tolist()
    assert ex.detection_delay(5, 10) != ex.detection_delay(5, 10)  # NaN: a false alarm
    assert ex.detection_delay(12, 10) == 2.0
