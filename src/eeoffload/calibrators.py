"""Post-hoc calibrators of an exit's top-label confidence, fitted on held-out logits.

Each calibrator maps an exit's logits (N, C) to a :class:`TopLabel`: the predicted class and its
confidence. Only the top label matters to the offloading rule (paper section III: a sample leaves
at exit k when conf_k >= p_tar), so the binning and isotonic methods calibrate the top-label
confidence only (Gupta and Ramdas, "Top-label calibration and multiclass-to-binary reductions",
ICLR 2022), not the whole probability vector.

Methods (:data:`METHODS`, the values of ``calibration.methods`` in params.yaml):

``none``
    softmax(z) (paper eq. 1), the conventional network.
``temperature``
    softmax(z / T_k), one T per exit by validation NLL (paper IV-A, eq. 2; Guo et al. 2017 [10]).
``global_temperature``
    one T shared by the side branches, its own T for the final exit
    (:func:`eeoffload.temperature.fit_global_temperature`).
``vector_scaling``
    softmax(w * z + b), per-class w, b by NLL (Guo et al. 2017, section 4.2); may change the
    prediction.
``histogram_binning``
    top-label histogram binning: per predicted class, equal-mass bins of the confidence, each
    mapped to its fraction correct (Zadrozny and Elkan 2001; Gupta and Ramdas 2022, Alg. 2).
``isotonic``
    top-label isotonic regression of correctness on confidence, per predicted class (Zadrozny and
    Elkan 2002; Gupta and Ramdas 2022, section 4).
``scaling_binning``
    the scaling-binning calibrator (Kumar, Liang and Ma, "Verified uncertainty calibration",
    NeurIPS 2019, section 4): temperature scaling fitted on one half of the fitting data, then
    equal-mass bins of the scaled confidence on the other half, each bin outputting the mean
    *scaled* confidence in it. Chosen as the extra method because its output takes finitely many
    values, so its calibration error can be estimated (verified) at a 1/sqrt(n)-type rate, unlike
    scaling alone (Kumar et al., Thm. 4.1), and because it is cheap enough for 200 refits.

A class with fewer than ``min_per_class`` fitting samples predicted as it falls back to the map
fitted on all classes pooled. Every fitted calibrator is plain numbers (the 1-D maps are
:class:`StepMap` and :class:`InterpMap`), stored and loaded by :mod:`eeoffload.calibrator_state`.

Length (about 340 lines): seven calibrators behind one small interface, a few lines each, in one
module so that every stage (calibrate, evaluate, trajectory, certify) uses them through one registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from eeoffload import temperature as ts
from eeoffload.calibrator_names import METHODS  # noqa: F401  (the names; also imported by the params)
from eeoffload.calibrator_maps import (  # noqa: F401  (re-exported: the maps are part of this interface)
    InterpMap,
    OneDimMap,
    StepMap,
    equal_mass_edges,
    fit_histogram_map,
    fit_isotonic_map,
    fit_scaled_binning_map,
)


#: Equal-mass bins hold this many fitting samples (Gupta and Ramdas 2022 use 50 points per bin).
POINTS_PER_BIN = 50


@dataclass(frozen=True)
class TopLabel:
    """Per sample: the predicted class and its calibrated confidence in [0, 1]."""

    confidence: np.ndarray  # (N,) float64
    prediction: np.ndarray  # (N,) int64

    def correct(self, labels: Any) -> np.ndarray:
        return self.prediction == np.asarray(labels, dtype=np.int64)


class Calibrator(Protocol):
    def fit(self, logits: np.ndarray, labels: np.ndarray) -> Calibrator: ...

    def top_label(self, logits: np.ndarray) -> TopLabel: ...


def log_probs(calibrator: Calibrator, logits: np.ndarray) -> np.ndarray | None:
    """The calibrated log-probabilities (N, C) of the methods that output a whole probability vector
    (none, the temperatures, vector scaling), else None (the top-label methods)."""
    method = getattr(calibrator, "log_probs", None)
    return None if method is None else method(logits)


def from_softmax(calibrator: Calibrator, logits: np.ndarray, base: TopLabel | None) -> TopLabel:
    """``calibrator.top_label(logits)``, reusing ``base`` (softmax(logits)'s top label, computed
    once) for the calibrators that only remap it (Identity, PerClassMap)."""
    remap = getattr(calibrator, "remap", None)
    if base is not None and remap is not None:
        return remap(base)
    return calibrator.top_label(logits)


def softmax_top_label(logits: Any, temperature: float = 1.0) -> TopLabel:
    """max and argmax of softmax(z / T) (paper eqs. 1-2)."""
    p = ts.softmax(logits, temperature)
    return TopLabel(p.max(axis=1), p.argmax(axis=1).astype(np.int64))


# --------------------------------------------------------------------------- scaling methods


@dataclass
class Identity:
    """The conventional network: softmax(z) (paper eq. 1)."""

    def fit(self, logits: np.ndarray, labels: np.ndarray) -> Identity:
        return self

    def top_label(self, logits: np.ndarray) -> TopLabel:
        return softmax_top_label(logits)

    def log_probs(self, logits: np.ndarray) -> np.ndarray:
        return ts.log_softmax(logits)

    def remap(self, base: TopLabel) -> TopLabel:
        return base


@dataclass
class Temperature:
    """softmax(z / T), T minimising the NLL (paper IV-A, eq. 2); a given T is kept as is."""

    temperature: float = 1.0

    def fit(self, logits: np.ndarray, labels: np.ndarray) -> Temperature:
        self.temperature = ts.fit_temperature(logits, labels)
        return self

    def top_label(self, logits: np.ndarray) -> TopLabel:
        return softmax_top_label(logits, self.temperature)

    def log_probs(self, logits: np.ndarray) -> np.ndarray:
        return ts.log_softmax(logits, self.temperature)


def _vector_scaling_nll(z: np.ndarray, onehot: np.ndarray, w: np.ndarray, b: np.ndarray) -> float:
    logp = ts.log_softmax(z * w + b)
    return float(-(logp * onehot).sum() / len(z))


@dataclass
class VectorScaling:
    """softmax(w * z + b) with per-class w, b minimising the NLL (Guo et al. 2017, section 4.2).

    The NLL is convex in (w, b) (logits linear in the parameters), so damped Newton from
    (w, b) = (1, 0) converges; a tiny ridge fixes the gauge of b (adding a constant to every b_c
    changes nothing).
    """

    w: np.ndarray = field(default_factory=lambda: np.ones(0))
    b: np.ndarray = field(default_factory=lambda: np.zeros(0))
    max_iter: int = 50
    tol: float = 1e-9

    def fit(self, logits: np.ndarray, labels: np.ndarray) -> VectorScaling:
        z = np.asarray(logits, dtype=np.float64)
        n, c = z.shape
        onehot = np.eye(c)[np.asarray(labels, dtype=np.int64)]
        w, b = np.ones(c), np.zeros(c)
        loss = _vector_scaling_nll(z, onehot, w, b)
        for _ in range(self.max_iter):
            step = _newton_step(z, onehot, w, b)
            t = 1.0
            while t > 1e-6:
                w_new, b_new = w - t * step[:c], b - t * step[c:]
                new = _vector_scaling_nll(z, onehot, w_new, b_new)
                if new <= loss:
                    break
                t *= 0.5
            else:
                break
            w, b, improvement, loss = w_new, b_new, loss - new, new
            if improvement < self.tol:
                break
        self.w, self.b = w, b
        return self

    def top_label(self, logits: np.ndarray) -> TopLabel:
        return softmax_top_label(self._scaled(logits))

    def log_probs(self, logits: np.ndarray) -> np.ndarray:
        return ts.log_softmax(self._scaled(logits))

    def _scaled(self, logits: np.ndarray) -> np.ndarray:
        z = np.asarray(logits, dtype=np.float64)
        if len(self.w) != z.shape[1]:
            raise ValueError(f"vector scaling fitted for {len(self.w)} classes, got {z.shape[1]}")
        return z * self.w + self.b


def _newton_step(z: np.ndarray, onehot: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """H^-1 g for the vector-scaling NLL; H = J^T (diag p - p p^T) J summed over samples."""
    n, c = z.shape
    p = ts.softmax(z * w + b)
    r = p - onehot
    q = z * p
    grad = np.concatenate([(z * r).sum(axis=0), r.sum(axis=0)]) / n
    h_ww = np.diag((z * q).sum(axis=0)) - q.T @ q
    h_wb = np.diag(q.sum(axis=0)) - q.T @ p
    h_bb = np.diag(p.sum(axis=0)) - p.T @ p
    hess = np.block([[h_ww, h_wb], [h_wb.T, h_bb]]) / n + 1e-8 * np.eye(2 * c)
    return np.linalg.solve(hess, grad)


# --------------------------------------------------------------------------- top-label maps
# (the 1-D maps themselves: eeoffload.calibrator_maps)


@dataclass
class PerClassMap:
    """Top-label map: one 1-D map per predicted class (Gupta and Ramdas 2022, the top-label
    reduction), the pooled map for classes with fewer than ``min_per_class`` fitting samples."""

    fit_map: Callable[[np.ndarray, np.ndarray], OneDimMap]
    min_per_class: int = 2 * POINTS_PER_BIN
    maps: dict[int, OneDimMap] = field(default_factory=dict)
    pooled: OneDimMap | None = None

    def fit(self, logits: np.ndarray, labels: np.ndarray) -> PerClassMap:
        top = softmax_top_label(logits)
        correct = top.correct(labels)
        self.pooled = self.fit_map(top.confidence, correct)
        self.maps = {}
        for c in np.unique(top.prediction):
            mask = top.prediction == c
            if mask.sum() >= self.min_per_class:
                self.maps[int(c)] = self.fit_map(top.confidence[mask], correct[mask])
        return self

    def top_label(self, logits: np.ndarray) -> TopLabel:
        return self.remap(softmax_top_label(logits))

    def remap(self, top: TopLabel) -> TopLabel:
        """The map applied to softmax(z)'s top label."""
        if self.pooled is None:
            raise ValueError("calibrator not fitted")
        out = self.pooled(top.confidence)
        for c, mapping in self.maps.items():
            mask = top.prediction == c
            if mask.any():
                out[mask] = mapping(top.confidence[mask])
        return TopLabel(np.clip(out, 0.0, 1.0), top.prediction)


