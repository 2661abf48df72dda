"""Section III's decision rule is counted in one place (eeoffload.offload) and equals the
plain-loop oracle of tests/reference_metrics.py (issue 22).

1. The core (``exit_bounds``, ``first_confident_exit``, ``is_confident``) equals
   ``reference_exit`` on random data, 1-3 side exits, several thresholds, confidences on the grid.
2. A source scan: the comparison that decides an exit, and the upload formula, are written once.
"""

from __future__ import annotations

import numpy as np
import pytest

from eeoffload import offload
from tests import reference_metrics as ref

GRIDS = [np.array([0.5]), np.array([0.9, 0.3, 0.6, 0.6, 0.75]), np.round(np.linspace(0.05, 1.0, 20), 10)]


def _data(n_side: int, seed: int, n: int = 300) -> np.ndarray:
    rng = np.random.default_rng(seed)
    side = rng.uniform(0.0, 1.0, size=(n_side, n))
    side[:, : n // 3] = rng.choice(GRIDS[2], size=(n_side, n // 3))  # exactly on thresholds: >= keeps them
    return side


@pytest.mark.parametrize("n_side", [1, 2, 3])
@pytest.mark.parametrize("grid", GRIDS, ids=["one", "unsorted-with-ties", "twenty"])
def test_core_equals_the_plain_loop_oracle(n_side: int, grid: np.ndarray) -> None:
    side = _data(n_side, seed=n_side)
    expected = np.array([[ref.reference_exit(side[:, s].tolist(), p) for p in grid] for s in range(side.shape[1])])
    np.testing.assert_array_equal(offload.first_confident_exit(side, grid), expected)
    # The interval form: exit k for the ascending grid's indices [bounds[k], bounds[k+1]).
    ascending = np.sort(grid, kind="stable")
    bounds = offload.exit_bounds(side, ascending)
    assert bounds.shape == (n_side + 2, side.shape[1])
    for i, p in enumerate(ascending):
        from_bounds = ((bounds[:-1] <= i) & (i < bounds[1:])).argmax(axis=0)
        np.testing.assert_array_equal(from_bounds, [ref.reference_exit(side[:, s].tolist(), p)
                                                    for s in range(side.shape[1])])
    # One threshold per side branch: the oracle with each branch's own threshold.
    vectors = np.stack([np.roll(np.resize(grid, n_side), j) for j in range(3)])  # (3, n_side)
    by_branch = offload.first_confident_exit(side, vectors)
    for j, vec in enumerate(vectors):
        want = [next((k for k in range(n_side) if side[k, s] >= vec[k]), n_side) for s in range(side.shape[1])]
        np.testing.assert_array_equal(by_branch[:, j], want)
    shared = offload.first_confident_exit(side, np.repeat(grid[:, None], n_side, axis=1))
    np.testing.assert_array_equal(shared, expected)


@pytest.mark.parametrize("n_side", [1, 2, 3])
def test_one_sample_rule_equals_the_core(n_side: int) -> None:
    """eeoffload.partition decides one sample at a time with is_confident, branch by branch."""
    side = _data(n_side, seed=10 + n_side, n=60)
    for s in range(side.shape[1]):
        for p in GRIDS[1]:
            one = next((k for k in range(n_side) if offload.is_confident(float(side[k, s]), float(p))), n_side)
            assert one == offload.first_confident_exit(side[:, s:s + 1], [p])[0, 0] == ref.reference_exit(
                side[:, s].tolist(), p)
