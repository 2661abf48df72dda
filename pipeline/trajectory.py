"""Stage trajectory: miscalibration along training, from the train stage's snapshots.

    python -m pipeline trajectory

For every variant, seed (``train.seeds``) and snapshot data/snapshots/<variant>/seed<k>/epoch_NNN.parquet
(the logits of val and test after epoch NNN, ``train.snapshot_epochs``), does what calibrate and
evaluate do for the final model: fits the calibrator of each exit on val (``calibration.method``,
any of :data:`eeoffload.calibrators.METHODS`), measures each exit on test before and after it
(``temperature``: the fitted T, NaN for a method without one), runs the evaluation protocol (without the re-batching
spread), and checks the paper's claims at that epoch on the seed aggregate. Writes
reports/trajectory/exits.parquet and offload.parquet (means over the seeds, ``n_seeds`` rows each),
exits_by_seed.parquet and offload_by_seed.parquet (the same with a ``seed`` column), and
claims.parquet (schemas: docs/interfaces.md). It answers "how long must I train before calibration matters?".
Reads data/profile/<variant>.json for the latency of the missed-deadline claims, and
``train.trunk_epochs`` to mark the side exits of trunk-only epochs as untrained.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from eeoffload import calibration as cal
from eeoffload import claims as C
from eeoffload.evaluation import aggregate_deadline, aggregate_offload, evaluate_run
from eeoffload.paper import HEADLINE_P_TAR, TRAJECTORY_P_TAR
from pipeline.core import params as P
from pipeline.core import registry
from pipeline.core.artifacts import read_logits, split_logits
from pipeline.core.run_inputs import evaluation_settings, read_profile
from pipeline.core.atomic import atomic_dir
from pipeline.core.io import StageError, read_params

SNAPSHOT_NAME = re.compile(r"^epoch_(\d+)\.parquet$")
TABLE_P_TAR = tuple(sorted(set(HEADLINE_P_TAR) | set(TRAJECTORY_P_TAR)))


def snapshot_files(variant: str, seed: int) -> dict[int, Path]:
    """{epoch: path} of a run's snapshots (none if the folder is missing or empty)."""
    folder = registry.snapshots_dir(variant, seed)
    found = {}
    for path in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
        m = SNAPSHOT_NAME.match(path.name)
        if not m:
            raise StageError(f"{path}: not a snapshot name (expected epoch_NNN.parquet, written by train)")
        found[int(m.group(1))] = path
    return found


