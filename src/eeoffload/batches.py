"""Cutting the test samples into batches (paper section IV-D/IV-E: outage and missed deadlines are
per batch): the order of the samples, the batch of each sample, random re-batchings.

Re-exported by :mod:`eeoffload.offload`, whose batch metrics use them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BATCH_ORDERS = ("sample_id", "shuffled")


def batch_of_sample(order: Any, batch_size: int) -> tuple[np.ndarray, int]:
    """Cut samples, taken in ``order`` (a permutation of 0..N-1), into consecutive batches.

    Returns (batch index per sample, n_batches); the last partial batch is dropped (index -1).
    """
    order = np.asarray(order, dtype=np.int64)
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    n_batches = len(order) // batch_size
    position_batch = np.arange(len(order)) // batch_size
    batch = np.full(len(order), -1, dtype=np.int64)
    batch[order] = np.where(position_batch < n_batches, position_batch, -1)
    return batch, n_batches


def sample_order(n: int, batch_order: str, seed: int) -> np.ndarray:
    """Order of the test samples (already in ascending sample_id) before batching: ``sample_id``
    keeps it, ``shuffled`` is a permutation seeded by ``seed``."""
    if batch_order == "sample_id":
        return np.arange(n, dtype=np.int64)
    if batch_order == "shuffled":
        return np.random.default_rng(seed).permutation(n)
    raise ValueError(f"batch_order must be one of {BATCH_ORDERS}, got {batch_order!r}")


def resample_orders(n: int, resamples: int, seed: int) -> np.ndarray:
    """(R, N) random re-batchings for the resampled outage (independent of :func:`sample_order`)."""
    rng = np.random.default_rng([seed, 1])
    return np.stack([rng.permutation(n) for _ in range(resamples)]) if resamples else np.empty((0, n), np.int64)
