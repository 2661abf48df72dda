"""The paper's Figures 2-7, and the visual language shared with the extra figures.

Pure plotting: every function takes DataFrames (the schemas of docs/interfaces.md) and plain
values, and returns a :class:`matplotlib.figure.Figure`; nothing here reads or writes files
(``pipeline/plots.py`` does). The Agg backend is selected on import, so this works headless.
The extra figures are in :mod:`eeoffload.figures_extra`, built from the public helpers here.

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
#: Legend name of each calibration; the plots stage names the calibrator: "calibrated (isotonic)".
CALIBRATION_LABELS: dict[str, str] = {CONVENTIONAL: CONVENTIONAL, CALIBRATED: CALIBRATED}
#: Colours of the latency components (edge computing, upload, cloud computing).
LOCATION_COLORS: dict[str, str] = {"edge": "#009E73", "upload": "#E69F00", "rtt": "#999999", "cloud": "#CC79A7"}
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


def theme() -> None:
    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.9)


def new_figure(ncols: int = 1, *, width: float | None = None, height: float | None = None, sharey: bool = False):
    theme()
    w = width if width is not None else (FIGSIZE[0] if ncols == 1 else 4.4 * ncols)
    h = height if height is not None else FIGSIZE[1]
    fig, axes = plt.subplots(1, ncols, figsize=(w, h), dpi=DPI, sharey=sharey, squeeze=False)
    return fig, list(axes[0])


def variant_label(variant: str, branches: Sequence[str] | None) -> str:
    if not branches:
        return variant
    n = len(branches)
    return f"{variant} ({n} branch{'es' if n != 1 else ''}: {', '.join(branches)})"


def finish(fig: Figure, title: str) -> Figure:
    fig.suptitle(title, fontsize=10.5)
    fig.tight_layout()
    return fig


def by_calibration(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(calibration, rows) in the fixed order conventional, calibrated; unknown values after."""
    present = list(dict.fromkeys(df["calibration"].tolist()))
    order = [c for c in CALIBRATIONS if c in present] + [c for c in present if c not in CALIBRATIONS]
    return [(c, df[df["calibration"] == c]) for c in order]


def calibration_color(calibration: str) -> str:
    return CALIBRATION_COLORS.get(calibration, "0.3")


def pct_axis(ax, *, x: bool = False, y: bool = True, lo: float = -0.02, hi: float = 1.02) -> None:
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


def _blend(*colors: str, alpha: float = BAND_ALPHA) -> tuple[float, float, float]:
    """The colour that bands of ``colors`` (each at ``alpha``) drawn over each other on white show."""
    from matplotlib.colors import to_rgb

    out = np.ones(3)
    for c in colors:
        out = out * (1 - alpha) + np.array(to_rgb(c)) * alpha
    return tuple(float(x) for x in out)  # type: ignore[return-value]


#: Legend label of the area where the two calibrations' 95% bands overlap (a greyish blend).
OVERLAP_LABEL = "both 95% intervals overlap"


def legend_entries(ax) -> tuple[list, list[str]]:
    """The labelled artists of ``ax``, plus an entry for the greyish area where the two calibrations'
    shaded 95% bands overlap, whenever both are drawn: every band and hatch is in the legend."""
    from matplotlib.patches import Patch

    handles, labels = ax.get_legend_handles_labels()
    banded = [c for c in CALIBRATIONS if any(lab.startswith(f"{c}, 95% interval") for lab in labels)]
    if len(banded) == 2 and OVERLAP_LABEL not in labels:
        handles.append(Patch(facecolor=_blend(*(CALIBRATION_COLORS[c] for c in banded)), edgecolor="none"))
        labels.append(OVERLAP_LABEL)
    return handles, labels


def legend(ax, **kwargs):
    """``ax.legend`` over :func:`legend_entries`."""
    return ax.legend(*legend_entries(ax), **kwargs)


def _seed_band(ax, x: pd.Series, rows: pd.DataFrame, column: str, color: str, cal: str) -> None:
    """The spread of ``column`` over training seeds (written by evaluate's seed aggregate), hatched so
    it stays apart from the population band: the t-interval of the mean where defined (>= 3 seeds),
    else the seeds' min-max; nothing for one seed. Every banded column is a probability, so the
    t-interval (which can pass 0 or 1 with 3 seeds) is drawn clipped to [0, 1]."""
    n = rows["n_seeds"].max() if "n_seeds" in rows.columns else 1
    if not n or n < 2:
        return
    for lo, hi, what in ((f"{column}_seed_lo", f"{column}_seed_hi", "t-interval 95%"),
                         (f"{column}_seed_min", f"{column}_seed_max", "min-max")):
        if lo in rows.columns and hi in rows.columns and rows[lo].notna().any():
            ax.fill_between(x, rows[lo].clip(0.0, 1.0), rows[hi].clip(0.0, 1.0), facecolor="none", edgecolor=color,
                            hatch="////",
                            linewidth=0.0, alpha=0.55, label=f"{cal}, {int(n)} seeds: {what}")
            return


