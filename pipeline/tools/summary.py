"""Print a markdown summary of a finished run (for the README and issue notes): per-exit accuracy,
temperature and calibration before/after, headline offloading numbers, the shift table (where the
shift stages ran: severities 1, 3, 5 and clean), and the claims verdicts.

``python -m pipeline summary [PROJECT_DIR]`` (default: the current directory). Reads only outputs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import yaml

from eeoffload.claims import claims_table, paper_variants
from pipeline.core import params as P
from pipeline.core import registry


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or pd.isna(x) else f"{x:.3f}"


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


def shift_rows(root: Path, variant: str, seed: int, severities: tuple[int, ...] = (0, 1, 3, 5)) -> list[str]:
    """The shift table of one run (its summary.json's ``table``; none if shift_eval did not run)."""
    path = root / registry.shift_dir(variant, seed) / "summary.json"
    if not path.is_file():
        return []
    summary = json.loads(path.read_text())
    rows = []
    for r in summary["table"]:
        if r["severity"] in severities:
            rows.append(f"| {variant} | {r['corruption']} | {r['severity']} | {_fmt(r.get('acc_final'))} | "
                        f"{_fmt(r.get('acc_exit1'))} | {_fmt(r.get('ece_exit1_conventional'))} / "
                        f"{_fmt(r.get('ece_exit1_calibrated'))} | {_fmt(r.get('outage_conventional'))} / "
                        f"{_fmt(r.get('outage_calibrated'))} | {_fmt(r.get('violation_certified'))} |")
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
    shift = [row for v in variants for row in shift_rows(root, v, first)]
    if shift:
        s = params["shift"]
        print(f"Under shift (seed {first}; p_tar {s['p_tar']:g}, certified target {s['target_accuracy']:g}, "
              f"delta {s['delta']:g}; severity 0 = clean):\n")
        print("| variant | corruption | severity | acc. final | acc. exit 1 | ECE exit 1 before / after | "
              "outage conv. / cal. | certified violation rate |")
        print("|---|---|---|---|---|---|---|---|")
        print("\n".join(shift))
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
