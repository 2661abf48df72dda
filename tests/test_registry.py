"""pipeline.core.registry, dvc.yaml and the README name the same artifacts: a test that fails when they drift."""

from __future__ import annotations

from pathlib import Path

import yaml

from pipeline.core import registry as R
from pipeline.tools.plain_run import expand_stages
from tests.conftest import ROOT

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
STAGES = {s.name: s for s in expand_stages(yaml.safe_load((ROOT / "dvc.yaml").read_text()), PARAMS)}
RUNS = [(v, k) for v in PARAMS["variants"] for k in PARAMS["train"]["seeds"]]


def outs(name: str) -> set[str]:
    return set(STAGES[name].outs)


def s(*paths: Path) -> set[str]:
    return {str(p) for p in paths}


def test_per_run_stages_write_the_registry_paths() -> None:
    for v, k in RUNS:
        run = f"{v}-{k}"
        assert outs(f"train@{run}") == s(R.model_path(v, k), R.snapshots_dir(v, k), R.timing_path(f"train@{run}"),
                                         R.training_csv(v, k))
        assert outs(f"logits@{run}") == s(R.logits_path(v, k), R.timing_path(f"logits@{run}"))
        assert str(R.model_path(v, k)) in STAGES[f"logits@{run}"].deps
        assert outs(f"calibrate@{run}") == s(R.calibration_path(v, k), R.calibration_exits_path(v, k),
                                             R.reliability_path(v, k), R.timing_path(f"calibrate@{run}"))
        assert str(R.logits_path(v, k)) in STAGES[f"calibrate@{run}"].deps
        assert outs(f"certify@{run}") == s(R.certify_dir(v, k), R.timing_path(f"certify@{run}"))


def test_per_variant_and_aggregate_stages_write_the_registry_paths() -> None:
    for v in PARAMS["variants"]:
        assert outs(f"profile@{v}") == s(R.profile_path(v), R.profile_layers_path(v), R.timing_path(f"profile@{v}"))
    assert outs("validate") == s(R.PARAMS_VALID)
    assert outs("prepare") == s(R.PREPARED, R.timing_path("prepare"))
    assert outs("evaluate") == s(R.METRICS, R.timing_path("evaluate"), R.METRICS_JSON, R.CURVES, R.HEADLINE_JSON)
    assert outs("trajectory") == s(R.TRAJECTORY, R.timing_path("trajectory"))
    assert outs("plots") == s(R.FIGURES, R.timing_path("plots"))
    assert outs("report") == s(R.REPORT_HTML)
    # the folders evaluate reads hold the per-run files above
    for folder in (R.LOGITS, R.CALIBRATION, R.PROFILE):
        assert str(folder) in STAGES["evaluate"].deps


def overlaps(a: str, b: str) -> bool:
    """A dep equal to, inside or containing an out (as DVC orders stages)."""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def test_validate_runs_before_every_stage_that_writes() -> None:
    """Every stage descends from validate (through prepare or profile), so a bad param stops DVC
    before it deletes any output."""
    children = {name: {o for o in st.outs} for name, st in STAGES.items()}
    reached = {"validate"}
    changed = True
    while changed:
        changed = False
        for name, st in STAGES.items():
            if name not in reached and any(overlaps(d, o) for d in st.deps for r in reached for o in children[r]):
                reached.add(name)
                changed = True
    assert reached == set(STAGES)


def test_readme_pipeline_table_names_the_registry_paths() -> None:
    readme = (ROOT / "README.md").read_text()
    for path in ("data/models/v/seed<k>.pt", "data/logits/v/seed<k>.parquet", "data/calibration/v/seed<k>.json",
                 "reports/calibration/v/seed<k>_{exits,reliability}.parquet", "reports/training/v/seed<k>.csv",
                 "data/snapshots/v/seed<k>/epoch_NNN.parquet", "reports/certify/v/seed<k>/",
                 "reports/metrics/v/seed<k>/{offload,deadline}.parquet", "data/params_valid.json"):
        assert path in readme, path
    assert R.model_path("v", 7) == Path("data/models/v/seed7.pt")  # the README's <k> convention


def test_stage_instance_names_match_dvc() -> None:
    assert set(STAGES) >= {R.stage_instance("train", v, k) for v, k in RUNS}
    assert {R.stage_instance("profile", v) for v in PARAMS["variants"]} <= set(STAGES)
    assert R.stage_instance("evaluate") in STAGES


def test_the_paths_stages_no_longer_spell_themselves() -> None:
    """The registry entries prepare, splits, plots and the report use instead of literals (same paths)."""
    assert R.RAW == Path("data/raw")
    assert R.prepared_split("val") == Path("data/prepared/val.npz")
    assert R.PREPARED_META == Path("data/prepared/meta.json")
    assert R.FIGURES_MANIFEST == Path("reports/figures/figures.json")
    assert R.link_dir("one_branch") == Path("reports/link/one_branch")
