"""Stage certify: calibrators compared, and Learn-then-Test thresholds certified, over random splits.

    python -m pipeline certify <variant> <seed>

Reads data/logits/<variant>/seed<k>.parquet (val and test pooled: the held-out samples) and params
``calibration.methods``, ``calibration.n_bins`` and section ``certify``. For each of
``certify.splits`` random splits into calibration (``calibration_fraction``) / test samples, and for
each calibrator: fit it on the first ``fit_fraction`` of the calibration samples, certify the
shared exit threshold on the others for every target and procedure (eeoffload.certify), and
measure on the test samples (the protocol: eeoffload.certify_protocol). Writes
reports/certify/<variant>/seed<k>/ (one folder, swapped atomically): see docs/certify.md for the
files and columns.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from eeoffload.certify_protocol import Held, certify_run, split_sizes, summary
from pipeline.core import registry
from pipeline.core.artifacts import read_logits, split_logits
from pipeline.core.atomic import atomic_dir
from pipeline.core.io import StageError, read_params
from pipeline.core.params import CertifyParams, certify_params


def held_out(frame: pd.DataFrame, path: Path) -> Held:
    val, test = split_logits(frame, "val", path), split_logits(frame, "test", path)
    if val.n_exits < 2:
        raise StageError(f"{path}: needs at least one side branch (exits 1..n with n >= 2), got {val.n_exits} exit")
    return Held.of(np.concatenate([val.logits, test.logits], axis=1), np.concatenate([val.labels, test.labels]))


def checked_split_sizes(p: CertifyParams, n: int, path: Path) -> tuple[int, int]:
    """(n_calibration, n_fit) of each split; StageError naming the key when the data is too small."""
    n_cal, n_fit = split_sizes(p, n)
    if not 0 < n_fit < n_cal < n:
        raise StageError(f"params.yaml: certify.calibration_fraction = {p.calibration_fraction}, certify.fit_fraction = "
                         f"{p.fit_fraction}; allowed: fractions leaving at least one sample to fit, to certify and to "
                         f"test of the {n} val+test samples in {path}")
    return n_cal, n_fit


def main(variant: str, seed: int) -> None:
    import time

    start = time.perf_counter()
    p = certify_params(read_params())
    path = registry.logits_path(variant, seed)
    held = held_out(read_logits(path), path)
    sizes = checked_split_sizes(p, len(held.labels), path)
    tables = certify_run(held, p, sizes)
    head = summary(variant, p, sizes, len(held.labels), tables["validity"], tables["exits"], tables["aurc"],
                   time.perf_counter() - start)
    with atomic_dir(registry.certify_dir(variant, seed)) as tmp:
        for name, table in tables.items():
            table.to_parquet(tmp / f"{name}.parquet", index=False)
        (tmp / "summary.json").write_text(json.dumps(head, indent=2) + "\n", encoding="utf-8")
    for r in tables["validity"].itertuples():
        print(f"{variant} {r.method:>18} target {r.target:.3f} {r.procedure:>14}: violations "
              f"{r.violation_rate:.3f} [{r.violation_low:.3f}, {r.violation_high:.3f}] p_device {r.mean_p_device:.3f}")
