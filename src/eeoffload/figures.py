"""The paper's Figures 2-7 and a few extra figures, as matplotlib Figures built from DataFrames.

Pure plotting: every function takes DataFrames (the schemas of docs/interfaces.md) and plain
values, and returns a :class:`matplotlib.figure.Figure`; nothing here reads or writes files
(``pipeline/plots.py`` does). The Agg backend is selected on import, so this works headless.

One visual language for every figure:

* conventional is always :data:`CALIBRATION_COLORS` ``["conventional"]`` (vermillion) and
  calibrated always ``["calibrated"]`` (blue), both from the colour-blind-safe Okabe-Ito palette;
* reference lines (identity, p_tar = accuracy) are grey and dotted;
* one-branch vs two-branch (Fig. 7) differ by line style (:data:`VARIANT_LINESTYLES`), never by
  colour;
* every axis names its quantity and unit, every figure has a legend and a title naming the variant
  and the parameters that shape it (uplink rate, batch size, ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

CONVENTIONAL = "conventional"
CALIBRATED = "calibrated"
CALIBRATIONS = (CONVENTIONAL, CALIBRATED)

#: The one colour of each calibration, in every figure (Okabe-Ito vermillion and blue).
CALIBRATION_COLORS: dict[str, str] = {CONVENTIONAL: "#D55E00", CALIBRATED: "#0072B2"}
#: Colours of the latency components (edge computing, upload, cloud computing).
LOCATION_COLORS: dict[str, str] = {"edge": "#009E73", "upload": "#E69F00", "cloud": "#CC79A7"}
#: Colours of exits 1, 2, ... (training curves); distinct from the two calibration colours.
EXIT_COLORS: tuple[str, ...] = ("#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
#: Line style of the k-branch variant in figures that overlay variants (Fig. 7).
VARIANT_LINESTYLES: dict[int, str] = {1: "-", 2: "--", 3: ":", 4: "-."}
REFERENCE_STYLE = {"color": "0.45", "linestyle": ":", "linewidth": 1.2}

P_TAR_LABEL = "target confidence $p_{tar}$ (probability)"
T_TAR_LABEL = "deadline $t_{tar}$ (ms, mean per sample)"

FIGSIZE = (6.4, 4.4)
DPI = 110


@dataclass(frozen=True)
class NetworkInfo:
    """Parameters shown in titles: the network the latency model assumed and the evaluation batch."""

    uplink_mbps: float
    rtt_ms: float = 0.0
    batch_size: int | None = None
    resamples: int | None = None


def inline_img(fig: Figure, alt: str = "figure") -> str:
    """An ``<img>`` tag holding ``fig`` as an inline PNG (a data: URI), for self-contained HTML
    fragments; closes the figure."""
    import base64
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode("ascii")}">'


def _theme() -> None:
    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.9)


def _new(ncols: int = 1, *, width: float | None = None, height: float | None = None, sharey: bool = False):
    _theme()
    w = width if width is not None else (FIGSIZE[0] if ncols == 1 else 4.4 * ncols)
    h = height if height is not None else FIGSIZE[1]
    fig, axes = plt.subplots(1, ncols, figsize=(w, h), dpi=DPI, sharey=sharey, squeeze=False)
    return fig, list(axes[0])


def _variant_label(variant: str, branches: Sequence[str] | None) -> str:
    if not branches:
        return variant
    n = len(branches)
    return f"{variant} ({n} branch{'es' if n != 1 else ''}: {', '.join(branches)})"


def _finish(fig: Figure, title: str) -> Figure:
    fig.suptitle(title, fontsize=10.5)
    fig.tight_layout()
    return fig


def _by_calibration(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(calibration, rows) in the fixed order conventional, calibrated; unknown values after."""
    present = list(dict.fromkeys(df["calibration"].tolist()))
    order = [c for c in CALIBRATIONS if c in present] + [c for c in present if c not in CALIBRATIONS]
    return [(c, df[df["calibration"] == c]) for c in order]


def _color(calibration: str) -> str:
    return CALIBRATION_COLORS.get(calibration, "0.3")


def _pct_axis(ax, *, x: bool = False, y: bool = True, lo: float = -0.02, hi: float = 1.02) -> None:
    if y:
        ax.set_ylim(lo, hi)
    if x:
        ax.set_xlim(lo, hi)


#: Line style of each calibration, so that overlapping curves stay visible in black and white too.
CALIBRATION_LINESTYLES: dict[str, str] = {CONVENTIONAL: "-", CALIBRATED: "--"}
BAND_ALPHA = 0.16


