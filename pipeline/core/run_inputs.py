"""What the evaluation of one run reads (evaluate, trajectory; measure_link reads the profile): the
latency profile, a run's logits, calibrators and profile checked against each other, and the
library's evaluation settings from the ``evaluate`` params. Each reader validates what it reads and
raises one StageError that names the file (docs/interfaces.md). The logits and calibration readers
are in pipeline/core/artifacts.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eeoffload import calibration as cal
from eeoffload.evaluation import EvaluationSettings
from eeoffload.latency import LatencyProfile
from pipeline.core import registry
from eeoffload import calibrators as cb
from pipeline.core.artifacts import read_calibration, read_logits, split_logits
from pipeline.core.io import StageError, read_json_checked
from pipeline.core.params import is_number


def read_profile(path: Path, n_exits: int) -> LatencyProfile:
    """The latency-model inputs of a profile JSON, validated (side branches 1..n_exits-1)."""
    obj = read_json_checked(path, [], "profile")
    to_exit = obj.get("device_ms_to_exit")
    needed = [str(k) for k in range(1, n_exits)]
    if not isinstance(to_exit, dict) or any(k not in to_exit for k in needed):
        raise StageError(f"{path}: 'device_ms_to_exit' must have keys {needed}, got {to_exit!r}")
    for key in ("offload_edge_ms", "upload_bytes", "cloud_ms"):
        if key not in obj:
            raise StageError(f"{path}: missing key {key!r}")
    numbers = {f"device_ms_to_exit[{k}]": to_exit[k] for k in needed}
    numbers |= {key: obj[key] for key in ("offload_edge_ms", "upload_bytes", "cloud_ms")}
    for key, value in numbers.items():
        if not (is_number(value) and value >= 0):
            raise StageError(f"{path}: {key} must be a number >= 0, got {value!r}")
    return LatencyProfile(
        device_ms_to_exit=[float(to_exit[k]) for k in needed],
        offload_edge_ms=float(obj["offload_edge_ms"]),
        upload_bytes=float(obj["upload_bytes"]),
        cloud_ms=float(obj["cloud_ms"]),
    )


@dataclass(frozen=True)
class RunInputs:
    """What the evaluation of one trained network reads: its test logits, the fitted calibrator of each
    exit (``method``: calibration.method) and its latency profile."""

    test: cal.ExitLogits
    method: str
    calibrators: list[cb.Calibrator]
    profile: LatencyProfile


def read_run_inputs(variant: str, seed: int, spec: Any, logits_path: Path | None = None) -> RunInputs:
    """One run's data/logits/<variant>/seed<k>.parquet (or ``logits_path``, e.g. a snapshot) and
    data/calibration/<variant>/seed<k>.json, and the variant's data/profile/<variant>.json, checked
    against each other and the variant's branches."""
    path = logits_path or registry.logits_path(variant, seed)
    test = split_logits(read_logits(path), "test", path)
    if len(spec.branches) + 1 != test.n_exits:
        raise StageError(f"{path}: {test.n_exits} exits, but params variants.{variant}.branches lists "
                         f"{len(spec.branches)} branches")
    method, calibrators = read_calibration(registry.calibration_path(variant, seed), test.n_exits)
    profile = read_profile(registry.profile_path(variant), test.n_exits)
    return RunInputs(test, method, calibrators, profile)


def evaluation_settings(ep: Any, resamples: int | None = None) -> EvaluationSettings:
    """The library's settings from the validated ``evaluate`` params (``resamples`` overrides)."""
    return EvaluationSettings(p_tar=ep.p_tar, deadline_p_tar=list(ep.deadline_p_tar), t_tar_ms=ep.t_tar_ms,
                              batch_size=ep.batch_size, batch_order=ep.batch_order,
                              resamples=ep.resamples if resamples is None else resamples, seed=ep.seed)
