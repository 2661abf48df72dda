"""Stage plots: the paper's Figures 2-7 and extra figures, into reports/figures/.

    python -m pipeline plots

Reads, for every variant of params ``variants``: reports/metrics/<v>/{offload,deadline}.parquet
(aggregated over the seeds: curves with the population band and the seeds' band), the first
seed's reports/calibration/<v>/seed<k>_{exits,reliability}.parquet (also naming the calibrator,
calibration.method, that the legends and captions show) and reports/training/<v>/seed<k>.csv,
data/profile/<v>.json and data/profile/<v>_layers.parquet (paths: :mod:`pipeline.core.registry`); params
sections ``network``, ``evaluate``, ``variants`` and ``train.seeds`` only.

Writes reports/figures/: one PNG per figure (and an SVG for each paper figure), plus
``figures.json``, the manifest the report reads (file names, titles, captions, and the figures
skipped with the reason). The whole folder is built in a temporary folder beside it and renamed
into place at the end, so a failed run leaves the previous folder (or none), never half of one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eeoffload import figures as F
from eeoffload import figures_extra as FX
from eeoffload.calibrator_names import DESCRIPTIONS
from eeoffload.claims import paper_variants
from pipeline.core import params as P
from pipeline.core import registry
from pipeline.core.atomic import atomic_dir
from pipeline.core.io import StageError, check_columns, read_json_checked, read_params, read_parquet_checked

OUT_DIR = registry.FIGURES
#: The p_tar values of the paper's Fig. 6 (it omits 0.75 as too low for calibration to matter).
FIG6_P_TAR = (0.825, 0.85)

# Columns read from each input and their kinds (pipeline.core.io.COLUMN_KINDS; docs/interfaces.md).
_F = "number"
OFFLOAD_COLUMNS = {"calibration": "str", "p_tar": _F, "p_device": _F, "conf_device": _F, "acc_device": _F,
                   "acc_total": _F, "outage": _F, "n_batches": "int64", "outage_resampled": _F,
                   "outage_low": _F, "outage_high": _F}
DEADLINE_COLUMNS = {"calibration": "str", "p_tar": _F, "t_tar_ms": _F, "missed_deadline": _F}
EXITS_COLUMNS = {"exit": "int64", "calibration": "str", "method": "str", "temperature": _F, "accuracy": _F,
                 "ece": _F}
RELIABILITY_COLUMNS = {"exit": "int64", "calibration": "str", "bin": "int64", "bin_lower": _F, "bin_upper": _F,
                       "count": "int64", "confidence": _F, "accuracy": _F}
TRAJECTORY_EXITS_COLUMNS = {"variant": "str", "epoch": "int64", "exit": "int64", "temperature": _F,
                            "ece_conventional": _F, "ece_calibrated": _F}
TRAJECTORY_OFFLOAD_COLUMNS = {"variant": "str", "epoch": "int64", "calibration": "str", "p_device_mean": _F,
                              "outage@0.875": _F}
TRAINING_COLUMNS = {"epoch": "number", "phase": "str", "train_loss": _F, "val_loss": _F}
LAYERS_COLUMNS = {"layer": "str", "part": "str", "location": "str", "ms": _F, "output_elements": "int64"}
PROFILE_KEYS = ["device_ms_to_exit", "offload_edge_ms", "upload_bytes", "cloud_ms"]


@dataclass
class VariantInputs:
    branches: list[str]
    offload: pd.DataFrame
    deadline: pd.DataFrame
    exits: pd.DataFrame
    reliability: pd.DataFrame
    training: pd.DataFrame
    profile: dict[str, Any]
    layers: pd.DataFrame
    exit_ms: dict[str, float]  # the per-exit latency evaluate used (reports/metrics/<v>/latency.json)
    seed: int = 0  # the training seed of exits, reliability and training


@dataclass
class FigureEntry:
    name: str
    title: str
    caption: str
    group: str  # "paper" or "extra"
    variant: str | None
    png: str
    svg: str | None = None


@dataclass
class Manifest:
    figures: list[FigureEntry] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


# --------------------------------------------------------------------------- inputs


def _check_columns(df: pd.DataFrame, columns: dict[str, str], path: Path) -> pd.DataFrame:
    check_columns(df, columns, path)
    if df.empty:
        raise StageError(f"{path}: no rows")
    return df


def read_csv(path: Path, columns: dict[str, str]) -> pd.DataFrame:
    if not path.is_file():
        raise StageError(f"{path}: not found (run the stage that writes it first)")
    try:
        df = pd.read_csv(path)
    except Exception as e:  # noqa: BLE001
        raise StageError(f"{path}: not a readable CSV file: {e}") from e
    return _check_columns(df, columns, path)


def read_variant(variant: str, branches: list[str], seed: int, root: Path = Path(".")) -> VariantInputs:
    """A variant's inputs: the metrics aggregated over seeds; the calibration tables and training
    history of training seed ``seed`` (the first of ``train.seeds``)."""
    m = root / registry.metrics_dir(variant)
    return VariantInputs(
        branches=branches,
        offload=read_parquet_checked(m / "offload.parquet", OFFLOAD_COLUMNS, "evaluate"),
        deadline=read_parquet_checked(m / "deadline.parquet", DEADLINE_COLUMNS, "evaluate"),
        exits=read_parquet_checked(root / registry.calibration_exits_path(variant, seed), EXITS_COLUMNS, "calibrate"),
        reliability=read_parquet_checked(root / registry.reliability_path(variant, seed), RELIABILITY_COLUMNS,
                                         "calibrate"),
        training=read_csv(root / registry.training_csv(variant, seed), TRAINING_COLUMNS),
        profile=read_json_checked(root / registry.profile_path(variant), PROFILE_KEYS, "profile"),
        layers=read_parquet_checked(root / registry.profile_layers_path(variant), LAYERS_COLUMNS, "profile"),
        exit_ms=read_json_checked(m / "latency.json", ["exit_ms"], "evaluate")["exit_ms"],
        seed=seed,
    )


def parse_params(params: dict[str, Any]) -> tuple[F.NetworkInfo, list[float], dict[str, list[str]]]:
    """(network info, deadline p_tar values, {variant: branches}) from the network, evaluate and
    variants sections, validated by pipeline.core.params; StageError on a bad value."""
    network = P.network_params(params)
    evaluate = P.evaluate_params(params)
    variants = P.variants_params(params)
    net = F.NetworkInfo(uplink_mbps=network.uplink_mbps, rtt_ms=network.rtt_ms,
                        batch_size=evaluate.batch_size, resamples=evaluate.resamples)
    return net, [float(p) for p in evaluate.deadline_p_tar], {v: list(s.branches) for v, s in variants.items()}


# --------------------------------------------------------------------------- figures


def _present(deadline: pd.DataFrame, wanted: list[float] | tuple[float, ...]) -> tuple[list[float], list[float]]:
    have = deadline["p_tar"].to_numpy(dtype=float)
    ok = [p for p in wanted if np.isclose(have, p, atol=1e-6).any()]
    return ok, [p for p in wanted if p not in ok]


def read_trajectory(root: Path = Path(".")) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """reports/trajectory/{exits,offload}.parquet (trajectory stage), or None where absent or empty."""
    folder = root / registry.TRAJECTORY
    if not (folder / "exits.parquet").is_file() or pd.read_parquet(folder / "exits.parquet").empty:
        return None
    exits = read_parquet_checked(folder / "exits.parquet", TRAJECTORY_EXITS_COLUMNS, "trajectory", allow_empty=True)
    offload = read_parquet_checked(folder / "offload.parquet", TRAJECTORY_OFFLOAD_COLUMNS, "trajectory",
                                   allow_empty=True)
    return (exits, offload) if len(exits) else None


def calibrator_of(inputs: dict[str, VariantInputs]) -> str:
    """The calibrator behind "calibrated" (calibration.method, as calibrate recorded it in each exits
    table); StageError if the variants disagree."""
    methods = {str(m) for i in inputs.values() for m in i.exits.loc[i.exits["calibration"] == F.CALIBRATED, "method"]}
    if len(methods) > 1:
        raise StageError(f"{registry.CALIBRATION_TABLES}: the variants were calibrated with different methods "
                         f"{sorted(methods)}; run calibrate again")
    return methods.pop() if methods else "temperature"


def build(inputs: dict[str, VariantInputs], net: F.NetworkInfo, deadline_p: list[float], out: Path,
          trajectory: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> Manifest:
    """Draw every figure into folder ``out`` and return the manifest (not yet written)."""
    man = Manifest()
    method = calibrator_of(inputs)
    # the legends and captions name the calibrator behind "calibrated" (calibration.method)
    F.CALIBRATION_LABELS[F.CALIBRATED] = f"{F.CALIBRATED} ({method})"
    variants = {v: {"branches": i.branches} for v, i in inputs.items()}
    one, two = paper_variants(variants)
    n_branches = {v: len(i.branches) for v, i in inputs.items()}
    uplink = f"uplink {net.uplink_mbps:g} Mbps" + (f", RTT {net.rtt_ms:g} ms" if net.rtt_ms else "")
    method_text = DESCRIPTIONS.get(method, method)

    def save(fig, name: str, caption: str, group: str, variant: str | None) -> None:
        png = f"{name}.png"
        fig.savefig(out / png, format="png")
        svg = None
        if group == "paper":
            svg = f"{name}.svg"
            fig.savefig(out / svg, format="svg")
        title = fig.get_suptitle() or name
        F.plt.close(fig)
        if group == "paper" or name.startswith(("reliability", "trajectory")):
            caption += f" Calibrated: {method_text}."
        man.figures.append(FigureEntry(name, title, caption, group, variant, png, svg))

    def skip(name: str, reason: str) -> None:
        man.skipped.append({"figure": name, "reason": reason})

    if one is None:
        for name in ("fig2", "fig3a", "fig3b", "fig3c", "fig4", "fig5"):
            skip(name, "no variant with exactly one side branch in params variants")
    else:
        a = inputs[one]
        save(F.fig2_p_device(a.offload, one, a.branches), "fig2_p_device",
             f"Fig. 2 ({one}): share of test samples classified at the side branch, vs the target "
             f"confidence p_tar. The paper finds calibration lowers it.", "paper", one)
        save(F.fig3a_acc_vs_conf(a.offload, one, a.branches), "fig3a_acc_vs_conf",
             "Fig. 3(a): accuracy vs mean confidence of the samples classified on the device, one point per "
             "p_tar; the dotted identity line is perfect calibration.", "paper", one)
        save(F.fig3b_acc_device(a.offload, one, a.branches), "fig3b_acc_device",
             "Fig. 3(b): accuracy on the device vs p_tar; above the dotted line the target is met.", "paper", one)
        save(F.fig3c_acc_total(a.offload, one, a.branches), "fig3c_acc_total",
             "Fig. 3(c): accuracy over all test samples (device and cloud) vs p_tar.", "paper", one)
        save(F.fig4_outage(a.offload, one, a.branches, net), "fig4_outage",
             f"Fig. 4: inference outage probability (share of batches of {net.batch_size} whose device accuracy "
             f"is below p_tar), as in the legend: colour is the calibration; thick lines (solid conventional, "
             f"dashed calibrated): the fixed batching; thin dotted lines: the mean over {net.resamples} random "
             f"re-batchings (their 2.5-97.5% spread, how much the batching alone moves it, is in offload.parquet, "
             f"outage_low/high); shaded bands: the Clopper-Pearson 95% interval on the batches, greyish where the "
             f"two overlap; hatched (several seeds): the spread over training seeds.", "paper", one)
        ps, missing = _present(a.deadline, deadline_p)
        if not ps:
            ps = sorted(float(x) for x in a.deadline["p_tar"].unique())
            skip("fig5 panels", f"evaluate.deadline_p_tar {deadline_p} not in {one}/deadline.parquet; "
                 f"plotted the p_tar values it has")
        elif missing:
            skip("fig5 panels", f"p_tar {missing} not in {one}/deadline.parquet")
        save(F.fig5_missed_deadline(a.deadline, ps, one, a.branches, net), f"fig5_missed_deadline_{one}",
             f"Fig. 5: missed-deadline probability (share of batches whose mean time per sample exceeds "
             f"t_tar or whose accuracy is below p_tar) vs t_tar, {uplink}. Legend below the panels: lines (solid "
             f"conventional, dashed calibrated), shaded bands the Clopper-Pearson 95% interval on the batches "
             f"(greyish where the two overlap), hatched (several seeds) the spread over training seeds.", "paper", one)
    if two is None:
        skip("fig6", "no variant with exactly two side branches in params variants")
    else:
        b = inputs[two]
        ps, _ = _present(b.deadline, list(FIG6_P_TAR))
        if not ps:
            ps, _ = _present(b.deadline, deadline_p)
            skip("fig6 panels", f"p_tar {list(FIG6_P_TAR)} not in {two}/deadline.parquet; plotted {ps}")
        if ps:
            save(F.fig6_missed_deadline(b.deadline, ps, two, b.branches, net), f"fig6_missed_deadline_{two}",
                 f"Fig. 6: missed-deadline probability vs t_tar for the two-branch network, {uplink}; compare "
                 f"with Fig. 5.", "paper", two)
        else:
            skip("fig6", f"no deadline curves in {two}/deadline.parquet")
    pair = {v: inputs[v].offload for v in (one, two) if v is not None}
    if pair:
        if len(pair) < 2:
            skip("fig7 (partial)", "needs a one-branch and a two-branch variant; drew the one present")
        save(F.fig7_outage_branches(pair, n_branches, net), "fig7_outage_branches",
             "Fig. 7: inference outage vs p_tar; colour is the calibration, line style the number of side "
             "branches.", "paper", None)
    else:
        skip("fig7", "no one- or two-branch variant")

    for v, i in inputs.items():
        save(FX.reliability_diagrams(i.reliability, i.exits, v, i.branches), f"reliability_{v}",
             f"Reliability diagrams of {v} (training seed {i.seed}) on the test split: accuracy vs mean confidence per confidence bin, "
             f"before (conventional) and after calibration (calibrated).", "extra", v)
        save(FX.latency_breakdown(i.layers, i.profile, v, net, i.branches, i.exit_ms), f"latency_{v}",
             f"Latency model of {v}: measured time per layer (left) and per-sample totals (right) for an "
             f"offloaded sample (edge + upload at {net.uplink_mbps:g} Mbps + cloud) and for each side exit.",
             "extra", v)
        save(FX.training_curves(i.training, v, i.branches), f"training_{v}",
             f"Training curves of {v} (training seed {i.seed}): losses and validation accuracy per exit by epoch; shaded: the "
             f"trunk-only phase.", "extra", v)
    if trajectory is None:
        skip("trajectory", "no snapshots: set train.snapshot_epochs")
    else:
        first = next(iter(inputs.values()))
        trunk = int((first.training["phase"] == "trunk").sum())
        save(FX.trajectory(*trajectory, trunk_epochs=trunk), "trajectory",
             "Miscalibration along training, from the snapshots (train.snapshot_epochs): (a) temperature fitted on "
             "val per exit, above 1 = over-confident; (b) test ECE before (solid) and after (dotted) calibration, one "
             "colour per variant and exit; (c) mean share of samples kept on the device over the p_tar grid "
             "(circles), and the outage at p_tar 0.875 (squares), colour the calibration, line style the variant. "
             "Grey: the trunk-only epochs, when the side branches are untrained.", "extra", None)
    return man


def write_folder(target: Path, fill) -> None:
    """Fill a fresh temporary folder beside ``target`` with ``fill(tmp)``, then swap it in whole
    (pipeline.core.atomic.atomic_dir: flushed to disk, the old folder renamed aside, never half of one)."""
    with atomic_dir(target) as tmp:
        fill(tmp)


def main() -> None:
    params = read_params()
    net, deadline_p, variants = parse_params(params)
    seed = P.train_seeds(params).first
    inputs = {v: read_variant(v, br, seed) for v, br in variants.items()}
    trajectory = read_trajectory()

    def fill(tmp: Path) -> None:
        man = build(inputs, net, deadline_p, tmp, trajectory)
        (tmp / registry.FIGURES_MANIFEST.name).write_text(
            json.dumps({"figures": [asdict(f) for f in man.figures], "skipped": man.skipped}, indent=2) + "\n",
            encoding="utf-8",
        )

    write_folder(OUT_DIR, fill)