def _p_tar_axis(ax, offload: pd.DataFrame) -> None:
    """The same p_tar range in every figure over p_tar: the evaluated grid, whatever is defined on it."""
    grid = offload["p_tar"].to_numpy(dtype=float)
    if len(grid):
        ax.set_xlim(float(grid.min()) - 0.005, float(grid.max()) + 0.005)


def _offload_curve(ax, offload: pd.DataFrame, column: str) -> None:
    for cal, rows in by_calibration(offload):
        rows = rows.sort_values("p_tar")
        _band(ax, rows["p_tar"], rows, column, calibration_color(cal), f"{cal}, 95% interval")
        _seed_band(ax, rows["p_tar"], rows, column, calibration_color(cal), cal)
        ax.plot(rows["p_tar"], rows[column], color=calibration_color(cal), label=CALIBRATION_LABELS.get(cal, cal), linewidth=1.8,
                linestyle=CALIBRATION_LINESTYLES.get(cal, "-"), marker="o" if len(rows) < 12 else None)
    _p_tar_axis(ax, offload)


# --------------------------------------------------------------------------- paper figures


def fig2_p_device(offload: pd.DataFrame, variant: str, branches: Sequence[str] | None = None) -> Figure:
    """Fig. 2: probability of classifying on the device vs p_tar, conventional and calibrated."""
    fig, (ax,) = new_figure()
    _offload_curve(ax, offload, "p_device")
    ax.set_xlabel(P_TAR_LABEL)
    ax.set_ylabel("probability of classifying on device")
    pct_axis(ax)
    legend(ax, title="side branch", loc="best", fontsize=8)
    return finish(fig, f"Fig. 2: classified on device, {variant_label(variant, branches)}")


def fig3a_acc_vs_conf(offload: pd.DataFrame, variant: str, branches: Sequence[str] | None = None) -> Figure:
    """Fig. 3(a): accuracy on device vs mean confidence on device (one point per p_tar), identity line."""
    fig, (ax,) = new_figure()
    lo = np.nanmin(offload[["conf_device", "acc_device"]].to_numpy(dtype=float), initial=1.0)
    lo = min(0.5, float(lo)) if np.isfinite(lo) else 0.5
    ax.plot([lo, 1.0], [lo, 1.0], label="identity (ideal calibration)", **REFERENCE_STYLE)
    for cal, rows in by_calibration(offload):
        rows = rows.sort_values("p_tar").dropna(subset=["conf_device", "acc_device"])
        ax.plot(rows["conf_device"], rows["acc_device"], color=calibration_color(cal), marker="o",
                markersize=2.5, linewidth=1.0, label=CALIBRATION_LABELS.get(cal, cal))
    ax.set_xlabel("mean confidence on device (probability)")
    ax.set_ylabel("accuracy on device (fraction correct)")
    ax.set_xlim(lo - 0.01, 1.01)
    ax.set_ylim(lo - 0.01, 1.01)
    ax.set_aspect("equal", adjustable="box")
    ax.legend(title="side branch", loc="upper left")
    return finish(fig, f"Fig. 3(a): accuracy vs confidence on device, {variant_label(variant, branches)}")


def fig3b_acc_device(offload: pd.DataFrame, variant: str, branches: Sequence[str] | None = None) -> Figure:
    """Fig. 3(b): accuracy on device vs p_tar, with the identity line accuracy = p_tar."""
    fig, (ax,) = new_figure()
    grid = np.sort(offload["p_tar"].unique())
    ax.plot(grid, grid, label="accuracy = $p_{tar}$", **REFERENCE_STYLE)
    _offload_curve(ax, offload, "acc_device")
    ax.set_xlabel(P_TAR_LABEL)
    ax.set_ylabel("accuracy on device (fraction correct)")
    pct_axis(ax)
    legend(ax, title="side branch", loc="best", fontsize=8)
    return finish(fig, f"Fig. 3(b): accuracy on device, {variant_label(variant, branches)}")


def fig3c_acc_total(offload: pd.DataFrame, variant: str, branches: Sequence[str] | None = None) -> Figure:
    """Fig. 3(c): accuracy over all test samples (device and cloud) vs p_tar."""
    fig, (ax,) = new_figure()
    _offload_curve(ax, offload, "acc_total")
    ax.set_xlabel(P_TAR_LABEL)
    ax.set_ylabel("total accuracy, device + cloud (fraction correct)")
    pct_axis(ax)
    legend(ax, title="side branch", loc="best", fontsize=8)
    return finish(fig, f"Fig. 3(c): total accuracy, {variant_label(variant, branches)}")


