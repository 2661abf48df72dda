"""Stage report: reports/index.html, one self-contained page (images inline, CSS inline, no script).

    python -m pipeline.report

Reads reports/figures/ (its figures.json manifest and the PNGs it lists), the metrics of every
variant of params ``variants`` aggregated over the seeds of ``train.seeds``
(reports/metrics/<v>/{offload,deadline}.parquet, reports/metrics.json), every seed's
reports/calibration/<v>/seed<k>_exits.parquet and reports/training/<v>/seed<k>.csv,
reports/trajectory/*.parquet, reports/certify/<v>/seed<first>/, reports/timings/*.json and
data/profile/<v>.json (paths: :mod:`pipeline.registry`); params sections data, train, variants,
calibration, latency, network, evaluate.

The claims table is computed here from the metrics files by :mod:`eeoffload.claims`. The page
references nothing outside itself: every image is a ``data:`` URI and the only links are
in-page anchors. This stage records no timing (it reads reports/timings/).

Length (about 385 lines): it turns every artifact the page shows into rows (timings, per-exit and
headline tables over seeds, trajectory, claims) beside the one render call; each helper is a few
lines over one input, and they stay next to the template they feed.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from eeoffload import claims as C
from eeoffload.calibrator_names import DESCRIPTIONS
from eeoffload import paper as PAPER
from pipeline import params as P
from pipeline import registry
from pipeline.atomic import atomic_path
from pipeline.io import StageError, project_commit, read_json_checked, read_params, read_parquet_checked, run_stage
from pipeline.params import validate_params

OUT = registry.REPORT_HTML
FIGURES = registry.FIGURES
TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE = "report.html.j2"
PARAM_SECTIONS = ("data", "train", "variants", "calibration", "latency", "network", "evaluate", "certify", "link")
STAGE_ORDER = ("prepare", "train", "logits", "calibrate", "profile", "evaluate", "trajectory", "plots")
# Columns read from each input and their kinds (pipeline.io.COLUMN_KINDS; docs/interfaces.md).
OFFLOAD_COLUMNS = {"calibration": "str", "p_tar": "number", "p_device": "number", "acc_device": "number",
                   "acc_total": "number", "outage": "number"}
DEADLINE_COLUMNS = {"calibration": "str", "p_tar": "number", "t_tar_ms": "number", "missed_deadline": "number"}
EXITS_COLUMNS = {"exit": "int64", "calibration": "str", "temperature": "number", "accuracy": "number",
                 "ece": "number"}


def _need(path: Path) -> Path:
    if not path.is_file():
        raise StageError(f"{path}: not found (run the stage that writes it first)")
    return path


def _flat(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dict as (dotted key, value text) rows."""
    if isinstance(obj, dict):
        rows: list[tuple[str, str]] = []
        for k, v in obj.items():
            rows += _flat(v, f"{prefix}.{k}" if prefix else str(k))
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
            text = "; ".join(f"{k}: {val}" for k, val in _flat(info) if val != "")  # unset fields omitted
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
            seed = t.get("seed")  # per-run stages (pipeline.io.write_timing)
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


def shift_sections(root: Path, variants: list[str]) -> list[str]:
    """Stage shift_eval's HTML fragment of every run that has one (pipeline.shift_report; docs/shift.md)."""
    from pipeline.shift_report import shift_html

    folders = sorted(f for v in variants for f in (root / registry.SHIFT / v).glob("seed*") if (f / "summary.json").is_file())
    return [shift_html(f) for f in folders]


def certify_sections(root: Path, variants: list[str], seed: int) -> list[str]:
    """The certify stage's HTML fragment of each variant that has one, for training seed ``seed``
    (pipeline.certify_report; the other seeds' tables are in reports/certify/<variant>/seed<k>/)."""
    from pipeline.certify_report import certify_html

    folders = [root / registry.certify_dir(v, seed) for v in variants]
    return [certify_html(f) for f in folders if (f / "summary.json").is_file()]


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


def inline_png(path: Path) -> str:
    data = _need(path).read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise StageError(f"{path}: not a PNG file")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def fmt(x: Any, digits: int = 3, undefined: str = "–") -> str:
    """A number with ``digits`` decimals; an undefined one (None, NaN, evaluate's "undefined") as
    ``undefined`` (a dash, or the word where a note does not explain the dash: the headline)."""
    if x is None or x == "undefined":
        return undefined
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    if f != f:  # NaN
        return undefined
    return f"{f:.{digits}f}"


def render(context: dict[str, Any]) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=jinja2.select_autoescape(["html", "j2"]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = fmt
    return env.get_template(TEMPLATE).render(**context)


# --------------------------------------------------------------------------- main


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
        "params": {s: _flat(params.get(s, {})) for s in PARAM_SECTIONS if s in params},
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


def main() -> None:
    html = render(build_context(read_params()))  # validates every section first (the page shows them all)
    with atomic_path(OUT) as tmp:
        tmp.write_text(html, encoding="utf-8")
        os.chmod(tmp, 0o644)  # a page to open or serve: readable by all, like the figures


if __name__ == "__main__":
    run_stage("report", main, record_timing=False)
