"""The one-dimensional maps of the top-label calibrators (:mod:`eeoffload.calibrators`): a fitted
map is plain numbers (a :class:`StepMap` or an :class:`InterpMap`), so that the calibrate stage can
store it (:mod:`eeoffload.calibrator_state`) and evaluate, trajectory and certify apply it again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class StepMap:
    """A step function: x in bin i (``searchsorted(edges, x, "left")``) maps to ``values[i]``."""

    edges: np.ndarray
    values: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.values[np.searchsorted(self.edges, x, side="left")]


@dataclass
class InterpMap:
    """Piecewise-linear through (x, y), constant outside [x[0], x[-1]] (a fitted isotonic regression)."""

    x: np.ndarray
    y: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(x, dtype=np.float64), self.x, self.y)


OneDimMap = Callable[[np.ndarray], np.ndarray]


def equal_mass_edges(x: np.ndarray, n_bins: int) -> np.ndarray:
    """The n_bins - 1 interior edges splitting sorted ``x`` into bins of (nearly) equal count."""
    if n_bins <= 1 or len(x) == 0:
        return np.empty(0)
    return np.quantile(x, np.arange(1, n_bins) / n_bins)


def fit_histogram_map(conf: np.ndarray, correct: np.ndarray, points_per_bin: int) -> StepMap:
    """Histogram binning (Zadrozny and Elkan 2001): equal-mass bins of ``conf``, each mapped to the
    fraction of its fitting samples that are correct."""
    n_bins = max(1, len(conf) // points_per_bin)
    edges = equal_mass_edges(conf, n_bins)
    index = np.searchsorted(edges, conf, side="left")
    count = np.bincount(index, minlength=n_bins)
    hits = np.bincount(index, weights=correct.astype(np.float64), minlength=n_bins)
    fallback = float(correct.mean()) if len(correct) else 0.5
    return StepMap(edges, np.where(count > 0, hits / np.maximum(count, 1), fallback))


def fit_isotonic_map(conf: np.ndarray, correct: np.ndarray) -> InterpMap:
    """Isotonic regression of correctness on confidence (Zadrozny and Elkan 2002), clipped outside
    the fitted range: sklearn's fit, kept as its thresholds (what its ``predict`` interpolates)."""
    from sklearn.isotonic import IsotonicRegression

    if len(conf) == 0:
        return InterpMap(np.zeros(1), np.full(1, 0.5))
    model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
    model.fit(conf, correct.astype(np.float64))
    return InterpMap(np.asarray(model.X_thresholds_, np.float64), np.asarray(model.y_thresholds_, np.float64))


def fit_scaled_binning_map(conf: np.ndarray, n_bins: int) -> StepMap:
    """The binning half of scaling-binning (Kumar et al. 2019, section 4): equal-mass bins of the
    scaled confidence, each mapped to the mean scaled confidence in it."""
    edges = equal_mass_edges(conf, n_bins)
    index = np.searchsorted(edges, conf, side="left")
    count = np.bincount(index, minlength=len(edges) + 1)
    total = np.bincount(index, weights=conf, minlength=len(edges) + 1)
    # a bin left empty by tied edges outputs its upper edge (the bins are monotone either way)
    return StepMap(edges, np.where(count > 0, total / np.maximum(count, 1), np.r_[edges, 1.0]))
