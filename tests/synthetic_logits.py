"""Synthetic logits tables (the logits schema of docs/interfaces.md) for tests and benchmarks: exits
that get better with depth, side branches over-confident as in the paper's Fig. 2."""

from __future__ import annotations

import numpy as np
import pandas as pd

N_CLASSES = 10


def synthetic_logits_frame(n_val: int, n_test: int, n_exits: int, seed: int,
                           n_classes: int = N_CLASSES) -> pd.DataFrame:
    """A logits table (docs/interfaces.md) whose exits get better with depth; the side branches'
    logits are scaled up (x1.8), i.e. over-confident as in the paper's Fig. 2."""
    rng = np.random.default_rng(seed)
    n = n_val + n_test
    labels = rng.integers(0, n_classes, n)
    rows = []
    for k in range(n_exits):
        z = rng.normal(0, 1.0, size=(n, n_classes))
        z[np.arange(n), labels] += 0.8 + 1.2 * k / max(n_exits - 1, 1) + rng.normal(0, 1.0, n)
        z *= 1.8 if k < n_exits - 1 else 1.1
        frame = pd.DataFrame(z.astype(np.float32), columns=[f"logit_{c}" for c in range(n_classes)])
        frame.insert(0, "exit", np.int64(k + 1))
        frame.insert(0, "label", labels.astype(np.int64))
        frame.insert(0, "split", np.where(np.arange(n) < n_val, "val", "test"))
        frame.insert(0, "sample_id", np.arange(n, dtype=np.int64))
        rows.append(frame)
    return pd.concat(rows, ignore_index=True)
