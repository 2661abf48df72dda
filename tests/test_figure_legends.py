"""Every band and hatch of a figure is in its legend (the greyish overlap of the two calibrations'
bands included), and the trajectory figure is readable at page width: legends beside the panels,
never over a curve, fonts at their size, no colour repeated across variants."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_hex

from eeoffload import figures as F
from eeoffload import figures_extra as FX
from tests.synthetic_metrics import deadline_frame, offload_frame, training_frame, trajectory_frames

NET = F.NetworkInfo(uplink_mbps=18.8, batch_size=512, resamples=200)


def with_seeds(df: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """The seed columns evaluate writes for 3 seeds (t-interval, unclipped), so the hatches are drawn."""
    df = df.copy()
    df["n_seeds"] = 3
    for c in columns:
        df[f"{c}_seed_lo"], df[f"{c}_seed_hi"] = df[c] - 0.05, df[c] + 0.05
    return df


def legend_texts(fig) -> set[str]:  # noqa: ANN001
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + list(fig.legends)
    return {t.get_text() for leg in legends for t in leg.get_texts()}


def filled_areas(fig) -> list[tuple[str, str]]:  # noqa: ANN001
    """(kind, label) of every band (fill_between), hatch and span drawn in the figure's axes."""
    out = []
    for ax in fig.axes:
        for c in ax.collections:
            if isinstance(c, PolyCollection):
                out.append(("hatch" if c.get_hatch() else "band", c.get_label()))
        for p in ax.patches:
            out.append(("span", p.get_label()))
    return out


def paper_figures() -> dict[str, object]:
    off = with_seeds(offload_frame(1), ("p_device", "acc_device", "acc_total", "outage"))
    dl = with_seeds(deadline_frame(1), ("missed_deadline",))
    return {
        "fig2": F.fig2_p_device(off, "one_branch", ["relu1"]),
        "fig3b": F.fig3b_acc_device(off, "one_branch", ["relu1"]),
        "fig3c": F.fig3c_acc_total(off, "one_branch", ["relu1"]),
        "fig4": F.fig4_outage(off, "one_branch", ["relu1"], NET),
        "fig5": F.fig5_missed_deadline(dl, [0.75, 0.85], "one_branch", ["relu1"], NET),
        "training": FX.training_curves(training_frame(2), "one_branch", ["relu1"]),
    }


def test_every_band_and_hatch_is_in_a_legend() -> None:
    figs = paper_figures()
    try:
        for name, fig in figs.items():
            texts = legend_texts(fig)
            areas = filled_areas(fig)
            assert areas, name
            for kind, label in areas:
                assert not label.startswith("_") and label in texts, (name, kind, label, sorted(texts))
            bands = {label.split(",")[0] for kind, label in areas if kind == "band"}
            if {F.CONVENTIONAL, F.CALIBRATED} <= bands:  # the two bands overlap somewhere: a greyish blend
                assert F.OVERLAP_LABEL in texts, name
        kinds = {kind for fig in figs.values() for kind, _ in filled_areas(fig)}
        assert kinds == {"band", "hatch", "span"}
    finally:
        for fig in figs.values():
            F.plt.close(fig)


def test_fig4_legend_is_what_its_caption_says() -> None:
    """The caption (pipeline/plots.py) says: thick solid conventional / dashed calibrated = fixed
    batching; thin dotted = mean over re-batchings; shaded = Clopper-Pearson 95%; hatched = seeds."""
    fig = paper_figures()["fig4"]
    try:
        (ax,) = fig.axes
        styles = {line.get_label(): line.get_linestyle() for line in ax.get_lines()}
        assert styles["conventional, fixed batches"] == "-" and styles["calibrated, fixed batches"] == "--"
        assert {s for label, s in styles.items() if "re-batchings" in label} == {":"}
        labels = legend_texts(fig)
        assert {"conventional, 95% interval (Clopper-Pearson, batches)", "conventional, 3 seeds: t-interval 95%"} <= labels
    finally:
        F.plt.close(fig)


def test_trajectory_is_readable_at_page_width(tmp_path: Path) -> None:
    trajectory_frames({"one_branch": ["relu1"], "two_branch": ["relu1", "relu2"]}, tmp_path, trunk_epochs=3)
    exits, offload = pd.read_parquet(tmp_path / "exits.parquet"), pd.read_parquet(tmp_path / "offload.parquet")
    fig = FX.trajectory(exits, offload, trunk_epochs=3)
    try:
        width_in = fig.get_size_inches()[0]
        assert width_in <= 10.0  # drawn at about the page's width: not scaled down, fonts keep their size
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            leg = ax.get_legend()
            assert leg is not None
            assert min(t.get_fontsize() for t in leg.get_texts()) >= 8
            assert min(t.get_fontsize() for t in ax.get_xticklabels() + ax.get_yticklabels()) >= 8
            box, area = leg.get_window_extent(renderer), ax.get_window_extent(renderer)
            assert box.x0 >= area.x1 or box.y1 <= area.y0 or box.y0 >= area.y1, "legend over the plot area"
        # (a) and (b): one colour per variant and exit, none repeated across variants
        for ax in fig.axes[:2]:
            by_pair: dict[str, set[str]] = {}
            for line in ax.get_lines():
                if line.get_label().startswith(("one_branch", "two_branch")):
                    pair = " ".join(line.get_label().split(",")[0].split()[:3])
                    by_pair.setdefault(to_hex(line.get_color()), set()).add(pair)
            assert all(len(pairs) == 1 for pairs in by_pair.values()), by_pair
            assert len(by_pair) == 5  # 2 + 3 exits
        assert any("trunk-only" in t for t in legend_texts(fig))
    finally:
        F.plt.close(fig)


@pytest.mark.parametrize("name", ["fig5"])
def test_deadline_legend_below_the_panels(name: str) -> None:
    fig = paper_figures()[name]
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        (leg,) = fig.legends
        top = leg.get_window_extent(renderer).y1
        assert all(top <= ax.get_tightbbox(renderer).y0 + 1 for ax in fig.axes)
    finally:
        F.plt.close(fig)
