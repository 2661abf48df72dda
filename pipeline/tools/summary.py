"""Print a markdown summary of a finished run (for the README and issue notes): per-exit accuracy,
temperature and calibration before/after, headline offloading numbers, and the claims verdicts.

``python -m pipeline summary [PROJECT_DIR]`` (default: the current directory). Reads only outputs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import yaml

from eeoffload.claims import claims_table, paper_variants
from pipeline.core import params as P
from pipeline.core import registry


def _fmt(x: float) -> str:
    return "n/a" if pd.isna(x) else f"{x:.3f}"


def exit_rows(root: Path, variant: str, seed: int) -> list[str]:
    """The exit table of one run (the first training seed)."""
    exits = pd.read_parquet(root / registry.calibration_exits_path(variant, seed))
    rows = []
    for k, group in exits.groupby("exit"):
        conv = group[group["calibration"] == "conventional"].iloc[0]
        cal = group[group["calibration"] == "calibrated"].iloc[0]
        rows.append(f"| {variant} | {k} | {_fmt(conv['accuracy'])} | {_fmt(cal['temperature'])} | "
                    f"{_fmt(conv['ece'])} | {_fmt(cal['ece'])} | {_fmt(conv['nll'])} | {_fmt(cal['nll'])} |")
    return rows


def offload_rows(root: Path, variant: str, p_values: tuple[float, ...]) -> list[str]:
    df = pd.read_parquet(root / registry.metrics_dir(variant) / "offload.parquet")
    rows = []
    for p in p_values:
        at = df[(df["p_tar"] - p).abs() < 1e-9]
        for _, r in at.iterrows():
            rows.append(f"| {variant} | {p:g} | {r['calibration']} | {_fmt(r['p_device'])} | {_fmt(r['acc_device'])} | "
                        f"{_fmt(r['acc_total'])} | {_fmt(r['outage'])} ({int(r['n_batches'])}) | "
                        f"{_fmt(r['outage_resampled'])} [{_fmt(r['outage_low'])}, {_fmt(r['outage_high'])}] |")
    return rows


def print_summary(root: Path) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    spec = P.variants_params(params)
    variants = list(spec)
    print("| variant | exit | test accuracy | T | ECE before | ECE after | NLL before | NLL after |")
    print("|---|---|---|---|---|---|---|---|")
    first = P.run_seeds(params).first
    for v in variants:
        print("\n".join(exit_rows(root, v, first)))
    print()
    print("| variant | p_tar | calibration | p_device | acc_device | acc_total | outage (batches) | outage over re-batchings [2.5-97.5% spread] |")
    print("|---|---|---|---|---|---|---|---|")
    for v in variants:
        print("\n".join(offload_rows(root, v, (0.75, 0.825, 0.85, 0.875))))
    print()
    offload = {v: pd.read_parquet(root / registry.metrics_dir(v) / "offload.parquet") for v in variants}
    deadline = {v: pd.read_parquet(root / registry.metrics_dir(v) / "deadline.parquet") for v in variants}
    one, two = paper_variants({v: {"branches": s.branches} for v, s in spec.items()})
    table = claims_table(offload, deadline, one, two)
    print("| claim | variant | this run | verdict |")
    print("|---|---|---|---|")
    for _, c in table.iterrows():
        print(f"| {c['claim']} | {c['variant']} | {c['numbers']} | **{c['verdict']}** |")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline summary", description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", type=Path, default=Path("."), help="a finished project (default: here)")
    print_summary(ap.parse_args(argv).root)
    return 0