@dataclass
class ScalingBinning:
    """Scaling-binning (Kumar et al. 2019, section 4): T on the first half, bins on the second."""

    n_bins: int = 15
    temperature: float = 1.0
    mapping: OneDimMap | None = None

    def fit(self, logits: np.ndarray, labels: np.ndarray) -> ScalingBinning:
        z, y = np.asarray(logits), np.asarray(labels, dtype=np.int64)
        half = len(z) // 2
        self.temperature = ts.fit_temperature(z[:half], y[:half])
        scaled = softmax_top_label(z[half:], self.temperature).confidence
        self.mapping = fit_scaled_binning_map(scaled, self.n_bins)
        return self

    def top_label(self, logits: np.ndarray) -> TopLabel:
        if self.mapping is None:
            raise ValueError("calibrator not fitted")
        top = softmax_top_label(logits, self.temperature)
        return TopLabel(self.mapping(top.confidence), top.prediction)


# --------------------------------------------------------------------------- per-exit fitting


def make_calibrator(method: str, n_bins: int = 15) -> Calibrator:
    """A fresh calibrator for ``method`` (one of :data:`METHODS` but ``global_temperature``)."""
    if method == "none":
        return Identity()
    if method == "temperature":
        return Temperature()
    if method == "vector_scaling":
        return VectorScaling()
    if method == "histogram_binning":
        return PerClassMap(lambda c, k: fit_histogram_map(c, k, POINTS_PER_BIN))
    if method == "isotonic":
        return PerClassMap(fit_isotonic_map)
    if method == "scaling_binning":
        return ScalingBinning(n_bins=n_bins)
    raise ValueError(f"unknown calibration method {method!r}; allowed: {', '.join(METHODS)}")