def fig4_outage(offload: pd.DataFrame, variant: str, branches: Sequence[str] | None = None,
                net: NetworkInfo | None = None) -> Figure:
    """Fig. 4: inference outage vs p_tar; the fixed batching as a line, the resampled estimate as a band."""
    fig, (ax,) = new_figure()
    for cal, rows in by_calibration(offload):
        rows = rows.sort_values("p_tar")
        c = calibration_color(cal)
        _band(ax, rows["p_tar"], rows, "outage", c, f"{cal}, 95% interval (Clopper-Pearson, batches)")
        _seed_band(ax, rows["p_tar"], rows, "outage", c, cal)
        ax.plot(rows["p_tar"], rows["outage_resampled"], color=c, linewidth=1.0, linestyle=":",
                label=f"{cal}, mean over re-batchings (thin dotted)")
        ax.plot(rows["p_tar"], rows["outage"], color=c, linewidth=1.8, label=f"{CALIBRATION_LABELS.get(cal, cal)}, fixed batches",
                linestyle=CALIBRATION_LINESTYLES.get(cal, "-"), marker="o" if len(rows) < 12 else None)
    _p_tar_axis(ax, offload)
    ax.set_xlabel(P_TAR_LABEL)
    ax.set_ylabel("inference outage probability")
    pct_axis(ax)
    legend(ax, fontsize=7.5, loc="best")
    extra = ""
    if net is not None and net.batch_size:
        extra = f", batches of {net.batch_size}"
        if net.resamples:
            extra += f", {net.resamples} re-batchings"
    return finish(fig, f"Fig. 4: inference outage, {variant_label(variant, branches)}{extra}")


def _deadline_panels(deadline: pd.DataFrame, p_tars: Sequence[float], fig_name: str, variant: str,
                     branches: Sequence[str] | None, net: NetworkInfo | None) -> Figure:
    fig, axes = new_figure(len(p_tars), height=4.0, sharey=True)
    for i, (ax, p) in enumerate(zip(axes, p_tars, strict=True)):
        sub = deadline[np.isclose(deadline["p_tar"].to_numpy(dtype=float), p)]
        for cal, rows in by_calibration(sub):
            rows = rows.sort_values("t_tar_ms")
            if "missed_lo" in rows.columns:
                ax.fill_between(rows["t_tar_ms"], rows["missed_lo"], rows["missed_hi"], color=calibration_color(cal),
                                alpha=BAND_ALPHA, linewidth=0, step="post",
                                label=f"{cal}, 95% interval (Clopper-Pearson, batches)")
            _seed_band(ax, rows["t_tar_ms"], rows, "missed_deadline", calibration_color(cal), cal)
            ax.plot(rows["t_tar_ms"], rows["missed_deadline"], color=calibration_color(cal), linewidth=1.8,
                    label=CALIBRATION_LABELS.get(cal, cal), drawstyle="steps-post", linestyle=CALIBRATION_LINESTYLES.get(cal, "-"))
        ax.set_title(f"({chr(ord('a') + i)}) $p_{{tar}}$ = {p:g}", fontsize=9.5)
        ax.set_xlabel(T_TAR_LABEL)
        if i == 0:
            ax.set_ylabel("missed-deadline probability")
        pct_axis(ax)
    # one legend for all panels, below them (the same entries in every panel)
    handles, labels = legend_entries(axes[0])
    fig.legend(handles, labels, title="side branch", loc="lower center", ncol=min(3, len(handles)), fontsize=8,
               frameon=False)
    net_txt = ""
    if net is not None:
        net_txt = f", uplink {net.uplink_mbps:g} Mbps"
        if net.rtt_ms:
            net_txt += f", RTT {net.rtt_ms:g} ms"
        if net.batch_size:
            net_txt += f", batches of {net.batch_size}"
    fig.suptitle(f"{fig_name}: missed deadline, {variant_label(variant, branches)}{net_txt}", fontsize=10.5)
    n_rows = -(-len(handles) // 3)
    fig.tight_layout(rect=(0, min(0.4, 0.06 + 0.055 * n_rows), 1, 1))
    return fig


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
    fig, (ax,) = new_figure()
    for variant, offload in offloads.items():
        k = n_branches.get(variant, 1)
        ls = VARIANT_LINESTYLES.get(k, "-")
        for cal, rows in by_calibration(offload):
            rows = rows.sort_values("p_tar")
            ax.plot(rows["p_tar"], rows["outage"], color=calibration_color(cal), linestyle=ls, linewidth=1.8,
                    label=f"{CALIBRATION_LABELS.get(cal, cal)}, {variant} ({k} branch{'es' if k != 1 else ''})",
                    marker="o" if len(rows) < 12 else None)
        _p_tar_axis(ax, offload)
    ax.set_xlabel(P_TAR_LABEL)
    ax.set_ylabel("inference outage probability")
    pct_axis(ax)
    ax.legend(fontsize=8, loc="best")
    extra = f", batches of {net.batch_size}" if net is not None and net.batch_size else ""
    return finish(fig, f"Fig. 7: inference outage, {' vs '.join(offloads)}{extra}")