def _band(ax, x: pd.Series, rows: pd.DataFrame, column: str, color: str, label: str | None) -> None:
    """The population 95% interval of ``column`` (``<column>_lo``/``_hi``, written by evaluate) as a band."""
    lo, hi = f"{column}_lo", f"{column}_hi"
    if lo in rows.columns and hi in rows.columns:
        ax.fill_between(x, rows[lo], rows[hi], color=color, alpha=BAND_ALPHA, linewidth=0, label=label)


def _p_tar_axis(ax, offload: pd.DataFrame) -> None:
    """The same p_tar range in every figure over p_tar: the evaluated grid, whatever is defined on it."""
    grid = offload["p_tar"].to_numpy(dtype=float)
    if len(grid):
        ax.set_xlim(float(grid.min()) - 0.005, float(grid.max()) + 0.005)


def _offload_curve(ax, offload: pd.DataFrame, column: str) -> None:
    for cal, rows in _by_calibration(offload):
        rows = rows.sort_values("p_tar")
        _band(ax, rows["p_tar"], rows, column, _color(cal), f"{cal}, 95% interval")
        ax.plot(rows["p_tar"], rows[column], color=_color(cal), label=cal, linewidth=1.8,
                linestyle=CALIBRATION_LINESTYLES.get(cal, "-"), marker="o" if len(rows) < 12 else None)
    _p_tar_axis(ax, offload)


# --------------------------------------------------------------------------- paper figures


def fig2_p_device(offload: pd.DataFrame, variant: str, branches: Sequence[str] | None = None) -> Figure:
    """Fig. 2: probability of classifying on the device vs p_tar, conventional and calibrated."""
    fig, (ax,) = _new()
    _offload_curve(ax, offload, "p_device")
    ax.set_xlabel(P_TAR_LABEL)
    ax.set_ylabel("probability of classifying on device")
    _pct_axis(ax)
    ax.legend(title="side branch", loc="best", fontsize=8)
    return _finish(fig, f"Fig. 2: classified on device, {_variant_label(variant, branches)}")


def fig3a_acc_vs_conf(offload: pd.DataFrame, variant: str, branches: Sequence[str] | None = None) -> Figure:
    """Fig. 3(a): accuracy on device vs mean confidence on device (one point per p_tar), identity line."""
    fig, (ax,) = _new()
    lo = np.nanmin(offload[["conf_device", "acc_device"]].to_numpy(dtype=float), initial=1.0)
    lo = min(0.5, float(lo)) if np.isfinite(lo) else 0.5
    ax.plot([lo, 1.0], [lo, 1.0], label="identity (ideal calibration)", **REFERENCE_STYLE)
    for cal, rows in _by_calibration(offload):
        rows = rows.sort_values("p_tar").dropna(subset=["conf_device", "acc_device"])
        ax.plot(rows["conf_device"], rows["acc_device"], color=_color(cal), marker="o",
                markersize=2.5, linewidth=1.0, label=cal)
    ax.set_xlabel("mean confidence on device (probability)")
    ax.set_ylabel("accuracy on device (fraction correct)")
    ax.set_xlim(lo - 0.01, 1.01)
    ax.set_ylim(lo - 0.01, 1.01)
    ax.set_aspect("equal", adjustable="box")
    ax.legend(title="side branch", loc="upper left")
    return _finish(fig, f"Fig. 3(a): accuracy vs confidence on device, {_variant_label(variant, branches)}")


def fig3b_acc_device(offload: pd.DataFrame, variant: str, branches: Sequence[str] | None = None) -> Figure:
    """Fig. 3(b): accuracy on device vs p_tar, with the identity line accuracy = p_tar."""
    fig, (ax,) = _new()
    grid = np.sort(offload["p_tar"].unique())
    ax.plot(grid, grid, label="accuracy = $p_{tar}$", **REFERENCE_STYLE)
    _offload_curve(ax, offload, "acc_device")
    ax.set_xlabel(P_TAR_LABEL)
    ax.set_ylabel("accuracy on device (fraction correct)")
    _pct_axis(ax)
    ax.legend(title="side branch", loc="best", fontsize=8)
    return _finish(fig, f"Fig. 3(b): accuracy on device, {_variant_label(variant, branches)}")


