"""What a pipeline run logs to MLflow, read from its outputs: each child run's metrics (the same
keys in every child), its curves as tables and small figures, and the certify stage's calibrator
metrics. Pure reading and reshaping (paths from pipeline.core.registry); no MLflow here
(pipeline.orchestration.tracking logs them; the keys are listed in its docstring).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core import params as P
from pipeline.core import registry
from pipeline.core.params_schema import Seeds

CALIBRATIONS = ("conventional", "calibrated")
EXTRA_P_TAR = (0.8, 0.9)
DEADLINES_MS = (10.0, 25.0, 50.0, 100.0, 150.0)
OFFLOAD_COLUMNS = ("p_device", "acc_device", "acc_total", "outage", "outage_resampled")
EXIT_COLUMNS = ("ece", "mce", "nll", "brier", "accuracy", "temperature")
#: The t-interval over the training seeds, columns ``<col>_<band>`` of evaluate's seed aggregates.
SEED_BANDS = ("seed_lo", "seed_hi")


def seeds_of(params: dict[str, Any]) -> Seeds:
    """The training seeds of params (:func:`pipeline.core.params.run_seeds`; ``.first``: the first-seed rule)."""
    return P.run_seeds(params)


def _p(p: float) -> str:
    return f"p{p:g}"


def _t(t: float) -> str:
    return f"t{t:g}"


def finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _nan_if_none(value: Any) -> float:
    v = finite(value)
    return math.nan if v is None else v


def _per_seed(root: Path, path_of: Callable[[str, int], Path], variant: str, seeds: Sequence[int]) -> pd.DataFrame:
    """The per-seed Parquet tables of a variant that exist, concatenated with a ``seed`` column."""
    frames = [pd.read_parquet(root / path_of(variant, s)).assign(seed=s) for s in seeds
              if (root / path_of(variant, s)).is_file()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def offload_curve(root: Path, variant: str, calibration: str) -> pd.DataFrame:
    """The seed-aggregated offload table of one variant x calibration, by p_tar."""
    offload = pd.read_parquet(root / registry.metrics_dir(variant) / "offload.parquet")
    return offload[offload["calibration"] == calibration].sort_values("p_tar").drop(columns="calibration")


def deadline_curve(root: Path, variant: str, calibration: str) -> pd.DataFrame:
    deadline = pd.read_parquet(root / registry.metrics_dir(variant) / "deadline.parquet")
    return (deadline[deadline["calibration"] == calibration].sort_values(["p_tar", "t_tar_ms"])
            .drop(columns="calibration"))


def reliability_curve(root: Path, variant: str, calibration: str, seeds: Sequence[int]) -> pd.DataFrame:
    """Reliability bins per exit, pooled over the seeds (counts summed, means weighted by count)."""
    rel = _per_seed(root, registry.reliability_path, variant, seeds)
    if rel.empty:
        return rel
    rel = rel[rel["calibration"] == calibration].copy()
    rel["_conf"] = rel["confidence"].fillna(0.0) * rel["count"]
    rel["_acc"] = rel["accuracy"].fillna(0.0) * rel["count"]
    pooled = (rel.groupby(["exit", "bin", "bin_lower", "bin_upper"], as_index=False)[["count", "_conf", "_acc"]]
              .sum().sort_values(["exit", "bin"]))
    n = pooled["count"].where(pooled["count"] > 0)
    pooled["confidence"] = pooled.pop("_conf") / n
    pooled["accuracy"] = pooled.pop("_acc") / n
    return pooled.reset_index(drop=True)


def child_metrics(root: Path, params: dict[str, Any], variant: str, calibration: str) -> tuple[
        dict[str, float], list[tuple[str, float, int]]]:
    """(single-value metrics, [(key, value, step)] training curve) of one variant x calibration."""
    metrics: dict[str, float] = {}
    steps: list[tuple[str, float, int]] = []
    seeds = seeds_of(params)
    deadline_p = P.one_key(params, "evaluate", "deadline_p_tar").tolist()

    offload = offload_curve(root, variant, calibration)
    for p in sorted(set(deadline_p) | set(EXTRA_P_TAR)):
        row = offload[np.isclose(offload["p_tar"], p, atol=1e-6)]
        if row.empty:
            continue
        for col in OFFLOAD_COLUMNS:  # NaN (e.g. accuracy on the device when nothing stays there) kept: same keys
            for name in (col, *(f"{col}_{b}" for b in SEED_BANDS)):
                if name in row:
                    metrics[f"{name}/{_p(p)}"] = _nan_if_none(row[name].iloc[0])

    deadline = deadline_curve(root, variant, calibration)
    for p in deadline_p:
        curve = deadline[np.isclose(deadline["p_tar"], p, atol=1e-6)]
        for t in DEADLINES_MS:
            row = curve[np.isclose(curve["t_tar_ms"], t)]
            if not row.empty:
                for name in ("missed_deadline", *(f"missed_deadline_{b}" for b in SEED_BANDS)):
                    if name in row:
                        metrics[f"{name}/{_p(p)}/{_t(t)}"] = _nan_if_none(row[name].iloc[0])

    exits = _per_seed(root, registry.calibration_exits_path, variant, seeds)
    if not exits.empty:
        exits = (exits[exits["calibration"] == calibration].drop(columns=["calibration", "seed"])
                 .groupby("exit", as_index=False).mean(numeric_only=True))
        final = int(exits["exit"].max()) if not exits.empty else None
        for _, row in exits.iterrows():
            names = [f"exit{int(row['exit'])}"] + (["final"] if int(row["exit"]) == final else [])
            for col in EXIT_COLUMNS:
                if col in row and (v := finite(row[col])) is not None:
                    for name in names:
                        metrics[f"{col}/{name}"] = v

    training = root / registry.training_csv(variant, seeds.first)
    if training.exists():
        curve = pd.read_csv(training)
        for _, row in curve.iterrows():
            for col in curve.columns:
                if col in ("epoch", "phase"):
                    continue
                if (v := finite(row[col])) is not None:
                    steps.append((f"train/{col}", v, int(row["epoch"])))
    return metrics, steps


def child_tables(root: Path, params: dict[str, Any], variant: str, calibration: str) -> dict[str, pd.DataFrame]:
    """The curves of one child as tables: {artifact file: table}, the same files for every child."""
    keep = ["p_tar", *(c for col in OFFLOAD_COLUMNS for c in (col, *(f"{col}_{b}" for b in SEED_BANDS))), "n_seeds"]
    offload = offload_curve(root, variant, calibration)
    deadline = deadline_curve(root, variant, calibration)
    keep_d = ["p_tar", "t_tar_ms", "missed_deadline", *(f"missed_deadline_{b}" for b in SEED_BANDS), "n_seeds"]
    tables = {"curves/offload.json": offload[[c for c in keep if c in offload]],
              "curves/missed_deadline.json": deadline[[c for c in keep_d if c in deadline]]}
    reliability = reliability_curve(root, variant, calibration, seeds_of(params))
    if not reliability.empty:
        tables["curves/reliability.json"] = reliability
    return {k: v.reset_index(drop=True) for k, v in tables.items()}


def child_figures(tables: dict[str, pd.DataFrame], title: str) -> dict[str, Any]:
    """Small matplotlib figures of a child's curves, fixed axes so that runs compare by eye."""
    from matplotlib.figure import Figure

    def new(ylabel: str, xlabel: str = "p_tar (target confidence)") -> tuple[Figure, Any]:
        fig = Figure(figsize=(5.0, 3.4), dpi=100, layout="constrained")
        ax = fig.subplots()
        ax.set(xlabel=xlabel, ylabel=ylabel, ylim=(-0.02, 1.02), title=title)
        ax.grid(alpha=0.3)
        return fig, ax

    def band(ax: Any, t: pd.DataFrame, x: str, col: str, label: str) -> None:
        line = ax.plot(t[x], t[col], label=label)[0]
        if f"{col}_seed_lo" in t and t[f"{col}_seed_lo"].notna().any():
            ax.fill_between(t[x], t[f"{col}_seed_lo"], t[f"{col}_seed_hi"], color=line.get_color(), alpha=0.2,
                            linewidth=0)

    figures: dict[str, Any] = {}
    offload = tables["curves/offload.json"]
    fig, ax = new("probability")
    band(ax, offload, "p_tar", "p_device", "p_device (classified on the device)")
    band(ax, offload, "p_tar", "acc_device", "accuracy on the device")
    band(ax, offload, "p_tar", "acc_total", "accuracy in total")
    ax.legend(fontsize=8)
    figures["figures/p_device.png"] = fig
    fig, ax = new("inference outage probability")
    band(ax, offload, "p_tar", "outage", "outage")
    figures["figures/outage.png"] = fig
    deadline = tables["curves/missed_deadline.json"]
    fig, ax = new("missed-deadline probability", "deadline t_tar (ms)")
    for p, curve in deadline.groupby("p_tar"):
        band(ax, curve, "t_tar_ms", "missed_deadline", f"p_tar {p:g}")
    ax.legend(fontsize=8)
    figures["figures/missed_deadline.png"] = fig
    if (rel := tables.get("curves/reliability.json")) is not None:
        fig, ax = new("accuracy", "confidence")
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        for k, bins in rel.groupby("exit"):
            bins = bins[bins["count"] > 0]
            ax.plot(bins["confidence"], bins["accuracy"], marker="o", markersize=3, label=f"exit {k}")
        ax.set_xlim(0, 1)
        ax.legend(fontsize=8)
        figures["figures/reliability.png"] = fig
    return figures


