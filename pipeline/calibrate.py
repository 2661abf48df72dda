"""Stage calibrate: temperature scaling per exit (paper IV-A, eq. 2), fitted on the validation split.

    python -m pipeline.calibrate <variant>

Reads data/logits/<variant>.parquet and params section ``calibration``. Writes
data/calibration/<variant>.json and, on the test split before/after scaling,
reports/calibration/<variant>_exits.parquet and reports/calibration/<variant>_reliability.parquet.
"""

from __future__ import annotations

import sys
from pathlib import Path

from eeoffload import calibration as cal
from pipeline.io import atomic_write_json, atomic_write_parquet, read_params, run_stage
from pipeline.params import calibration_params
from pipeline.artifacts import read_logits, split_logits


def main(variant: str) -> None:
    p = calibration_params(read_params())
    method, n_bins = p.method, p.n_bins
    path = Path("data/logits") / f"{variant}.parquet"
    frame = read_logits(path)
    val = split_logits(frame, "val", path)
    test = split_logits(frame, "test", path)
    temperatures = cal.fit_temperatures(val, method)
    exits, reliability = cal.calibration_tables(test, temperatures, n_bins)

    atomic_write_json(
        Path("data/calibration") / f"{variant}.json",
        {"method": method, "temperatures": {str(k): t for k, t in enumerate(temperatures, start=1)}},
    )
    atomic_write_parquet(Path("reports/calibration") / f"{variant}_exits.parquet", exits)
    atomic_write_parquet(Path("reports/calibration") / f"{variant}_reliability.parquet", reliability)
    for row in exits.itertuples():
        print(f"{variant} exit {row.exit} {row.calibration}: T={row.temperature:.3f} ECE={row.ece:.4f} NLL={row.nll:.4f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m pipeline.calibrate <variant>", file=sys.stderr)
        raise SystemExit(2)
    run_stage("calibrate", main, sys.argv[1])
