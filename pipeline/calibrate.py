"""Stage calibrate: temperature scaling per exit (paper IV-A, eq. 2), fitted on the validation split.

    python -m pipeline.calibrate <variant>

Reads data/logits/<variant>.parquet and params section ``calibration``. Writes
data/calibration/<variant>.json and, on the test split before/after scaling,
reports/calibration/<variant>_exits.parquet and reports/calibration/<variant>_reliability.parquet.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from eeoffload import calibration as cal
from eeoffload import temperature as ts
from pipeline.io import (
    StageError,
    atomic_write_json,
    atomic_write_parquet,
    read_params,
    run_stage,
)
from pipeline.params import calibration_params


def read_logits(path: Path) -> pd.DataFrame:
    """The logits table at ``path``, validated (StageError naming the file otherwise)."""
    try:
        frame = pd.read_parquet(path)
    except FileNotFoundError as e:
        raise StageError(f"{path}: not found (run the logits stage first)") from e
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise StageError(f"{path}: not a readable Parquet file: {e}") from e
    try:
        cal.validate_logits_frame(frame)
        columns = cal.logit_columns(frame)
    except ValueError as e:
        raise StageError(f"{path}: {e}") from e
    if frame.empty:
        raise StageError(f"{path}: no rows")
    if not np.isfinite(frame[columns].to_numpy()).all():
        raise StageError(f"{path}: logits must be finite (found NaN or inf)")
    labels = frame["label"].to_numpy()
    if labels.min() < 0 or labels.max() >= len(columns):
        raise StageError(f"{path}: column 'label' must be in 0..{len(columns) - 1}")
    bad_splits = sorted(set(frame["split"].unique()) - {"val", "test"})
    if bad_splits:
        raise StageError(f"{path}: column 'split' must be 'val' or 'test', got {bad_splits}")
    return frame


def split_logits(frame: pd.DataFrame, split: str, path: Path) -> cal.ExitLogits:
    try:
        return cal.exit_logits_from_frame(frame, split)
    except ValueError as e:
        raise StageError(f"{path}: {e}") from e


def fit_temperatures(val: cal.ExitLogits, method: str) -> list[float]:
    """One temperature per exit, fitted on the validation logits (per exit, or one shared T)."""
    if method == "global":
        return ts.fit_global_temperature(list(val.logits), val.labels)
    return [ts.fit_temperature(z, val.labels) for z in val.logits]


def exit_reports(test: cal.ExitLogits, temperatures: list[float], n_bins: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per exit, before (T = 1) and after scaling: metrics rows and reliability bins (test split)."""
    rows, bins = [], []
    for k, temperature in enumerate(temperatures, start=1):
        for name, t in (("conventional", 1.0), ("calibrated", temperature)):
            z = test.logits[k - 1]
            probs = ts.softmax(z, t)
            rows.append(
                {
                    "exit": k,
                    "calibration": name,
                    "temperature": float(t),
                    "accuracy": cal.accuracy(probs, test.labels),
                    "ece": cal.expected_calibration_error(probs, test.labels, n_bins),
                    "mce": cal.maximum_calibration_error(probs, test.labels, n_bins),
                    "nll": ts.temperature_nll(z, test.labels, t),
                    "brier": cal.brier_score(probs, test.labels),
                }
            )
            table = cal.reliability_bins(probs, test.labels, n_bins)
            table.insert(0, "calibration", name)
            table.insert(0, "exit", k)
            bins.append(table)
    exits = pd.DataFrame(rows).astype({"exit": np.int64})
    reliability = pd.concat(bins, ignore_index=True).astype({"exit": np.int64})
    return exits, reliability


def main(variant: str) -> None:
    p = calibration_params(read_params())
    method, n_bins = p.method, p.n_bins
    path = Path("data/logits") / f"{variant}.parquet"
    frame = read_logits(path)
    val = split_logits(frame, "val", path)
    test = split_logits(frame, "test", path)
    temperatures = fit_temperatures(val, method)
    exits, reliability = exit_reports(test, temperatures, n_bins)

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
