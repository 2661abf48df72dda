"""Testing exchangeability online: a conformal test martingale that notices a distribution shift.

Vovk, Nouretdinov and Gammerman, "Testing randomness online", Statistical Science 36(4), 2021
(arXiv 1906.09256); the conformal p-values are those of Vovk, Gammerman and Shafer, *Algorithmic
Learning in a Random World* (2005), section 7.1.

1. Nonconformity scores a_1, a_2, ... of the stream (here: 1 - the first exit's confidence, the
   number the device's decision rests on, or the decision itself).
2. Smoothed conformal p-values (:func:`conformal_p_values`):
   p_n = (#{i <= n: a_i > a_n} + theta_n #{i <= n: a_i = a_n}) / n, theta_n ~ U(0, 1) independent.
   If the scores are exchangeable, p_1, p_2, ... are independent and uniform on [0, 1] (ALRW
   chapter 8; Vovk et al. 2021, section 2), whatever the scores' distribution, ties included.
3. A betting martingale on them (:func:`simple_jumper`): the Simple Jumper of Vovk et al. 2021,
   which bets with f_eps(p) = 1 + eps (p - 1/2), eps in {-1, 0, 1}, and moves a
   share J of its capital between the three bets at every step, so it follows a shift whenever it
   comes and whichever way the scores move. Each f_eps integrates to 1 on [0, 1], so S_n is a
   non-negative martingale with S_0 = 1 under exchangeability.
4. Alarm at the first n with S_n >= 1/alpha (:func:`first_alarm`): by Ville's inequality
   P(sup_n S_n >= 1/alpha) <= alpha, so on an exchangeable stream the probability of ever raising
   a (false) alarm is at most alpha, however long the stream.

A clean reference (validation scores) may go first (:func:`monitor`): the p-values are computed on
reference + stream, and the martingale bets on the stream's p-values only. Under exchangeability of
the whole sequence these are still independent uniforms, so the guarantee holds, and the first
stream samples are already compared with many clean ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Simple Jumper's jumping rate J (Vovk et al. 2021 use J = 0.01).
JUMP = 0.01
_CHUNK = 512


def conformal_p_values(scores: Any, rng: np.random.Generator) -> np.ndarray:
    """Smoothed conformal p-values of a score sequence (ALRW section 7.1; Vovk et al. 2021, section 2):
    p_n = (#{i <= n: a_i > a_n} + theta_n #{i <= n: a_i = a_n}) / n, theta_n ~ U(0, 1) from ``rng``
    (the sample itself counts among the ties). O(n^2 / 2) comparisons, in chunks."""
    a = np.asarray(scores, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {a.shape}")
    n = len(a)
    theta = rng.uniform(size=n)
    greater = np.empty(n, dtype=np.int64)
    equal = np.empty(n, dtype=np.int64)
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        rows = a[start:stop, None]
        past = np.arange(stop)[None, :] <= np.arange(start, stop)[:, None]  # i <= n
        greater[start:stop] = ((a[None, :stop] > rows) & past).sum(axis=1)
        equal[start:stop] = ((a[None, :stop] == rows) & past).sum(axis=1)
    return (greater + theta * equal) / np.arange(1, n + 1)


def simple_jumper(p_values: Any, jump: float = JUMP) -> np.ndarray:
    """S_1..S_n of the Simple Jumper martingale (Vovk et al. 2021), S_0 = 1:
    C_eps = 1/3 for eps in {-1, 0, 1}; at each step C_eps <- (1 - J) C_eps + (J/3) S, then
    C_eps <- C_eps f_eps(p), f_eps(p) = 1 + eps (p - 1/2), and S = C_-1 + C_0 + C_1."""
    if not 0.0 <= jump <= 1.0:
        raise ValueError(f"jump must be in [0, 1], got {jump}")
    p = np.asarray(p_values, dtype=np.float64)
    eps = np.array([-1.0, 0.0, 1.0])
    capital = np.full(3, 1.0 / 3.0)
    total = 1.0
    out = np.empty(len(p))
    for n, pn in enumerate(p):
        capital = (1.0 - jump) * capital + (jump / 3.0) * total
        capital = capital * (1.0 + eps * (pn - 0.5))
        total = float(capital.sum())
        out[n] = total
    return out


def first_alarm(martingale: Any, alpha: float) -> int:
    """Index of the first n with S_n >= 1/alpha (Ville's inequality: probability <= alpha under
    exchangeability), -1 when the martingale never gets there."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    hit = np.flatnonzero(np.asarray(martingale) >= 1.0 / alpha)
    return int(hit[0]) if len(hit) else -1


@dataclass(frozen=True)
class Monitor:
    """The monitor on one stream: p-values and martingale per stream sample, the alarm index (-1: none)."""

    p_values: np.ndarray
    martingale: np.ndarray
    alarm: int


def monitor(reference: Any, stream: Any, alpha: float, seed: int, jump: float = JUMP) -> Monitor:
    """The conformal test martingale over ``stream`` (scores in arrival order), with the clean
    ``reference`` scores placed first (not bet on; may be empty), alarm at level ``alpha``."""
    ref = np.asarray(reference, dtype=np.float64).ravel()
    p = conformal_p_values(np.concatenate([ref, np.asarray(stream, dtype=np.float64).ravel()]),
                           np.random.default_rng(seed))[len(ref):]
    s = simple_jumper(p, jump)
    return Monitor(p, s, first_alarm(s, alpha))


def detection_delay(alarm: int, shift_start: int) -> float:
    """Samples from the shift's first sample to the alarm (0: the first shifted sample raised it);
    NaN without an alarm at or after the shift (an earlier alarm is a false alarm, not a detection)."""
    return float(alarm - shift_start) if alarm >= shift_start else float("nan")


def offload_after_alarm(on_device: Any, alarm: int) -> np.ndarray:
    """The monitored rule: the device's own decisions up to the alarm, then everything offloaded
    (until recalibrated, i.e. to the end of the stream here). ``on_device``: (N,) or (P, N) bool."""
    kept = np.array(on_device, dtype=bool, copy=True)
    if alarm >= 0:
        kept[..., alarm + 1:] = False  # the alarm comes after the decision on sample ``alarm``
    return kept
