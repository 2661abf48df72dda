"""The rows of the report page's tables, each from one pipeline output or params section: where
it ran (machine), the stage timings, the per-exit table over seeds, the headline numbers with their
intervals, the trajectory, the banner of a run below the paper's setting. Pure table building:
:mod:`pipeline.report_context` reads the files, :mod:`pipeline.report` renders.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from eeoffload import claims as C
from eeoffload import paper as PAPER
from pipeline.core import params as P
from pipeline.core import registry
from pipeline.core.io import StageError

STAGE_ORDER = ("prepare", "train", "logits", "calibrate", "profile", "evaluate", "trajectory", "plots")


def flat_rows(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dict as (dotted key, value text) rows."""
    if isinstance(obj, dict):
        rows: list[tuple[str, str]] = []
        for k, v in obj.items():
            rows += flat_rows(v, f"{prefix}.{k}" if prefix else str(k))
        return rows
    if isinstance(obj, list):
        return [(prefix, ", ".join(str(x) for x in obj) if all(not isinstance(x, (dict, list)) for x in obj)
                 else json.dumps(obj))]
    return [(prefix, "" if obj is None else str(obj))]


def machine(profiles: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """Where the report ran, and where the latency model was measured (from the profile files)."""
    rows = [
        ("report host", platform.platform()),
        ("python", sys.version.split()[0]),
        ("CPU count", str(os.cpu_count())),
    ]
    seen: dict[str, str] = {}
    for v, prof in profiles.items():
        for side in ("edge", "cloud"):
            info = prof.get(side)
            if not info:
                continue
            text = "; ".join(f"{k}: {val}" for k, val in flat_rows(info) if val != "")  # unset fields omitted
            if text not in seen.values():
                seen[f"{side} ({v})"] = text
    rows += list(seen.items())
    return rows


def timings(folder: Path) -> list[dict[str, Any]]:
    """reports/timings/*.json as rows, in pipeline order."""
    rows = []
    if folder.is_dir():
        for f in sorted(folder.glob("*.json")):
            try:
                t = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as e:
                raise StageError(f"{f}: not valid JSON: {e}") from e
            seed = t.get("seed")  # per-run stages (pipeline.core.io.write_timing)
            variant = t.get("variant") or ""
            rows.append({"stage": t.get("stage", f.stem), "variant": f"{variant} seed {seed}" if seed is not None
                         else variant, "seconds": float(t.get("seconds", float("nan"))),
                         "start": t.get("start"), "end": t.get("end")})
    rank = {s: i for i, s in enumerate(STAGE_ORDER)}
    rows.sort(key=lambda r: (rank.get(r["stage"], len(rank)), r["variant"]))
    return rows


def wall_span(rows: list[dict[str, Any]]) -> float | None:
    """Seconds from the earliest stage start to the latest stage end (the stages' sum counts
    concurrent trainings twice); None unless every timing file has its start and end."""
    if not rows or any(not isinstance(r.get("start"), (int, float)) or not isinstance(r.get("end"), (int, float))
                       for r in rows):
        return None
    return max(r["end"] for r in rows) - min(r["start"] for r in rows)


def exit_table(exits: pd.DataFrame, training: pd.DataFrame | None, branches: list[str]) -> list[dict[str, Any]]:
    """Per exit: test accuracy, temperature, ECE (and NLL) before and after calibration."""
    rows = []
    n = int(exits["exit"].max())
    last = training.sort_values("epoch").iloc[-1] if training is not None and len(training) else None
    for e in sorted(int(x) for x in exits["exit"].unique()):
        sub = exits[exits["exit"] == e].set_index("calibration")

        def get(cal: str, col: str) -> float:
            if cal in sub.index and col in sub.columns:
                return float(sub.loc[cal, col])
            return float("nan")

        where = "final exit (cloud)" if e == n else f"side branch after {branches[e - 1]}" if e <= len(branches) \
            else f"side branch {e}"
        val = float(last[f"val_acc_exit{e}"]) if last is not None and f"val_acc_exit{e}" in last.index else float("nan")
        rows.append({
            "exit": e, "where": where,
            "accuracy": get(C.CONVENTIONAL, "accuracy"),
            "accuracy_cal": get(C.CALIBRATED, "accuracy"),
            "val_acc": val,
            "temperature": get(C.CALIBRATED, "temperature"),
            "ece_before": get(C.CONVENTIONAL, "ece"), "ece_after": get(C.CALIBRATED, "ece"),
            "nll_before": get(C.CONVENTIONAL, "nll"), "nll_after": get(C.CALIBRATED, "nll"),
        })
    return rows


#: Numeric fields of an exit row averaged over seeds; those in _RANGED also get their seeds' range.
_EXIT_NUMBERS = ("accuracy", "accuracy_cal", "val_acc", "temperature", "ece_before", "ece_after", "nll_before",
                 "nll_after")
_RANGED = ("accuracy", "temperature", "ece_before", "ece_after")


def mean_exit_rows(per_seed: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The exit tables of a variant's seeds (one list of rows per seed, same exits) as one: the mean
    over seeds of each number, ``<field>_min``/``<field>_max`` for the main ones, and ``n_seeds``."""
    rows = []
    for i, first in enumerate(per_seed[0]):
        row = dict(first, n_seeds=len(per_seed))
        for field in _EXIT_NUMBERS:
            values = pd.Series([rows_[i][field] for rows_ in per_seed], dtype=float)
            row[field] = float(values.mean())
            if field in _RANGED:
                row[f"{field}_min"], row[f"{field}_max"] = float(values.min()), float(values.max())
        rows.append(row)
    return rows


#: The headline numbers shown on the page, in this order (reports/metrics.json has more).
HEADLINE_SHOWN = ("p_device_mean", "p_device@0.75", "p_device@0.85", "acc_device@0.75", "acc_device@0.85",
                  "acc_total@0.85", "outage@0.85", "outage@0.875", "outage@0.9", "min_missed_deadline@0.85")


def headline_table(headline: Any) -> list[dict[str, Any]]:
    """reports/metrics.json as rows: per variant, calibration and shown key, the mean over the seeds,
    the seeds' interval (t 95% from 3 seeds, else their min-max) and, where evaluate wrote one, the
    population 95% interval on the counts pooled over seeds."""
    rows = []
    if not isinstance(headline, dict):
        return rows
    for v, by_cal in headline.items():
        for cal, m in (by_cal or {}).items():
            if not isinstance(m, dict):
                continue
            for key in (k for k in HEADLINE_SHOWN if k in m):
                name, _, p = key.partition("@")
                t_lo, t_hi = m.get(f"{key}_seed_lo"), m.get(f"{key}_seed_hi")
                kind = "t 95%" if t_lo is not None and t_hi is not None else "min-max"
                lo, hi = (t_lo, t_hi) if kind == "t 95%" else (m.get(f"{key}_seed_min"), m.get(f"{key}_seed_max"))
                if kind == "t 95%":  # every shown number is a probability: the t-interval drawn within [0, 1]
                    lo, hi = max(0.0, lo), min(1.0, hi)
                pop = (m.get(f"{name}_lo@{p}"), m.get(f"{name}_hi@{p}")) if p else (None, None)
                rows.append({"variant": v, "calibration": cal, "metric": key, "value": m[key],
                             "seed_lo": lo, "seed_hi": hi, "seed_kind": kind, "n_seeds": m.get("n_seeds", 1),
                             "pop_lo": pop[0], "pop_hi": pop[1]})
    return rows


def trajectory_tables(root: Path) -> tuple[dict[str, list[dict[str, Any]]], list[int], list[dict[str, Any]]]:
    """The trajectory stage's tables as rows for the page: per variant and epoch, one row per exit
    (the offload columns on the first); the epochs; and the claims' verdicts per epoch."""
    folder = root / registry.TRAJECTORY
    if not (folder / "exits.parquet").is_file():
        return {}, [], []
    exits = pd.read_parquet(folder / "exits.parquet")
    if exits.empty:
        return {}, [], []
    offload = pd.read_parquet(folder / "offload.parquet").set_index(["variant", "epoch", "calibration"])
    claims = pd.read_parquet(folder / "claims.parquet")
    tables: dict[str, list[dict[str, Any]]] = {}
    for (variant, epoch), group in exits.groupby(["variant", "epoch"], sort=False):
        n = len(group)
        for i, row in enumerate(group.sort_values("exit").to_dict(orient="records")):
            row |= {"first": i == 0, "n_exits": n}
            if i == 0:
                for cal, short in ((C.CONVENTIONAL, "conv"), (C.CALIBRATED, "cal")):
                    o = offload.loc[(variant, epoch, cal)]
                    row |= {f"p_device_{short}": o["p_device_mean"], f"outage_085_{short}": o["outage@0.85"],
                            f"outage_0875_{short}": o["outage@0.875"], f"outage_09_{short}": o["outage@0.9"]}
            tables.setdefault(str(variant), []).append(row)
    epochs = sorted(int(e) for e in claims["epoch"].unique())
    verdicts = claims.pivot(index="id", columns="epoch", values="verdict")
    order = sorted(verdicts.index, key=lambda c: int(str(c).lstrip("C")) if str(c).lstrip("C").isdigit() else 99)
    rows = [{"id": cid, "verdicts": [verdicts.loc[cid, e] for e in epochs]} for cid in order]
    return tables, epochs, rows


def run_banner(data: P.DataParams, train: P.TrainParams) -> dict[str, str] | None:
    """A warning for runs below the paper's setting: a subset of the data (smoke) is plumbing only;
    fewer epochs than the paper-length recipe is not the paper's setting. None for a full run."""
    sizes = (data.n_train, data.n_val, data.n_test)
    epochs = train.trunk_epochs + train.joint_epochs
    if sizes != (PAPER.N_TRAIN, PAPER.N_VAL, PAPER.N_TEST):
        return {"title": "Plumbing run: the numbers below mean nothing about the paper.",
                "text": f"It uses {sizes[0]} / {sizes[1]} / {sizes[2]} train / val / test images "
                        f"(paper: {PAPER.N_TRAIN} / {PAPER.N_VAL} / {PAPER.N_TEST}) and {epochs} epochs: it checks "
                        f"that the pipeline runs end to end, not the paper's claims."}
    if epochs < (PAPER.TRUNK_EPOCHS + PAPER.JOINT_EPOCHS):
        return {"title": "Shortened training: not the paper's setting.",
                "text": f"{epochs} epochs (the paper-length recipe has {(PAPER.TRUNK_EPOCHS + PAPER.JOINT_EPOCHS)}); how calibrated the "
                        f"exits are depends on training length (see \"Miscalibration along training\"), so the "
                        f"claims are checked on a network the paper did not study."}
    return None
