"""HTML fragment of stage certify's outputs, for the report to include (tables + inline PNGs).

    from pipeline.certify_report import certify_html
    fragment = certify_html(Path("reports/certify/one_branch"))  # str, self-contained

Reads only the files of one ``reports/certify/<variant>/`` folder (docs/certify.md). matplotlib
is imported here, never in the certify stage.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.io import StageError, read_parquet_checked


def _png(fig: Any) -> str:
    from eeoffload.figures import inline_img

    return inline_img(fig, alt="")


def _figure(n_panels: int, width: float = 4.2, height: float = 3.6) -> tuple[Any, np.ndarray]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, n_panels, figsize=(width * n_panels, height), squeeze=False)
    return fig, axes[0]


def _read(folder: Path, name: str, columns: dict[str, str]) -> pd.DataFrame:
    return read_parquet_checked(folder / f"{name}.parquet", columns, "certify")


def validity_table(validity: pd.DataFrame) -> str:
    """Per method x target x procedure: what LTT certified and how often it missed the target."""
    rows = []
    for r in validity.itertuples():
        acc = "n/a" if not np.isfinite(r.mean_acc_device) else f"{r.mean_acc_device:.3f}"
        lam = "n/a" if not np.isfinite(r.mean_threshold) else f"{r.mean_threshold:.3f}"
        flag = ' style="color:#b00"' if r.violation_low > r.delta else ""
        outage = getattr(r, "mean_batch_outage", float("nan"))
        outage = "n/a" if not np.isfinite(outage) else f"{outage:.3f}"
        rows.append(f"<tr><td>{html.escape(r.method)}</td><td>{r.target:g}</td><td>{html.escape(r.procedure)}</td>"
                    f"<td>{lam}</td><td>{r.mean_p_device:.3f}</td><td>{acc}</td><td>{r.certified_rate:.2f}</td>"
                    f"<td{flag}>{r.violation_rate:.3f} [{r.violation_low:.3f}, {r.violation_high:.3f}]</td>"
                    f"<td>{outage}</td></tr>")
    head = ("<tr><th>calibrator</th><th>target acc. on device</th><th>procedure</th><th>mean certified &lambda;</th>"
            "<th>mean p_device (test)</th><th>mean acc. on device (test)</th><th>certified in</th>"
            "<th>violation rate [95% CI]</th><th>batch outage (batches of 512)</th></tr>")
    return f'<table class="certify">{head}{"".join(rows)}</table>'


def calibration_table(exits: pd.DataFrame, smooth: pd.DataFrame, aurc: pd.DataFrame) -> str:
    """Per method x exit: mean test metrics over splits, smooth ECE of split 0, AURC."""
    mean = exits.groupby(["method", "exit"], sort=False)[["accuracy", "ece", "ece_equal_mass", "brier", "nll"]].mean()
    area = aurc.groupby("method", sort=False)["aurc"].mean()
    sm = smooth.set_index(["method", "exit"])
    rows = []
    for (method, k), r in mean.iterrows():
        s = sm.loc[(method, k)] if (method, k) in sm.index else None
        sm_text = "n/a" if s is None else f"{s.smece:.4f} [{s.smece_low:.4f}, {s.smece_high:.4f}]"
        rows.append(f"<tr><td>{html.escape(str(method))}</td><td>{k}</td><td>{r.accuracy:.3f}</td><td>{r.ece:.4f}</td>"
                    f"<td>{r.ece_equal_mass:.4f}</td><td>{sm_text}</td><td>{r.brier:.4f}</td><td>{r.nll:.4f}</td>"
                    f"<td>{area[method]:.4f}</td></tr>")
    head = ("<tr><th>calibrator</th><th>exit</th><th>accuracy</th><th>ECE (equal width)</th><th>ECE (equal mass)</th>"
            "<th>smooth ECE [95% bootstrap], split 0</th><th>top-label Brier</th><th>top-label NLL</th>"
            "<th>AURC of the device rule</th></tr>")
    return f'<table class="certify">{head}{"".join(rows)}</table>'


def reliability_figure(curves: pd.DataFrame) -> str:
    """Kernel reliability diagrams (smooth ECE's), one panel per exit, one line per calibrator."""
    exits = sorted(curves["exit"].unique())
    fig, axes = _figure(len(exits))
    for ax, k in zip(axes, exits):
        ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--")
        for method, part in curves[curves["exit"] == k].groupby("method", sort=False):
            ax.plot(part["confidence"], part["accuracy"], lw=1.5, label=method)
        ax.set(title=f"exit {k}", xlabel="confidence", ylabel="accuracy (kernel estimate)", xlim=(0, 1), ylim=(0, 1))
    axes[-1].legend(fontsize=7)
    return _png(fig)


def risk_coverage_figure(curves: pd.DataFrame, certified: pd.DataFrame | None = None) -> str:
    """Selective risk vs p_device along the shared threshold (split 0, test samples); with
    ``certified`` (split 0's rows of thresholds.parquet), each target's certified operating point."""
    fig, axes = _figure(1, 5.5, 4.0)
    colors = {}
    for method, part in curves.groupby("method", sort=False):
        keep = part["coverage"] > 0
        (line,) = axes[0].plot(part.loc[keep, "coverage"], part.loc[keep, "risk"], lw=1.5, label=method)
        colors[method] = line.get_color()
    if certified is not None:
        for row in certified.itertuples():
            if row.method in colors and np.isfinite(row.test_acc_device):
                axes[0].scatter(row.test_p_device, 1 - row.test_acc_device, marker="D", s=28, color=colors[row.method],
                                edgecolor="black", linewidth=0.6, zorder=3)
                axes[0].annotate(f"{row.target:g}", (row.test_p_device, 1 - row.test_acc_device), fontsize=6,
                                 xytext=(3, 3), textcoords="offset points")
    axes[0].set(xlabel="p_device (coverage)", ylabel="error rate on the device", xlim=(0, 1))
    axes[0].legend(fontsize=7)
    return _png(fig)


def trade_off_figure(validity: pd.DataFrame) -> str:
    """Per procedure: mean p_device of the chosen threshold vs the target, per calibrator; a red
    cross marks a violation rate above delta (the paper's rule has no guarantee)."""
    procedures = list(dict.fromkeys(validity["procedure"]))
    fig, axes = _figure(len(procedures))
    for ax, procedure in zip(axes, procedures):
        part = validity[validity["procedure"] == procedure]
        for method, rows in part.groupby("method", sort=False):
            ax.plot(rows["target"], rows["mean_p_device"], marker="o", lw=1, label=method)
            bad = rows[rows["violation_rate"] > rows["delta"]]
            ax.scatter(bad["target"], bad["mean_p_device"], marker="x", s=90, color="red", zorder=3)
        ax.set(title=procedure, xlabel="target accuracy on device", ylabel="mean p_device (test)")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def certify_html(folder: Path) -> str:
    """The HTML fragment for one variant's ``reports/certify/<variant>/`` folder."""
    folder = Path(folder)
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        raise StageError(f"{summary_path}: not found (run the certify stage first)")
    head = json.loads(summary_path.read_text(encoding="utf-8"))
    validity = _read(folder, "validity", {"method": "str", "target": "float", "procedure": "str"})
    exits = _read(folder, "exits", {"method": "str", "exit": "int64", "ece": "float"})
    smooth = _read(folder, "smooth_ece", {"method": "str", "exit": "int64", "smece": "float"})
    aurc = _read(folder, "aurc", {"method": "str", "aurc": "float"})
    curves = _read(folder, "kernel_reliability", {"method": "str", "exit": "int64", "confidence": "float"})
    rc = _read(folder, "risk_coverage", {"method": "str", "coverage": "float", "risk": "float"})
    thresholds = _read(folder, "thresholds", {"split": "int64", "method": "str", "procedure": "str"})
    certified = thresholds[(thresholds["split"] == 0) & (thresholds["procedure"] == thresholds["procedure"].iloc[0])] \
        if len(thresholds) else None
    intro = (f"<p>{head['splits']} random splits of the {head['samples']} val+test samples: {head['n_fit']} fit "
             f"each calibrator, {head['n_calibration'] - head['n_fit']} certify the shared exit threshold with "
             f"Learn-then-Test ({html.escape(head['p_value'])} p-values, &delta; = {head['delta']:g}), the other "
             f"{head['samples'] - head['n_calibration']} test it. A violation is a test accuracy on the device below "
             f"the target. LTT promises a rate of at most &delta; for the true accuracy; judged on the test samples, "
             f"their sampling noise adds a little (largest rate of a certified rule here: "
             f"{head['max_violation_rate']:.3f}).</p>")
    return "\n".join([
        f'<section class="certify"><h3>Certified thresholds: {html.escape(head["variant"])}</h3>', intro,
        validity_table(validity), trade_off_figure(validity),
        "<h4>Calibration of each exit (test samples, mean over splits)</h4>",
        calibration_table(exits, smooth, aurc), reliability_figure(curves),
        "<h4>Risk-coverage of the offloading rule (split 0; diamonds: the certified threshold of each target, "
        "first procedure)</h4>", risk_coverage_figure(rc, certified), "</section>",
    ])
