"""The values of the report page (reports/index.html), computed from the pipeline's outputs:
the rows of every table the page shows and the claims table (:mod:`eeoffload.claims` over the
metrics files). :mod:`pipeline.report` renders them; nothing here formats HTML.

Reads reports/figures/ (its figures.json manifest and the PNGs it lists), the metrics of every
variant of params ``variants`` aggregated over the seeds of ``train.seeds``
(reports/metrics/<v>/{offload,deadline}.parquet, reports/metrics.json), every seed's
reports/calibration/<v>/seed<k>_exits.parquet and reports/training/<v>/seed<k>.csv,
reports/trajectory/*.parquet, reports/certify/<v>/seed<first>/, reports/shift/<v>/seed<k>/
(docs/shift.md), reports/timings/*.json and data/profile/<v>.json (paths: :mod:`pipeline.core.registry`); params sections data, train, variants,
calibration, latency, network, evaluate. Each helper is a few lines over one input.
"""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd

from eeoffload import claims as C
from eeoffload.calibrator_names import DESCRIPTIONS
from pipeline.core import registry
from pipeline.core.io import StageError, project_commit, read_json_checked, read_parquet_checked
from pipeline.core.params import validate_params
from pipeline.report_rows import (flat_rows, exit_table, headline_table, machine, mean_exit_rows, run_banner, timings,
                                  trajectory_tables, wall_span)

FIGURES = registry.FIGURES
PARAM_SECTIONS = ("data", "train", "variants", "calibration", "latency", "network", "evaluate", "certify", "link")
# Columns read from each input and their kinds (pipeline.core.io.COLUMN_KINDS; docs/interfaces.md).
OFFLOAD_COLUMNS = {"calibration": "str", "p_tar": "number", "p_device": "number", "acc_device": "number",
                   "acc_total": "number", "outage": "number"}
DEADLINE_COLUMNS = {"calibration": "str", "p_tar": "number", "t_tar_ms": "number", "missed_deadline": "number"}
EXITS_COLUMNS = {"exit": "int64", "calibration": "str", "temperature": "number", "accuracy": "number",
                 "ece": "number"}


def _need(path: Path) -> Path:
    if not path.is_file():
        raise StageError(f"{path}: not found (run the stage that writes it first)")
    return path


def certify_sections(root: Path, variants: list[str], seed: int) -> list[str]:
    """The certify stage's HTML fragment of each variant that has one, for training seed ``seed``
    (pipeline.certify_report; the other seeds' tables are in reports/certify/<variant>/seed<k>/)."""
    from pipeline.certify_report import certify_html

    folders = [root / registry.certify_dir(v, seed) for v in variants]
    return [certify_html(f) for f in folders if (f / "summary.json").is_file()]


def shift_sections(root: Path, variants: list[str]) -> list[str]:
    """Stage shift_eval's HTML fragment of every run that has one (pipeline.shift_report; docs/shift.md)."""
    from pipeline.shift_report import shift_html

    folders = sorted(f for v in variants for f in (root / registry.SHIFT / v).glob("seed*") if (f / "summary.json").is_file())
    return [shift_html(f) for f in folders]


def link_sections(root: Path, variants: list[str]) -> tuple[list[str], list[dict[str, Any]]]:
    """The optional measure_link stage's HTML fragment and claim row of each variant where it ran
    (reports/link/<variant>/, pipeline.link.report_fragment)."""
    from pipeline.link.report_fragment import link_claim, link_fragment

    ran = [v for v in variants if (root / registry.link_dir(v) / "summary.json").is_file()]
    rows = []
    for v in ran:
        row = link_claim(v, root)
        rows.append({"id": row["id"], "figure": row["figure"], "claim": row["claim"], "variant": v,
                     "numbers": row["evidence"], "verdict": row["verdict"]})
    return [link_fragment(v, root) for v in ran], rows