def method_metrics(folder: Path) -> dict[str, dict[str, float]]:
    """{calibrator: {metric key: value}} from a certify folder (validity, exits and aurc tables)."""
    validity = pd.read_parquet(folder / "validity.parquet")
    exits = pd.read_parquet(folder / "exits.parquet").groupby(["method", "exit"]).mean(numeric_only=True)
    aurc = pd.read_parquet(folder / "aurc.parquet").groupby("method")["aurc"].mean()
    n_exits = int(exits.index.get_level_values("exit").max())
    out: dict[str, dict[str, float]] = {}
    for method in dict.fromkeys(validity["method"]):
        m: dict[str, float] = {"aurc": float(aurc.get(method, float("nan")))}
        for k in range(1, n_exits + 1):
            name = "final" if k == n_exits else f"exit{k}"
            for col in ("ece", "ece_equal_mass", "brier", "nll"):
                m[f"{col}/{name}"] = float(exits.loc[(method, k), col])
        for row in validity[validity["method"] == method].itertuples():
            key = f"t{row.target:g}/{row.procedure}"
            m |= {f"violation_rate/{key}": row.violation_rate, f"p_device/{key}": row.mean_p_device,
                  f"acc_device/{key}": row.mean_acc_device, f"batch_outage/{key}": row.mean_batch_outage}
        out[method] = {k: v for k, v in m.items() if finite(v) is not None}
    return out


def seed_method_metrics(root: Path, variant: str, seeds: Sequence[int]) -> dict[str, dict[str, float]]:
    """:func:`method_metrics` averaged over the seeds whose certify folder exists (empty if none)."""
    per_seed = [method_metrics(root / registry.certify_dir(variant, s)) for s in seeds
                if (root / registry.certify_dir(variant, s) / "validity.parquet").is_file()]
    out: dict[str, dict[str, float]] = {}
    for method in dict.fromkeys(m for d in per_seed for m in d):
        keys = dict.fromkeys(k for d in per_seed for k in d.get(method, {}))
        out[method] = {k: float(np.mean([d[method][k] for d in per_seed if k in d.get(method, {})])) for k in keys}
    return out


