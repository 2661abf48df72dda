"""Readers of the pipeline's artifacts that stages share, each validating what it reads and raising
one StageError that names the file (docs/interfaces.md lists every artifact and its schema).

The logits and calibration readers only: what evaluates a run (the latency profile, the library's
evaluation settings) is in pipeline/core/run_inputs.py, so that calibrate and certify, which read logits,
do not import the offloading and latency code (their dvc.yaml deps follow their imports,
tests/test_dvc_contract.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from eeoffload import calibration as cal
from eeoffload import calibrators as cb
from eeoffload.calibrator_state import TEMPERATURE_METHODS, run_from_state
from pipeline.core.io import StageError, read_json_checked
from pipeline.core.params import is_number


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


def read_calibration(path: Path, n_exits: int) -> tuple[str, list[cb.Calibrator]]:
    """(method, the fitted calibrator of each exit 1..n_exits) from calibrate's JSON, validated."""
    obj = read_json_checked(path, ["method", "exits"], "calibrate")
    try:
        return run_from_state(obj, n_exits)
    except ValueError as e:
        raise StageError(f"{path}: {e}") from e


def read_temperatures(path: Path, n_exits: int) -> list[float]:
    """Temperatures of exits 1..n_exits from a calibration JSON of a temperature method, validated."""
    obj = read_json_checked(path, [], "calibrate")
    temps = obj.get("temperatures")
    if temps is None and "method" in obj:
        raise StageError(f"{path}: calibration.method {obj['method']!r} has no temperatures; this reader needs "
                         f"one of {', '.join(TEMPERATURE_METHODS)}")
    expected = [str(k) for k in range(1, n_exits + 1)]
    if not isinstance(temps, dict) or sorted(temps, key=str) != sorted(expected):
        got = sorted(temps) if isinstance(temps, dict) else temps
        raise StageError(f"{path}: 'temperatures' must have keys {expected} (exits of the logits file), got {got!r}")
    values = [temps[k] for k in expected]
    if not all(is_number(t) and t > 0 for t in values):
        raise StageError(f"{path}: temperatures must be positive numbers, got {values!r}")
    return [float(t) for t in values]