def inline_png(path: Path) -> str:
    data = _need(path).read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise StageError(f"{path}: not a PNG file")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def build_context(params: dict[str, Any], root: Path = Path(".")) -> dict[str, Any]:
    """The page's values: the typed params (validated here) and the outputs under ``root``; the raw
    ``params`` only for the table of the file as written."""
    p = validate_params(params)
    variants = p.variants
    branches = {v: list(spec.branches) for v, spec in variants.items()}
    one, two = C.paper_variants({v: {"branches": b} for v, b in branches.items()})

    seeds = p.train.seeds
    method = p.calibration.method
    offload, deadline, profiles, per_exit = {}, {}, {}, {}
    for v in variants:
        m = root / registry.metrics_dir(v)
        offload[v] = read_parquet_checked(m / "offload.parquet", OFFLOAD_COLUMNS, "evaluate", allow_empty=True)
        deadline[v] = read_parquet_checked(m / "deadline.parquet", DEADLINE_COLUMNS, "evaluate", allow_empty=True)
        per_seed = []
        for seed in seeds:
            exits = read_parquet_checked(root / registry.calibration_exits_path(v, seed), EXITS_COLUMNS, "calibrate",
                                         allow_empty=True)
            tpath = _need(root / registry.training_csv(v, seed))
            try:
                training = pd.read_csv(tpath)
            except Exception as e:  # noqa: BLE001
                raise StageError(f"{tpath}: not a readable CSV file: {e}") from e
            per_seed.append(exit_table(exits, training, branches[v]))
        profiles[v] = read_json_checked(root / registry.profile_path(v), [], "profile")
        per_exit[v] = mean_exit_rows(per_seed)
    headline = read_json_checked(root / registry.METRICS_JSON, [], "evaluate")

    manifest_path = root / registry.FIGURES_MANIFEST
    manifest = read_json_checked(manifest_path, [], "plots")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("figures"), list):
        raise StageError(f"{manifest_path}: expected {{'figures': [...], 'skipped': [...]}}")
    figures = []
    for f in manifest["figures"]:
        figures.append({**f, "src": inline_png(root / FIGURES / f["png"])})

    table = C.claims_table(offload, deadline, one, two)
    link_html, link_rows = link_sections(root, list(variants))
    if link_rows:
        table = pd.concat([table, pd.DataFrame(link_rows)], ignore_index=True)
    claims_rows = table.to_dict(orient="records")

    headline_rows = headline_table(headline)

    stage_rows = timings(root / registry.TIMINGS)
    trajectory, trajectory_epochs, trajectory_claims = trajectory_tables(root)
    return {
        "certify": certify_sections(root, list(variants), seeds.first),
        "shift": shift_sections(root, list(variants)),
        "seeds": list(seeds),
        "link": link_html,
        "banner": run_banner(p.data, p.train),
        "profile_warnings": [(v, str(w)) for v, prof in profiles.items() for w in (prof.get("warnings") or [])],
        "trajectory": trajectory,
        "trajectory_epochs": trajectory_epochs,
        "trajectory_claims": trajectory_claims,
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": project_commit(root),
        "machine": machine(profiles),
        "params": {s: flat_rows(params.get(s, {})) for s in PARAM_SECTIONS if s in params},
        "key_params": [
            ("uplink rate", f"{p.network.uplink_mbps} Mbps"),
            ("round-trip time", f"{p.network.rtt_ms} ms"),
            ("test batch size", str(p.evaluate.batch_size)),
            ("calibration", p.calibration.method),
            ("variants", "; ".join(f"{v}: {', '.join(b)}" for v, b in branches.items())),
            ("paper's one-/two-branch network", f"{one or 'none'} / {two or 'none'}"),
        ],
        "timings": stage_rows,
        "total_seconds": sum(r["seconds"] for r in stage_rows if r["seconds"] == r["seconds"]),
        "wall_seconds": wall_span(stage_rows),
        "per_exit": per_exit,
        "calibrator": DESCRIPTIONS.get(method, method),
        # the T columns only for a calibrator with a temperature (not isotonic, histogram binning ...)
        "has_temperature": any(r["temperature"] == r["temperature"] for rows in per_exit.values() for r in rows),
        "headline": headline_rows,
        "figures": figures,
        "paper_figures": [f for f in figures if f.get("group") == "paper"],
        "extra_figures": [f for f in figures if f.get("group") != "paper"],
        "skipped": manifest.get("skipped", []),
        "claims": claims_rows,
        "claims_summary": C.summary(table),
        "tolerances": {"EPS": C.EPS, "NEAR": C.NEAR, "CLOSE_ACC": C.CLOSE_ACC, "VERY_LOW": C.VERY_LOW,
                       "MIN_COVERAGE": f"{C.MIN_COVERAGE:.0%}"},
        "verdicts": {"holds": C.HOLDS, "does_not_hold": C.DOES_NOT_HOLD, "inconclusive": C.INCONCLUSIVE,
                     "not_enough_data": C.NOT_ENOUGH_DATA, "na": C.NOT_APPLICABLE},
    }
