"""The extra figures: reliability diagrams, latency breakdown, training curves, trajectory.

Pure plotting, like :mod:`eeoffload.figures` (whose visual language, colours and helpers these
figures share): every function takes DataFrames (the schemas of docs/interfaces.md) and plain
values, and returns a :class:`matplotlib.figure.Figure`; nothing here reads or writes files
(``pipeline/plots.py`` does). Importing :mod:`eeoffload.figures` selects the Agg backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from eeoffload import latency
from eeoffload.figures import (
    CALIBRATION_LABELS,
    DPI,
    EXIT_COLORS,
    FIGSIZE,
    LOCATION_COLORS,
    REFERENCE_STYLE,
    VARIANT_LINESTYLES,
    NetworkInfo,
    by_calibration,
    calibration_color,
    finish,
    new_figure,
    pct_axis,
    theme,
    variant_label,
)


def reliability_diagrams(reliability: pd.DataFrame, exits: pd.DataFrame | None, variant: str,
                         branches: Sequence[str] | None = None) -> Figure:
    """Reliability diagram per exit (accuracy vs mean confidence per bin), before and after calibration."""
    exit_ids = sorted(int(e) for e in reliability["exit"].unique())
    n_exits = len(exit_ids)
    fig, axes = new_figure(max(1, n_exits), height=4.9, sharey=True, width=max(FIGSIZE[0], 4.2 * n_exits))
    for i, (ax, e) in enumerate(zip(axes, exit_ids, strict=True)):
        ax.plot([0, 1], [0, 1], label="identity (ideal)", **REFERENCE_STYLE)
        sub = reliability[reliability["exit"] == e]
        for cal, rows in by_calibration(sub):
            rows = rows.sort_values("bin")
            filled = rows[rows["count"] > 0].dropna(subset=["confidence", "accuracy"])
            label = CALIBRATION_LABELS.get(cal, cal)
            if exits is not None:
                m = exits[(exits["exit"] == e) & (exits["calibration"] == cal)]
                if len(m):  # T only for a calibrator that has one
                    t = float(m["temperature"].iloc[0])
                    label += f" ({f'T={t:.2f}, ' if np.isfinite(t) else ''}ECE={float(m['ece'].iloc[0]):.3f})"
            ax.plot(filled["confidence"], filled["accuracy"], color=calibration_color(cal), marker="o",
                    markersize=3.5, linewidth=1.4, label=label)
        kind = "final exit" if e == n_exits else f"side branch {e}"
        if branches and e <= len(branches):
            kind += f" ({branches[e - 1]})"
        ax.set_title(f"exit {e}: {kind}", fontsize=9.5)
        ax.set_xlabel("mean confidence in bin (probability)")
        if i == 0:
            ax.set_ylabel("accuracy in bin (fraction correct)")
        pct_axis(ax, x=True)
        ax.set_aspect("equal", adjustable="box")
        ax.legend(fontsize=7.5, loc="upper left")
    return finish(fig, f"Reliability diagrams (test split), {variant_label(variant, branches)}")


def latency_breakdown(layers: pd.DataFrame, profile: Mapping, variant: str, net: NetworkInfo,
                      branches: Sequence[str] | None = None, exit_ms: Mapping[str, float] | None = None) -> Figure:
    """Per-layer latency (edge/cloud) and the per-sample totals: edge, upload, RTT, cloud for an
    offloaded sample, and the device time to each side exit. The totals written on the bars are
    ``exit_ms`` (evaluate's reports/metrics/<variant>/latency.json: the latency the metrics used) when
    given; the components are :func:`eeoffload.latency.exit_breakdown_ms` of the profile."""
    theme()
    n_layers = len(layers)
    fig, (ax_l, ax_r) = plt.subplots(
        1, 2, figsize=(11.0, max(4.4, 0.19 * n_layers + 1.5)), dpi=DPI,
        gridspec_kw={"width_ratios": [1.5, 1.0]},
    )
    labels = [layer if part in ("trunk", layer) else f"{part}/{layer}"
              for layer, part in zip(layers["layer"], layers["part"], strict=True)]
    y = np.arange(n_layers)
    colors = [LOCATION_COLORS.get(loc, "0.5") for loc in layers["location"]]
    ax_l.barh(y, layers["ms"].to_numpy(dtype=float), color=colors)
    ax_l.set_yticks(y, labels, fontsize=7)
    ax_l.invert_yaxis()
    ax_l.set_xlabel("time per sample (ms)")
    ax_l.set_ylabel("layer (execution order)")
    ax_l.set_title("per layer", fontsize=9.5)
    from matplotlib.patches import Patch

    ax_l.legend(handles=[Patch(color=LOCATION_COLORS[k], label=k) for k in ("edge", "cloud")
                         if k in set(layers["location"])], title="runs on", fontsize=8)

    parts = latency.exit_breakdown_ms(profile, net.uplink_mbps, net.rtt_ms)  # exit order, offloaded last
    rows: list[tuple[str, dict[str, float]]] = [("offloaded\n(to cloud)", parts[-1])]
    rows += [(f"exit {k}\non device", part) for k, part in enumerate(parts[:-1], start=1)]
    x = np.arange(len(rows))
    bottom = np.zeros(len(rows))
    for comp in ("edge", "upload", "rtt", "cloud"):
        vals = np.array([r[1].get(comp, 0.0) for r in rows])
        if comp == "rtt" and not vals.any():
            continue
        ax_r.bar(x, vals, bottom=bottom, color=LOCATION_COLORS[comp], label=comp, width=0.6)
        bottom += vals
    if exit_ms:  # the latency evaluate used: the offloaded sample is the final exit
        keys = sorted(exit_ms, key=int)
        bottom = np.array([float(exit_ms[keys[-1]])] + [float(exit_ms[k]) for k in keys[:-1]])
    for xi, total in zip(x, bottom, strict=True):
        ax_r.annotate(f"{total:.2f}", (xi, total), ha="center", va="bottom", fontsize=7.5)
    ax_r.set_xticks(x, [r[0] for r in rows], fontsize=7.5)
    ax_r.set_ylabel("time per sample (ms)")
    ax_r.set_title(f"per sample (upload {int(profile['upload_bytes'])} B after "
                   f"{profile.get('partition_layer', '?')})", fontsize=9.5)
    ax_r.legend(title="component", fontsize=8)
    return finish(fig, f"Latency model, {variant_label(variant, branches)}, uplink {net.uplink_mbps:g} Mbps"
                   + (f", RTT {net.rtt_ms:g} ms" if net.rtt_ms else ""))


def training_curves(training: pd.DataFrame, variant: str, branches: Sequence[str] | None = None) -> Figure:
    """Training and validation loss, and validation accuracy per exit, vs epoch (trunk then joint phase)."""
    fig, (ax_loss, ax_acc) = new_figure(2, width=11.0, height=4.2)
    tr = training.sort_values("epoch")
    ax_loss.plot(tr["epoch"], tr["train_loss"], color="0.2", linewidth=1.4, label="train loss")
    ax_loss.plot(tr["epoch"], tr["val_loss"], color="0.2", linewidth=1.4, linestyle="--", label="validation loss")
    acc_cols = sorted((c for c in tr.columns if c.startswith("val_acc_exit")),
                      key=lambda c: int(c.removeprefix("val_acc_exit")))
    n = len(acc_cols)
    for j, c in enumerate(acc_cols):
        k = int(c.removeprefix("val_acc_exit"))
        name = "final exit" if k == n else f"side branch {k}"
        ax_acc.plot(tr["epoch"], tr[c], color=EXIT_COLORS[j % len(EXIT_COLORS)], linewidth=1.4,
                    label=f"exit {k} ({name})")
    # The trunk-only phase trains the final exit alone: shade it.
    trunk = tr[tr["phase"] == "trunk"]
    for ax in (ax_loss, ax_acc):
        if len(trunk):
            ax.axvspan(float(trunk["epoch"].min()) - 0.5, float(trunk["epoch"].max()) + 0.5,
                       color="0.85", alpha=0.5, linewidth=0, label="trunk-only phase")
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    ax_loss.set_ylabel("loss (weighted cross-entropy)")
    ax_acc.set_ylabel("validation accuracy (fraction correct)")
    ax_acc.set_ylim(0, 1)
    return finish(fig, f"Training curves, {variant_label(variant, branches)}")


#: Distinct colours of the (variant, exit) curves of the trajectory figure: no colour repeats across
#: variants (Okabe-Ito without the two calibration colours, then darker tones).
TRAJECTORY_COLORS: tuple[str, ...] = ("#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#999933",
                                      "#882255", "#44AA99", "#332288", "#AA4499")
TRAJECTORY_FONT = 9.5
TRAJECTORY_WIDTH = 9.5  # inches: about the page's width at DPI, so the fonts stay at their size


def trajectory(exits: pd.DataFrame, offload: pd.DataFrame, trunk_epochs: int = 0) -> Figure:
    """Miscalibration along training (the trajectory stage's tables, docs/interfaces.md): per exit
    the temperature fitted on val (> 1: over-confident) and the test ECE before/after scaling; per
    variant the mean p_device over the p_tar grid and the outage at p_tar 0.875, conventional vs
    calibrated. Panels stacked at page width, each legend beside its panel (never over a curve);
    colour: one per variant and exit (a, b; none repeats) or the calibration (c); line style in (c):
    variant."""
    theme()
    fig, axes = plt.subplots(3, 1, figsize=(TRAJECTORY_WIDTH, 10.5), dpi=DPI, sharex=True)
    variants = list(dict.fromkeys(exits["variant"]))
    styles = {v: VARIANT_LINESTYLES.get(i + 1, "-") for i, v in enumerate(variants)}
    pairs = [(v, int(k)) for v in variants for k in sorted(exits.loc[exits["variant"] == v, "exit"].unique())]
    colors = {pair: TRAJECTORY_COLORS[i % len(TRAJECTORY_COLORS)] for i, pair in enumerate(pairs)}
    for v in variants:
        sub = exits[exits["variant"] == v]
        if "trained" in sub.columns:  # untrained side branches (trunk-only epochs) are not drawn
            sub = sub[sub["trained"].astype(bool)]
        for k in sorted(sub["exit"].unique()):
            e = sub[sub["exit"] == k].sort_values("epoch")
            color = colors[(v, int(k))]
            axes[0].plot(e["epoch"], e["temperature"], color=color, marker="o", linewidth=1.6, label=f"{v} exit {k}")
            axes[1].plot(e["epoch"], e["ece_conventional"], color=color, marker="o", linewidth=1.6,
                         label=f"{v} exit {k}, before")
            axes[1].plot(e["epoch"], e["ece_calibrated"], color=color, marker="x", linestyle=":", linewidth=1.6,
                         label=f"{v} exit {k}, after")
        off = offload[offload["variant"] == v]
        for calibration, o in by_calibration(off):
            o = o.sort_values("epoch")
            color = calibration_color(calibration)
            axes[2].plot(o["epoch"], o["p_device_mean"], color=color, linestyle=styles[v], marker="o", linewidth=1.6,
                         label=f"{v} {CALIBRATION_LABELS.get(calibration, calibration)}: mean p_device")
            axes[2].plot(o["epoch"], o["outage@0.875"], color=color, linestyle=styles[v], marker="s", alpha=0.6,
                         linewidth=1.6, label=f"{v} {CALIBRATION_LABELS.get(calibration, calibration)}: outage at 0.875")
    axes[0].axhline(1.0, label="T = 1 (calibrated as is)", **REFERENCE_STYLE)
    axes[0].set_yscale("log")
    from matplotlib.ticker import FormatStrFormatter

    axes[0].yaxis.set_major_formatter(FormatStrFormatter("%g"))
    axes[0].yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    axes[0].set(ylabel="fitted temperature T\n(log scale)")
    no_t = exits["temperature"].isna().all()  # a calibrator without a temperature (isotonic ...)
    axes[0].set_title("(a) temperature per exit" + (": none, the calibrator has no T" if no_t else ""),
                      fontsize=TRAJECTORY_FONT + 0.5)
    axes[1].set(ylabel="ECE (test)")
    axes[1].set_title("(b) ECE before (solid, o) / after (dotted, x) calibration", fontsize=TRAJECTORY_FONT + 0.5)
    axes[2].set(xlabel="epoch", ylabel="probability")
    axes[2].set_title("(c) mean p_device (o), outage at 0.875 (s)", fontsize=TRAJECTORY_FONT + 0.5)
    axes[2].set_ylim(-0.02, 1.02)
    for ax in axes:
        if trunk_epochs:
            ax.axvspan(0, trunk_epochs, color="0.92", zorder=0, label=f"trunk-only epochs 1-{trunk_epochs}")
        ax.legend(fontsize=TRAJECTORY_FONT - 1, loc="center left", bbox_to_anchor=(1.01, 0.5),
                  borderaxespad=0.0)
        ax.tick_params(labelsize=TRAJECTORY_FONT)
        ax.xaxis.label.set_size(TRAJECTORY_FONT + 0.5)
        ax.yaxis.label.set_size(TRAJECTORY_FONT + 0.5)
    axes[2].tick_params(labelbottom=True)
    return finish(fig, "Miscalibration along training" + (f" (grey: trunk-only epochs 1-{trunk_epochs})"
                                                          if trunk_epochs else ""))