def fig3c_acc_total(offload: pd.DataFrame, variant: str, branches: Sequence[str] | None = None) -> Figure:
    """Fig. 3(c): accuracy over all test samples (device and cloud) vs p_tar."""
    fig, (ax,) = _new()
    _offload_curve(ax, offload, "acc_total")
    ax.set_xlabel(P_TAR_LABEL)
    ax.set_ylabel("total accuracy, device + cloud (fraction correct)")
    _pct_axis(ax)
    ax.legend(title="side branch", loc="best", fontsize=8)
    return _finish(fig, f"Fig. 3(c): total accuracy, {_variant_label(variant, branches)}")


def fig4_outage(offload: pd.DataFrame, variant: str, branches: Sequence[str] | None = None,
                net: NetworkInfo | None = None) -> Figure:
    """Fig. 4: inference outage vs p_tar; the fixed batching as a line, the resampled estimate as a band."""
    fig, (ax,) = _new()
    for cal, rows in _by_calibration(offload):
        rows = rows.sort_values("p_tar")
        c = _color(cal)
        _band(ax, rows["p_tar"], rows, "outage", c, f"{cal}, 95% interval (Clopper-Pearson, batches)")
        ax.plot(rows["p_tar"], rows["outage_resampled"], color=c, linewidth=1.0, linestyle=":",
                label=f"{cal}, mean over re-batchings")
        ax.plot(rows["p_tar"], rows["outage"], color=c, linewidth=1.8, label=f"{cal}, fixed batches",
                linestyle=CALIBRATION_LINESTYLES.get(cal, "-"), marker="o" if len(rows) < 12 else None)
    _p_tar_axis(ax, offload)
    ax.set_xlabel(P_TAR_LABEL)
    ax.set_ylabel("inference outage probability")
    _pct_axis(ax)
    ax.legend(fontsize=7.5, loc="best")
    extra = ""
    if net is not None and net.batch_size:
        extra = f", batches of {net.batch_size}"
        if net.resamples:
            extra += f", {net.resamples} re-batchings"
    return _finish(fig, f"Fig. 4: inference outage, {_variant_label(variant, branches)}{extra}")


def _deadline_panels(deadline: pd.DataFrame, p_tars: Sequence[float], fig_name: str, variant: str,
                     branches: Sequence[str] | None, net: NetworkInfo | None) -> Figure:
    fig, axes = _new(len(p_tars), height=4.0, sharey=True)
    for i, (ax, p) in enumerate(zip(axes, p_tars, strict=True)):
        sub = deadline[np.isclose(deadline["p_tar"].to_numpy(dtype=float), p)]
        for cal, rows in _by_calibration(sub):
            rows = rows.sort_values("t_tar_ms")
            if "missed_lo" in rows.columns:
                ax.fill_between(rows["t_tar_ms"], rows["missed_lo"], rows["missed_hi"], color=_color(cal),
                                alpha=BAND_ALPHA, linewidth=0, step="post")
            ax.plot(rows["t_tar_ms"], rows["missed_deadline"], color=_color(cal), linewidth=1.8,
                    label=cal, drawstyle="steps-post", linestyle=CALIBRATION_LINESTYLES.get(cal, "-"))
        ax.set_title(f"({chr(ord('a') + i)}) $p_{{tar}}$ = {p:g}", fontsize=9.5)
        ax.set_xlabel(T_TAR_LABEL)
        if i == 0:
            ax.set_ylabel("missed-deadline probability")
        _pct_axis(ax)
        ax.legend(title="side branch", fontsize=8)
    net_txt = ""
    if net is not None:
        net_txt = f", uplink {net.uplink_mbps:g} Mbps"
        if net.rtt_ms:
            net_txt += f", RTT {net.rtt_ms:g} ms"
        if net.batch_size:
            net_txt += f", batches of {net.batch_size}"
    return _finish(fig, f"{fig_name}: missed deadline, {_variant_label(variant, branches)}{net_txt}")


def fig5_missed_deadline(deadline: pd.DataFrame, p_tars: Sequence[float], variant: str,
                         branches: Sequence[str] | None = None, net: NetworkInfo | None = None) -> Figure:
    """Fig. 5: missed-deadline probability vs t_tar, one panel per p_tar (one-branch network)."""
    return _deadline_panels(deadline, p_tars, "Fig. 5", variant, branches, net)


def fig6_missed_deadline(deadline: pd.DataFrame, p_tars: Sequence[float], variant: str,
                         branches: Sequence[str] | None = None, net: NetworkInfo | None = None) -> Figure:
    """Fig. 6: the same as Fig. 5 for the two-branch network (the paper shows p_tar 0.825, 0.85)."""
    return _deadline_panels(deadline, p_tars, "Fig. 6", variant, branches, net)


