"""Stage evaluate: offloading, outage and missed-deadline metrics (paper III, IV-B..IV-E).

    python -m pipeline.evaluate

For every variant in params ``variants`` and for ``conventional`` (T = 1) and ``calibrated``
(temperatures of data/calibration/<variant>.json) decisions, reads data/logits/<variant>.parquet
(test split) and data/profile/<variant>.json, and writes reports/metrics/<variant>/offload.parquet,
reports/metrics/<variant>/deadline.parquet and reports/metrics.json. Params: ``network``,
``evaluate``, ``variants`` only. Formulas: docs/metrics.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eeoffload import offload
from eeoffload.calibration import ExitLogits
from pipeline import params as P
from pipeline.calibrate import read_logits, split_logits
from pipeline.io import StageError, atomic_dir, atomic_write_json, read_json_checked, read_params, run_stage
from pipeline.params import VariantParams, value_grid  # noqa: F401 - value_grid re-exported

HEADLINE_P_TAR = (0.75, 0.825, 0.85, 0.875)
CALIBRATIONS = ("conventional", "calibrated")


@dataclass(frozen=True)
class EvaluateStageParams:
    """What this stage reads of params: sections network and evaluate, and every variant."""

    network: P.NetworkParams
    evaluate: P.EvaluateParams
    variants: dict[str, VariantParams]


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def evaluate_params(params: dict[str, Any]) -> EvaluateStageParams:
    """Params sections ``network``, ``evaluate`` and ``variants``, validated by pipeline.params."""
    return EvaluateStageParams(network=P.network_params(params), evaluate=P.evaluate_params(params),
                               variants=P.variants_params(params))


def read_temperatures(path: Path, n_exits: int) -> list[float]:
    """Temperatures of exits 1..n_exits from a calibration JSON, validated."""
    obj = read_json_checked(path, [], "calibrate")
    temps = obj.get("temperatures")
    expected = [str(k) for k in range(1, n_exits + 1)]
    if not isinstance(temps, dict) or sorted(temps, key=str) != sorted(expected):
        got = sorted(temps) if isinstance(temps, dict) else temps
        raise StageError(f"{path}: 'temperatures' must have keys {expected} (exits of the logits file), got {got!r}")
    values = [temps[k] for k in expected]
    if not all(_is_number(t) and t > 0 for t in values):
        raise StageError(f"{path}: temperatures must be positive numbers, got {values!r}")
    return [float(t) for t in values]


@dataclass(frozen=True)
class Profile:
    device_ms_to_exit: list[float]  # side branches 1..n-1
    offload_edge_ms: float
    upload_bytes: float
    cloud_ms: float


def read_profile(path: Path, n_exits: int) -> Profile:
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
        if not (_is_number(value) and value >= 0):
            raise StageError(f"{path}: {key} must be a number >= 0, got {value!r}")
    return Profile(
        device_ms_to_exit=[float(to_exit[k]) for k in needed],
        offload_edge_ms=float(obj["offload_edge_ms"]),
        upload_bytes=float(obj["upload_bytes"]),
        cloud_ms=float(obj["cloud_ms"]),
    )


@dataclass(frozen=True)
class VariantInputs:
    test: ExitLogits
    temperatures: list[float]
    profile: Profile


def read_variant(variant: str, spec: VariantParams) -> VariantInputs:
    path = Path("data/logits") / f"{variant}.parquet"
    test = split_logits(read_logits(path), "test", path)
    branches = spec.branches
    if len(branches) + 1 != test.n_exits:
        raise StageError(
            f"{path}: {test.n_exits} exits, but params variants.{variant}.branches lists {len(branches)} branches"
        )
    temperatures = read_temperatures(Path("data/calibration") / f"{variant}.json", test.n_exits)
    profile = read_profile(Path("data/profile") / f"{variant}.json", test.n_exits)
    return VariantInputs(test, temperatures, profile)


@dataclass(frozen=True)
class VariantMetrics:
    offload: pd.DataFrame
    deadline: pd.DataFrame
    headline: dict[str, dict[str, float | None]]


def _json_number(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 6)


def evaluate_variant(inputs: VariantInputs, params: EvaluateStageParams) -> VariantMetrics:
    """Both calibrations of one variant: the p_tar grid, the deadline curves and headline numbers."""
    p, net = params.evaluate, params.network
    test = inputs.test
    n = len(test.labels)
    order = offload.sample_order(n, p.batch_order, p.seed)
    orders = offload.resample_orders(n, p.resamples, p.seed)
    offloaded_ms = offload.offloaded_sample_ms(
        inputs.profile.offload_edge_ms, inputs.profile.upload_bytes, net.uplink_mbps, net.rtt_ms, inputs.profile.cloud_ms
    )
    exit_ms = offload.exit_latency_ms(inputs.profile.device_ms_to_exit, offloaded_ms)
    headline_p = np.array(HEADLINE_P_TAR)
    offload_tables, deadline_tables, headline = [], [], {}
    for name in CALIBRATIONS:
        temps = inputs.temperatures if name == "calibrated" else [1.0] * test.n_exits
        conf, correct = offload.exit_confidence(test.logits, test.labels, temps)

        def grid_metrics(grid: np.ndarray) -> dict[str, np.ndarray]:
            columns = offload.device_metrics(conf, correct, grid)
            columns["outage"], columns["n_batches"] = offload.outage_probability(conf, correct, grid, order, p.batch_size)
            mean, low, high = offload.resampled_outage(conf, correct, grid, orders, p.batch_size)
            columns |= {"outage_resampled": mean, "outage_low": low, "outage_high": high}
            return columns

        table = pd.DataFrame({"calibration": name, "p_tar": p.p_tar, **grid_metrics(p.p_tar)})
        offload_tables.append(table.astype({"n_batches": np.int64}))
        missed = offload.missed_deadline_probability(
            conf, correct, p.deadline_p_tar, p.t_tar_ms, exit_ms, order, p.batch_size
        )
        deadline_tables.append(
            pd.DataFrame(
                {
                    "calibration": name,
                    "p_tar": np.repeat(p.deadline_p_tar, len(p.t_tar_ms)),
                    "t_tar_ms": np.tile(p.t_tar_ms, len(p.deadline_p_tar)),
                    "missed_deadline": missed.ravel(),
                }
            )
        )
        numbers: dict[str, float | None] = {}
        at_headline = grid_metrics(headline_p)
        for key in ("p_device", "acc_device", "acc_total", "outage", "outage_resampled"):
            for j, pt in enumerate(HEADLINE_P_TAR):
                numbers[f"{key}@{pt:g}"] = _json_number(at_headline[key][j])
        for j, pt in enumerate(p.deadline_p_tar):
            row = missed[j]
            numbers[f"min_missed_deadline@{pt:g}"] = None if np.isnan(row).all() else _json_number(np.nanmin(row))
        headline[name] = numbers
    return VariantMetrics(
        pd.concat(offload_tables, ignore_index=True), pd.concat(deadline_tables, ignore_index=True), headline
    )


def main() -> None:
    p = evaluate_params(read_params())
    inputs = {variant: read_variant(variant, spec) for variant, spec in p.variants.items()}
    results = {variant: evaluate_variant(data, p) for variant, data in inputs.items()}
    # reports/metrics/ is one DVC output folder: built beside it and swapped in whole, so a kill
    # never leaves a temporary or a half-written file inside it.
    with atomic_dir(Path("reports/metrics")) as tmp:
        for variant, result in results.items():
            (tmp / variant).mkdir()
            result.offload.to_parquet(tmp / variant / "offload.parquet", index=False)
            result.deadline.to_parquet(tmp / variant / "deadline.parquet", index=False)
    atomic_write_json(Path("reports/metrics.json"), {v: r.headline for v, r in results.items()})
    for variant, result in results.items():
        for name, numbers in result.headline.items():
            print(
                f"{variant} {name}: p_device@0.85={numbers['p_device@0.85']} "
                f"acc_device@0.85={numbers['acc_device@0.85']} outage@0.85={numbers['outage@0.85']}"
            )


if __name__ == "__main__":
    run_stage("evaluate", main)