def main() -> None:
    params = read_params()
    cp, network = P.calibration_params(params), P.network_params(params)
    trunk_epochs = P.train_params(params).trunk_epochs
    settings = evaluation_settings(P.evaluate_params(params), resamples=0)
    variants = P.variants_params(params)
    one, two = C.paper_variants({v: {"branches": spec.branches} for v, spec in variants.items()})
    exit_rows, offload_rows, claim_rows = [], [], []
    metrics: dict[int, dict[str, list[tuple[pd.DataFrame, pd.DataFrame]]]] = {}
    runs = [(variant, spec, seed) for variant, spec in variants.items() for seed in P.train_seeds(params)]
    for variant, spec, seed in runs:
        snapshots = snapshot_files(variant, seed)
        profile = read_profile(registry.profile_path(variant), len(spec.branches) + 1)
        exit_ms = profile.exit_ms(network.uplink_mbps, network.rtt_ms)
        for epoch, path in snapshots.items():
            frame = read_logits(path)
            val, test = split_logits(frame, "val", path), split_logits(frame, "test", path)
            calibrators = cal.fit_calibrators(val, cp.method, cp.n_bins)
            exits, _ = cal.calibration_tables(test, calibrators, cp.n_bins, cp.method)
            wide = exits.pivot(index="exit", columns="calibration", values=["ece", "nll", "temperature"])
            n_exits = len(calibrators)
            for k in range(1, n_exits + 1):
                # During the trunk-only phase the side branches are untrained: their rows say so.
                phase = "trunk" if epoch <= trunk_epochs else "joint"
                exit_rows.append({"variant": variant, "seed": seed, "epoch": epoch, "phase": phase, "exit": k,
                                  "trained": phase == "joint" or k == n_exits,
                                  "temperature": wide.loc[k, ("temperature", "calibrated")],
                                  "accuracy": float(exits.loc[exits["exit"] == k, "accuracy"].iloc[0]),
                                  "ece_conventional": wide.loc[k, ("ece", "conventional")],
                                  "ece_calibrated": wide.loc[k, ("ece", "calibrated")],
                                  "nll_conventional": wide.loc[k, ("nll", "conventional")],
                                  "nll_calibrated": wide.loc[k, ("nll", "calibrated")]})
            run = evaluate_run(test.logits, test.labels, calibrators, exit_ms, settings, TABLE_P_TAR)
            metrics.setdefault(epoch, {}).setdefault(variant, []).append((run.offload, run.deadline))
            for calibration, numbers in run.headline.items():
                row = {"variant": variant, "seed": seed, "epoch": epoch, "calibration": calibration,
                       "p_device_mean": numbers["p_device_mean"]}
                row |= {f"{key}@{p:g}": numbers[f"{key}@{p:g}"] for key in ("p_device", "acc_device", "outage")
                        for p in TABLE_P_TAR}
                offload_rows.append(row)
            ece = wide[("ece", "calibrated")]
            print(f"{registry.run_dir(variant, seed)} epoch {epoch}: {cp.method}, calibrated ECE "
                  + " ".join(f"{e:.3f}" for e in ece), flush=True)
    for epoch, by_variant in sorted(metrics.items()):
        offload = {v: aggregate_offload([m[0] for m in runs_]) for v, runs_ in by_variant.items()}
        deadline = {v: aggregate_deadline([m[1] for m in runs_]) for v, runs_ in by_variant.items()}
        claim_rows.append(C.claims_table(offload, deadline, one, two).assign(epoch=epoch))
    exits = pd.DataFrame(exit_rows, columns=["variant", "seed", "epoch", "phase", "exit", "trained", "temperature",
                                             "accuracy", "ece_conventional", "ece_calibrated", "nll_conventional",
                                             "nll_calibrated"]).astype({"seed": np.int64, "epoch": np.int64,
                                                                        "exit": np.int64})
    offload = pd.DataFrame(offload_rows)
    numbers = [c for c in offload.columns if c not in ("variant", "seed", "epoch", "calibration")]
    # undefined values (no sample on the device) are NaN in a float column, never an object column
    offload = offload.astype({c: np.float64 for c in numbers})
    with atomic_dir(registry.TRAJECTORY) as tmp:
        exits.to_parquet(tmp / "exits_by_seed.parquet", index=False)
        offload.to_parquet(tmp / "offload_by_seed.parquet", index=False)
        mean_over_seeds(exits, ["variant", "epoch", "phase", "exit", "trained"]).to_parquet(tmp / "exits.parquet",
                                                                                            index=False)
        mean_over_seeds(offload, ["variant", "epoch", "calibration"]).to_parquet(tmp / "offload.parquet", index=False)
        claims = pd.concat(claim_rows, ignore_index=True) if claim_rows else \
            pd.DataFrame(columns=[*C.COLUMNS, "epoch"])
        claims.astype({"epoch": np.int64}).to_parquet(tmp / "claims.parquet", index=False)


def mean_over_seeds(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``table`` (one row per seed and key) as the mean over seeds per key (NaN left out), the keys'
    first-appearance order kept, and ``n_seeds``."""
    values = [c for c in table.columns if c not in (*keys, "seed")]
    if table.empty:  # no snapshots (train.snapshot_epochs past the schedule): an empty table, same columns
        return pd.DataFrame(columns=[*keys, *values, "n_seeds"])
    grouped = table.groupby(keys, sort=False)
    out = grouped[values].mean().reset_index()
    out["n_seeds"] = grouped["seed"].nunique().to_numpy().astype(np.int64)
    return out