def fig7_outage_branches(offloads: Mapping[str, pd.DataFrame], n_branches: Mapping[str, int],
                         net: NetworkInfo | None = None) -> Figure:
    """Fig. 7: outage vs p_tar for each given variant (line style) x calibration (colour)."""
    fig, (ax,) = _new()
    for variant, offload in offloads.items():
        k = n_branches.get(variant, 1)
        ls = VARIANT_LINESTYLES.get(k, "-")
        for cal, rows in _by_calibration(offload):
            rows = rows.sort_values("p_tar")
            ax.plot(rows["p_tar"], rows["outage"], color=_color(cal), linestyle=ls, linewidth=1.8,
                    label=f"{cal}, {variant} ({k} branch{'es' if k != 1 else ''})",
                    marker="o" if len(rows) < 12 else None)
        _p_tar_axis(ax, offload)
    ax.set_xlabel(P_TAR_LABEL)
    ax.set_ylabel("inference outage probability")
    _pct_axis(ax)
    ax.legend(fontsize=8, loc="best")
    extra = f", batches of {net.batch_size}" if net is not None and net.batch_size else ""
    return _finish(fig, f"Fig. 7: inference outage, {' vs '.join(offloads)}{extra}")


# --------------------------------------------------------------------------- extras


def reliability_diagrams(reliability: pd.DataFrame, exits: pd.DataFrame | None, variant: str,
                         branches: Sequence[str] | None = None) -> Figure:
    """Reliability diagram per exit (accuracy vs mean confidence per bin), before and after calibration."""
    exit_ids = sorted(int(e) for e in reliability["exit"].unique())
    n_exits = len(exit_ids)
    fig, axes = _new(max(1, n_exits), height=4.9, sharey=True, width=max(FIGSIZE[0], 4.2 * n_exits))
    for i, (ax, e) in enumerate(zip(axes, exit_ids, strict=True)):
        ax.plot([0, 1], [0, 1], label="identity (ideal)", **REFERENCE_STYLE)
        sub = reliability[reliability["exit"] == e]
        for cal, rows in _by_calibration(sub):
            rows = rows.sort_values("bin")
            filled = rows[rows["count"] > 0].dropna(subset=["confidence", "accuracy"])
            label = cal
            if exits is not None:
                m = exits[(exits["exit"] == e) & (exits["calibration"] == cal)]
                if len(m):
                    label = f"{cal} (T={float(m['temperature'].iloc[0]):.2f}, ECE={float(m['ece'].iloc[0]):.3f})"
            ax.plot(filled["confidence"], filled["accuracy"], color=_color(cal), marker="o",
                    markersize=3.5, linewidth=1.4, label=label)
        kind = "final exit" if e == n_exits else f"side branch {e}"
        if branches and e <= len(branches):
            kind += f" ({branches[e - 1]})"
        ax.set_title(f"exit {e}: {kind}", fontsize=9.5)
        ax.set_xlabel("mean confidence in bin (probability)")
        if i == 0:
            ax.set_ylabel("accuracy in bin (fraction correct)")
        _pct_axis(ax, x=True)
        ax.set_aspect("equal", adjustable="box")
        ax.legend(fontsize=7.5, loc="upper left")
    return _finish(fig, f"Reliability diagrams (test split), {_variant_label(variant, branches)}")


def upload_ms(upload_bytes: float, uplink_mbps: float, rtt_ms: float = 0.0) -> float:
    """Time to send ``upload_bytes`` at ``uplink_mbps`` (10^6 bit/s), plus the round-trip time, in ms."""
    return float(upload_bytes) * 8.0 / (float(uplink_mbps) * 1e6) * 1e3 + float(rtt_ms)


