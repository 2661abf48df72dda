"""HTML fragment of stage shift_eval's outputs, for the report to include (tables + inline PNGs).

    from pipeline.shift_report import shift_html
    fragment = shift_html(Path("reports/shift/one_branch/seed0"))  # str, self-contained

Reads only the files of one ``reports/shift/<variant>/seed<k>/`` folder (docs/shift.md): outage and
the certified rules' violation rate vs severity per corruption, the monitor's martingale over a
stream whose second half is shifted, and the tables behind them. matplotlib is imported here, never
in the shift stages.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.io import read_json_checked, read_parquet_checked

RULE_STYLE = {"conventional": ("tab:red", "-"), "calibrated": ("tab:blue", "-"), "recalibrated": ("tab:green", "--"),
              "estimated": ("tab:purple", ":"), "certified": ("tab:orange", "-"),
              "certified_recalibrated": ("tab:brown", "--")}


def _figure(n_rows: int, n_cols: int, width: float = 3.2, height: float = 2.8) -> tuple[Any, np.ndarray]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(n_rows, n_cols, figsize=(width * n_cols, height * n_rows), squeeze=False)
    return fig, axes


def _png(fig: Any) -> str:
    from eeoffload.figures import inline_img

    return inline_img(fig, alt="")


def _with_clean(table: pd.DataFrame, corruption: str) -> pd.DataFrame:
    """The corruption's rows with the clean images' rows as severity 0."""
    part = table[(table["corruption"] == corruption) | (table["corruption"] == "none")]
    return part.sort_values("severity")


def severity_figure(rules: pd.DataFrame, certified: pd.DataFrame, p_tar: float, delta: float) -> str:
    """Row 1: outage at p_tar (mean over re-batchings) vs severity per corruption, one line per rule; row 2: the certified
    rules' violation rate of the target (with delta, the rate LTT promises on exchangeable data)."""
    corruptions = [c for c in dict.fromkeys(rules["corruption"]) if c != "none"]
    fig, axes = _figure(2, len(corruptions))
    for j, c in enumerate(corruptions):
        for rule, part in _with_clean(rules, c).groupby("rule", sort=False):
            color, ls = RULE_STYLE.get(rule, ("0.3", "-"))
            outage = part["outage_resampled"] if "outage_resampled" in part else part["outage"]
            axes[0, j].plot(part["severity"], outage, marker="o", ms=3, color=color, ls=ls, label=rule)
        for rule, part in _with_clean(certified, c).groupby("rule", sort=False):
            color, ls = RULE_STYLE.get(rule, ("0.3", "-"))
            axes[1, j].plot(part["severity"], part["violation_rate"], marker="o", ms=3, color=color, ls=ls, label=rule)
            axes[1, j].fill_between(part["severity"], part["violation_low"], part["violation_high"], color=color, alpha=0.15)
        axes[1, j].axhline(delta, color="0.5", lw=1, ls="--")
        ticks = sorted(set(rules["severity"]))
        for ax in axes[:, j]:  # the same axis even where a rule keeps nothing on the device (outage undefined)
            ax.set_xticks(ticks)
            ax.set_xlim(ticks[0] - 0.3, ticks[-1] + 0.3)
        axes[0, j].set(title=c, ylim=(-0.03, 1.03), xlabel="severity (0 = clean)", ylabel=f"outage at p_tar {p_tar:g}")
        axes[1, j].set(ylim=(-0.03, 1.03), xlabel="severity (0 = clean)", ylabel="violation rate of the target")
    axes[0, -1].legend(fontsize=6)
    axes[1, -1].legend(fontsize=6)
    fig.tight_layout()
    return _png(fig)


def martingale_figure(trace: pd.DataFrame, alpha: float) -> str:
    """log10 of the conformal test martingale along one stream per setting (the most severe level of
    each corruption, and a clean stream); the shift starts at the dotted line; alarm at 1/alpha."""
    fig, axes = _figure(1, 1, 6.5, 3.4)
    ax = axes[0, 0]
    top = trace.groupby("corruption")["severity"].transform("max")
    for (c, s), part in trace[trace["severity"] == top].groupby(["corruption", "severity"], sort=False):
        ax.plot(part["position"], np.log10(np.maximum(part["martingale"], 1e-12)), lw=1.2, label=f"{c} {s}")
        start = part.loc[part["shifted"], "position"]
        if len(start) and c != "none":
            ax.axvline(start.min(), color="0.6", lw=0.8, ls=":")
    ax.axhline(np.log10(1 / alpha), color="black", lw=1, ls="--", label=f"alarm: 1/alpha = {1 / alpha:g}")
    ax.set(xlabel="position in the stream (clean, then shifted from the dotted line)", ylabel="log10 martingale",
           ylim=(-3, max(4.0, np.log10(1 / alpha) + 1)))
    ax.legend(fontsize=6, ncol=2)
    return _png(fig)


