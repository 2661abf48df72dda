"""Figures (eeoffload.figures, .figures_extra, stage plots) and claims (eeoffload.claims) on synthetic metrics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eeoffload import claims as C
from eeoffload import figures as F
from eeoffload import figures_extra as FX
from tests.synthetic_metrics import (
    EXTRA_FIGURES,
    PAPER_FIGURES,
    deadline_frame,
    exits_frame,
    make_project,
    offload_frame,
    reliability_frame,
    run_stage,
)


@pytest.fixture(scope="module")
def plotted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_project(tmp_path_factory.mktemp("plots"))
    proc = run_stage(root, "plots")
    assert proc.returncode == 0, proc.stderr
    return root


# --------------------------------------------------------------------------- stage plots


def test_plots_writes_every_figure(plotted: Path) -> None:
    out = plotted / "reports" / "figures"
    manifest = json.loads((out / "figures.json").read_text())
    names = [f["name"] for f in manifest["figures"]]
    assert names == PAPER_FIGURES + EXTRA_FIGURES
    assert manifest["skipped"] == []
    for f in manifest["figures"]:
        png = (out / f["png"]).read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000
        assert f["title"] and f["caption"]
        if f["group"] == "paper":
            assert (out / f["svg"]).read_text().lstrip().startswith("<?xml")
    # Nothing left over from the atomic folder swap; the stage recorded its timing.
    assert [p.name for p in (plotted / "reports").iterdir() if p.name.startswith(".figures")] == []
    assert json.loads((plotted / "reports" / "timings" / "plots.json").read_text())["stage"] == "plots"


def test_plots_missing_input_names_the_file_and_keeps_old_figures(plotted: Path, tmp_path: Path) -> None:
    root = tmp_path / "p"
    shutil.copytree(plotted, root)
    before = sorted(p.name for p in (root / "reports" / "figures").iterdir())
    (root / "reports" / "training" / "two_branch" / "seed0.csv").unlink()
    proc = run_stage(root, "plots")
    assert proc.returncode == 2
    assert "reports/training/two_branch/seed0.csv" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in (root / "reports" / "figures").iterdir()) == before


def test_plots_without_two_branch_variant_skips_its_figures(tmp_path: Path) -> None:
    root = make_project(tmp_path, {"solo": ["relu1"], "deep": ["relu1", "relu2", "pool2"]})
    proc = run_stage(root, "plots")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((root / "reports" / "figures" / "figures.json").read_text())
    names = {f["name"] for f in manifest["figures"]}
    assert "fig5_missed_deadline_solo" in names and "reliability_deep" in names
    assert not any(n.startswith("fig6") for n in names)
    assert any(s["figure"] == "fig6" and "two side branches" in s["reason"] for s in manifest["skipped"])


def test_write_folder_is_atomic(tmp_path: Path) -> None:
    from pipeline.plots import write_folder

    target = tmp_path / "figures"
    write_folder(target, lambda d: (d / "a.png").write_bytes(b"old"))

    def crash(d: Path) -> None:
        (d / "half.png").write_bytes(b"x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_folder(target, crash)
    assert [p.name for p in tmp_path.iterdir()] == ["figures"]
    assert [p.name for p in target.iterdir()] == ["a.png"]
    write_folder(target, lambda d: (d / "b.png").write_bytes(b"new"))
    assert [p.name for p in target.iterdir()] == ["b.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["figures"]


# --------------------------------------------------------------------------- figures (in process)


def _line_colors(fig) -> set[str]:
    from matplotlib.colors import to_hex

    return {to_hex(line.get_color()) for ax in fig.axes for line in ax.get_lines()}


def test_figures_share_one_visual_language() -> None:
    off = offload_frame(1)
    net = F.NetworkInfo(uplink_mbps=18.8, batch_size=512, resamples=200)
    figs = [
        F.fig2_p_device(off, "one_branch", ["relu1"]),
        F.fig3b_acc_device(off, "one_branch", ["relu1"]),
        F.fig4_outage(off, "one_branch", ["relu1"], net),
        F.fig5_missed_deadline(deadline_frame(1), [0.75, 0.85], "one_branch", ["relu1"], net),
        F.fig7_outage_branches({"a": off, "b": offload_frame(2)}, {"a": 1, "b": 2}, net),
        FX.reliability_diagrams(reliability_frame(2), exits_frame(2), "one_branch", ["relu1"]),
    ]
    want = {F.CALIBRATION_COLORS["conventional"].lower(), F.CALIBRATION_COLORS["calibrated"].lower()}
    try:
        for fig in figs:
            assert want <= _line_colors(fig), fig.get_suptitle()
            assert fig.get_suptitle()
            for ax in fig.axes:
                assert ax.get_xlabel() and (ax.get_legend() is not None or fig.legends)  # Fig. 5: one below the panels
        assert "18.8 Mbps" in figs[3].get_suptitle()
        assert "one_branch" in figs[0].get_suptitle() and "relu1" in figs[0].get_suptitle()
    finally:
        for fig in figs:
            F.plt.close(fig)


def _table(shape: str = "paper", variants: dict | None = None, p_step: float = 0.005) -> pd.DataFrame:
    variants = variants or {"one_branch": 1, "two_branch": 2}
    off = {v: offload_frame(n, p_step, shape) for v, n in variants.items()}
    dl = {v: deadline_frame(n, shape=shape) for v, n in variants.items()}
    one, two = C.paper_variants({v: {"branches": ["x"] * n} for v, n in variants.items()})
    return C.claims_table(off, dl, one, two).set_index("id")


def test_claims_all_hold_on_paper_shaped_data() -> None:
    t = _table()
    assert list(t.columns) == ["figure", "claim", "variant", "numbers", "verdict", "coverage", "intervals"]
    assert len(t) >= 11
    assert (t["verdict"] == C.HOLDS).all(), t[t["verdict"] != C.HOLDS][["numbers", "verdict"]]
    assert "0.395" in t.loc["C7", "numbers"]  # conventional outage at 0.875 in the synthetic data


def test_claims_fail_when_roles_are_swapped() -> None:
    t = _table("inverted")
    for cid in ("C1", "C2", "C3", "C4", "C5", "C6", "C8", "C9"):
        assert t.loc[cid, "verdict"] == C.DOES_NOT_HOLD, (cid, t.loc[cid, "numbers"])


def test_claims_not_applicable_without_data() -> None:
    t = _table(variants={"solo": 1})
    assert t.loc["C10", "verdict"] == C.NOT_APPLICABLE and t.loc["C11", "verdict"] == C.NOT_APPLICABLE
    assert t.loc["C1", "verdict"] == C.HOLDS
    # A grid without 0.875 (step 0.01): the claims at 0.875 cannot be checked.
    assert _table(p_step=0.01).loc["C7", "verdict"] == C.NOT_APPLICABLE
    # No one-branch variant at all: every one-branch claim is not applicable, and still listed.
    t = _table(variants={"deep": 3})
    assert (t["verdict"] == C.NOT_APPLICABLE).all() and len(t) >= 11


def _offload(rows: list[tuple[str, float, float]]) -> pd.DataFrame:
    """(calibration, p_tar, outage) rows with harmless other columns."""
    df = pd.DataFrame(rows, columns=["calibration", "p_tar", "outage"])
    df["p_device"], df["acc_device"], df["conf_device"], df["acc_total"] = 0.5, df["p_tar"], df["p_tar"], 0.8
    df["outage_lo"] = df["outage_hi"] = df["outage"]  # exact population intervals: no noise
    return df


@pytest.mark.parametrize(("conv", "verdict"), [(0.4, C.HOLDS), (0.31, C.HOLDS), (0.49, C.HOLDS),
                                                (0.25, C.DOES_NOT_HOLD), (0.55, C.DOES_NOT_HOLD)])
def test_conventional_outage_near_tolerance(conv: float, verdict: str) -> None:
    df = _offload([("conventional", 0.875, conv), ("calibrated", 0.875, 0.0)])
    assert C.claim_conv_outage_near(df, "v").verdict == verdict


def test_calibrated_outage_zero_below_0875() -> None:
    rows = [(cal, p, 0.0) for cal in ("conventional", "calibrated") for p in (0.8, 0.85, 0.87)]
    assert C.claim_cal_outage_zero(_offload(rows), "v").verdict == C.HOLDS
    rows[-1] = ("calibrated", 0.87, 1 / 14)  # one batch of 14 in outage just below 0.875
    c = C.claim_cal_outage_zero(_offload(rows), "v")
    assert c.verdict == C.DOES_NOT_HOLD and "0.870" in c.numbers
    rows[-1] = ("calibrated", 0.88, 0.5)  # at or above 0.875 it does not matter
    assert C.claim_cal_outage_zero(_offload(rows), "v").verdict == C.HOLDS


def test_outage_lower_ignores_undefined_points() -> None:
    rows = [(cal, p, o) for p in (0.6, 0.7, 0.75, 0.8) for cal, o in (("conventional", 0.2), ("calibrated", 0.1))]
    df = _offload(rows + [("conventional", 0.99, np.nan), ("calibrated", 0.99, np.nan)])
    c = C.claim_outage_lower(df, "v")
    assert c.verdict == C.HOLDS and "0/4" in c.numbers and "4/5" in c.numbers  # 80% coverage: enough
    c = C.claim_outage_lower(_offload(rows[-2:] + [("conventional", 0.99, np.nan), ("calibrated", 0.99, np.nan)]),
                             "v")
    assert c.verdict == C.NOT_ENOUGH_DATA and "1/2" in c.numbers  # defined at half the grid only


def test_accuracy_target_with_slack() -> None:
    df = pd.DataFrame({"calibration": ["calibrated"] * 5, "p_tar": [0.8, 0.85, 0.9, 0.95, 0.97],
                       "acc_device": [0.81, 0.845, 0.93, 0.96, 0.98], "p_device": [0.5, 0.4, 0.3, 0.2, 0.1]})
    df["acc_device_lo"] = df["acc_device_hi"] = df["acc_device"]  # exact: no noise
    assert C.claim_acc_device_meets_target(df, "v").verdict == C.HOLDS  # 0.845 is within 0.01 of 0.85
    df.loc[1, ["acc_device", "acc_device_lo", "acc_device_hi"]] = 0.835
    assert C.claim_acc_device_meets_target(df, "v").verdict == C.DOES_NOT_HOLD
    df.loc[1, "p_device"] = 0.0  # no sample on the device at that p_tar: nothing to check there (4/5 left)
    assert C.claim_acc_device_meets_target(df, "v").verdict == C.HOLDS


def _deadline(curves: dict[str, list[float]], p: float = 0.85) -> pd.DataFrame:
    """Curves over t_tar 0, 1, ..., with the last value repeated once (latency no longer binds at the
    end) and exact intervals (no noise)."""
    df = pd.DataFrame([{"calibration": cal, "p_tar": p, "t_tar_ms": float(i), "missed_deadline": m}
                       for cal, ms in curves.items() for i, m in enumerate([*ms, ms[-1]])])
    df["missed_lo"] = df["missed_hi"] = df["missed_deadline"]
    return df


def test_missed_deadline_claims() -> None:
    dl = _deadline({"conventional": [1.0, 0.9, 0.75], "calibrated": [1.0, 0.5, 0.15]})
    assert C.claim_missed_high_p_tar(dl, "v").verdict == C.HOLDS
    dl = _deadline({"conventional": [1.0, 0.9, 0.55], "calibrated": [1.0, 0.5, 0.15]})
    assert C.claim_missed_high_p_tar(dl, "v").verdict == C.DOES_NOT_HOLD  # conventional got below 0.6
    dl = _deadline({"conventional": [1.0, 0.9, 0.75], "calibrated": [1.0, 0.5, 0.25]})
    assert C.claim_missed_high_p_tar(dl, "v").verdict == C.DOES_NOT_HOLD  # calibrated never near 0.1
    low = _deadline({"conventional": [1.0, 0.3, 0.1], "calibrated": [1.0, 0.6, 0.1]}, p=0.75)
    assert C.claim_missed_low_p_tar(low, "v").verdict == C.HOLDS
    low = _deadline({"conventional": [1.0, 0.6, 0.1], "calibrated": [1.0, 0.3, 0.1]}, p=0.75)
    assert C.claim_missed_low_p_tar(low, "v").verdict == C.DOES_NOT_HOLD
    assert C.claim_missed_low_p_tar(dl, "v").verdict == C.NOT_APPLICABLE  # no p_tar 0.75 in it


def test_paper_variants() -> None:
    assert C.paper_variants({"a": {"branches": ["relu1", "relu2"]}, "b": {"branches": ["relu1"]},
                             "c": {"branches": ["pool1"]}}) == ("b", "a")
    assert C.paper_variants({"a": {"branches": ["relu1", "relu2", "pool2"]}}) == (None, None)