def latency_breakdown(layers: pd.DataFrame, profile: Mapping, variant: str, net: NetworkInfo,
                      branches: Sequence[str] | None = None) -> Figure:
    """Per-layer latency (edge/cloud) and the per-sample totals: edge, upload, cloud for an offloaded
    sample, and the device time to each side exit."""
    _theme()
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

    up = upload_ms(profile["upload_bytes"], net.uplink_mbps, net.rtt_ms)
    edge = float(profile["offload_edge_ms"])
    cloud = float(profile["cloud_ms"])
    rows: list[tuple[str, dict[str, float]]] = [
        ("offloaded\n(to cloud)", {"edge": edge, "upload": up, "cloud": cloud}),
    ]
    dev = profile.get("device_ms_to_exit", {}) or {}
    for k in sorted(dev, key=int):
        rows.append((f"exit {k}\non device", {"edge": float(dev[k])}))
    x = np.arange(len(rows))
    bottom = np.zeros(len(rows))
    for comp in ("edge", "upload", "cloud"):
        vals = np.array([r[1].get(comp, 0.0) for r in rows])
        ax_r.bar(x, vals, bottom=bottom, color=LOCATION_COLORS[comp], label=comp, width=0.6)
        bottom += vals
    for xi, total in zip(x, bottom, strict=True):
        ax_r.annotate(f"{total:.2f}", (xi, total), ha="center", va="bottom", fontsize=7.5)
    ax_r.set_xticks(x, [r[0] for r in rows], fontsize=7.5)
    ax_r.set_ylabel("time per sample (ms)")
    ax_r.set_title(f"per sample (upload {int(profile['upload_bytes'])} B after "
                   f"{profile.get('partition_layer', '?')})", fontsize=9.5)
    ax_r.legend(title="component", fontsize=8)
    return _finish(fig, f"Latency model, {_variant_label(variant, branches)}, uplink {net.uplink_mbps:g} Mbps"
                   + (f", RTT {net.rtt_ms:g} ms" if net.rtt_ms else ""))


def training_curves(training: pd.DataFrame, variant: str, branches: Sequence[str] | None = None) -> Figure:
    """Training and validation loss, and validation accuracy per exit, vs epoch (trunk then joint phase)."""
    fig, (ax_loss, ax_acc) = _new(2, width=11.0, height=4.2)
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
    return _finish(fig, f"Training curves, {_variant_label(variant, branches)}")


def trajectory(exits: pd.DataFrame, offload: pd.DataFrame, trunk_epochs: int = 0) -> Figure:
    """Miscalibration along training (the trajectory stage's tables, docs/interfaces.md): per exit
    the temperature fitted on val (> 1: over-confident) and the test ECE before/after scaling; per
    variant the mean p_device over the p_tar grid and the outage at p_tar 0.875, conventional vs
    calibrated. Colour: exit (left, middle) or calibration (right); line style: variant."""
    fig, axes = _new(3, width=15.5, height=4.4)
    variants = list(dict.fromkeys(exits["variant"]))
    styles = {v: VARIANT_LINESTYLES.get(i + 1, "-") for i, v in enumerate(variants)}
    for v in variants:
        sub = exits[exits["variant"] == v]
        if "trained" in sub.columns:  # untrained side branches (trunk-only epochs) are not drawn
            sub = sub[sub["trained"].astype(bool)]
        for k in sorted(sub["exit"].unique()):
            e = sub[sub["exit"] == k].sort_values("epoch")
            color = EXIT_COLORS[(int(k) - 1) % len(EXIT_COLORS)]
            axes[0].plot(e["epoch"], e["temperature"], color=color, linestyle=styles[v], marker="o",
                         label=f"{v} exit {k}")
            axes[1].plot(e["epoch"], e["ece_conventional"], color=color, linestyle=styles[v], marker="o",
                         label=f"{v} exit {k} before")
            axes[1].plot(e["epoch"], e["ece_calibrated"], color=color, linestyle=styles[v], marker="x", alpha=0.6,
                         label=f"{v} exit {k} after")
        off = offload[offload["variant"] == v]
        for calibration, o in _by_calibration(off):
            o = o.sort_values("epoch")
            axes[2].plot(o["epoch"], o["p_device_mean"], color=_color(calibration), linestyle=styles[v], marker="o",
                         label=f"{v} {calibration}: mean p_device")
            axes[2].plot(o["epoch"], o["outage@0.875"], color=_color(calibration), linestyle=styles[v], marker="s",
                         alpha=0.55, label=f"{v} {calibration}: outage at 0.875")
    axes[0].axhline(1.0, **REFERENCE_STYLE)
    axes[0].set_yscale("log")
    axes[0].set(xlabel="epoch", ylabel="fitted temperature T (log scale)", title="(a) temperature per exit")
    axes[1].set(xlabel="epoch", ylabel="ECE (test)", title="(b) ECE before (o) / after (x) scaling")
    axes[2].set(xlabel="epoch", ylabel="probability", title="(c) mean p_device (o), outage at 0.875 (s)")
    axes[2].set_ylim(-0.02, 1.02)
    for ax in axes:
        if trunk_epochs:
            ax.axvspan(0, trunk_epochs, color="0.92", zorder=0)
        ax.legend(fontsize=6.5, loc="best")
    return _finish(fig, "Miscalibration along training" + (f" (shaded: trunk-only epochs 1-{trunk_epochs})"
                                                          if trunk_epochs else ""))