def _cell(x: Any, fmt: str = ".3f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, fmt)


def headline_table(rows: list[dict[str, Any]]) -> str:
    """The summary's table: per setting, accuracy, first exit's ECE, outage per rule, violations."""
    cols = [("acc_exit1", "acc. exit 1"), ("acc_final", "acc. final"), ("ece_exit1_conventional", "ECE exit 1 conv."),
            ("ece_exit1_calibrated", "ECE exit 1 cal. (clean T)"), ("ece_exit1_recalibrated", "ECE exit 1 recal."),
            ("outage_conventional", "outage conv."), ("outage_calibrated", "outage cal."),
            ("outage_recalibrated", "outage recal."), ("outage_estimated", "outage est. severity"),
            ("violation_certified", "violation certified"),
            ("violation_certified_recalibrated", "violation certified recal.")]
    head = "<tr><th>corruption</th><th>severity</th>" + "".join(f"<th>{t}</th>" for _, t in cols) + "</tr>"
    body = "".join(f"<tr><td>{html.escape(r['corruption'])}</td><td>{r['severity']}</td>"
                   + "".join(f"<td>{_cell(r.get(k))}</td>" for k, _ in cols) + "</tr>" for r in rows)
    return f'<table class="certify">{head}{body}</table>'


def monitor_table(summary: dict[str, Any]) -> str:
    head = ("<tr><th>setting</th><th>streams detected</th><th>median delay (samples)</th><th>alarm before the shift</th>"
            "<th>outage share after the shift, without / with the monitor</th><th>p_device after the shift, without / with</th></tr>")
    body = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{_cell(v['detected'], '.2f')}</td><td>{_cell(v['median_delay'], '.0f')}</td>"
        f"<td>{_cell(v['false_alarm_before_shift'], '.2f')}</td><td>{_cell(v['outage_share'])} / "
        f"{_cell(v['outage_share_monitored'])}</td><td>{_cell(v['p_device'])} / {_cell(v['p_device_monitored'])}</td></tr>"
        for k, v in summary["shifted"].items())
    return f'<table class="certify">{head}{body}</table>'


def shift_html(folder: Path) -> str:
    """The fragment of one run's folder: headline table, the two figures, the monitor table."""
    summary = read_json_checked(folder / "summary.json", ["variant", "seed", "table", "monitor", "p_tar", "delta"],
                                "shift_eval")
    rules = read_parquet_checked(folder / "rules.parquet", {"corruption": "str", "severity": "int64", "rule": "str",
                                                           "outage": "float"}, "shift_eval")
    certified = read_parquet_checked(folder / "certified.parquet", {"corruption": "str", "severity": "int64",
                                                                   "rule": "str", "violation_rate": "float"}, "shift_eval")
    trace = read_parquet_checked(folder / "monitor_trace.parquet", {"corruption": "str", "severity": "int64",
                                                                   "position": "int64", "martingale": "float"}, "shift_eval")
    m = summary["monitor"]
    low, high = m["clean_false_alarm_interval"]
    return (f"<h3>{html.escape(summary['variant'])}, seed {summary['seed']}</h3>"
            f"<p>{summary['n_test']} test images per setting (the same images under every corruption), p_tar "
            f"{summary['p_tar']:g}, certified target {summary['target_accuracy']:g} at delta {summary['delta']:g}.</p>"
            + headline_table(summary["table"]) + severity_figure(rules, certified, summary["p_tar"], summary["delta"])
            + f"<p>Monitor (conformal test martingale, Simple Jumper J = {m['jump']:g}, alarm at 1/alpha, alpha = "
            f"{m['alpha']:g}): false alarms on clean streams {m['clean_false_alarm_rate']:.3f} "
            f"[{low:.3f}, {high:.3f}] over {m['streams']} streams.</p>"
            + martingale_figure(trace, m["alpha"]) + monitor_table(m))

