"""Stage calibrate: one calibrator per exit, fitted on the validation split.

    python -m pipeline calibrate <variant> <seed>

Reads data/logits/<variant>/seed<k>.parquet and params ``calibration.method`` (any of
:data:`eeoffload.calibrators.METHODS`; the default ``temperature`` is the paper's temperature
scaling, IV-A, eq. 2) and ``calibration.n_bins``. Writes data/calibration/<variant>/seed<k>.json (the
method and each exit's fitted state, :mod:`eeoffload.calibrator_state`) and, on the test split
before/after calibration, reports/calibration/<variant>/seed<k>_exits.parquet and
..._reliability.parquet (:mod:`pipeline.core.registry`).
"""

from __future__ import annotations

from eeoffload import calibration as cal
from eeoffload.calibrator_state import run_state
from pipeline.core import registry
from pipeline.core.atomic import atomic_write_json, atomic_write_parquet
from pipeline.core.io import read_params
from pipeline.core.params import calibration_params
from pipeline.core.artifacts import read_logits, split_logits


def main(variant: str, seed: int) -> None:
    p = calibration_params(read_params())
    method, n_bins = p.method, p.n_bins
    path = registry.logits_path(variant, seed)
    frame = read_logits(path)
    val = split_logits(frame, "val", path)
    test = split_logits(frame, "test", path)
    calibrators = cal.fit_calibrators(val, method, n_bins)
    exits, reliability = cal.calibration_tables(test, calibrators, n_bins, method)

    atomic_write_json(registry.calibration_path(variant, seed), run_state(method, calibrators))
    atomic_write_parquet(registry.calibration_exits_path(variant, seed), exits)
    atomic_write_parquet(registry.reliability_path(variant, seed), reliability)
    for row in exits.itertuples():
        print(f"{registry.run_dir(variant, seed)} exit {row.exit} {row.calibration} ({row.method}): "
              f"T={row.temperature:.3f} ECE={row.ece:.4f} NLL={row.nll:.4f}")