def fit_exit_calibrators(method: str, exit_logits: np.ndarray, labels: np.ndarray,
                         n_bins: int = 15) -> list[Calibrator]:
    """One fitted calibrator per exit; ``exit_logits`` is (n_exits, N, C), side branches first.

    ``global_temperature`` shares one T over the side branches
    (:func:`eeoffload.temperature.fit_global_temperature`); every other method fits each exit alone.
    """
    if method == "global_temperature":
        temps = ts.fit_global_temperature(list(exit_logits), labels)
        return [Temperature(t) for t in temps]
    return [make_calibrator(method, n_bins).fit(z, labels) for z in exit_logits]


def exit_top_labels(calibrators: list[Calibrator], exit_logits: np.ndarray, labels: np.ndarray,
                    base: list[TopLabel] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct), each (n_exits, N), from fitted per-exit calibrators; ``base``
    optionally holds softmax(z)'s top label per exit, computed once (see :func:`from_softmax`)."""
    if len(calibrators) != len(exit_logits):
        raise ValueError(f"{len(calibrators)} calibrators for {len(exit_logits)} exits")
    bases = base if base is not None else [None] * len(calibrators)
    tops = [from_softmax(cal, z, b) for cal, z, b in zip(calibrators, exit_logits, bases)]
    return np.stack([t.confidence for t in tops]), np.stack([t.correct(labels) for t in tops])
