"""The shift stages in dvc.yaml: registry paths, and which params re-run what (statically, from the
stage specs as plain_run expands them: a stage re-runs on a change of a param it lists)."""

from __future__ import annotations

import yaml

from pipeline.core import registry as R
from pipeline.tools.plain_run import expand_stages
from tests.conftest import ROOT

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
SPEC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
STAGES = {s.name: s for s in expand_stages(SPEC, PARAMS)}


def test_shift_stages_write_the_registry_paths() -> None:
    for v in PARAMS["variants"]:
        for k in PARAMS["shift"]["seeds"]:
            run = f"{v}-{k}"
            assert set(STAGES[f"shift@{run}"].outs) == {str(R.shift_logits_path(v, k)), str(R.timing_path(f"shift@{run}"))}
            assert {str(R.model_path(v, k)), str(R.PREPARED)} <= set(STAGES[f"shift@{run}"].deps)
            assert set(STAGES[f"shift_eval@{run}"].outs) == {str(R.shift_dir(v, k)), str(R.timing_path(f"shift_eval@{run}"))}
            assert str(R.shift_logits_path(v, k)) in STAGES[f"shift_eval@{run}"].deps
    assert str(R.SHIFT) in STAGES["report"].deps


def listed(stage: dict, key: str) -> bool:
    """Whether a stage spec lists params ``key`` (itself or a section containing it)."""
    return any(key == p or key.startswith(f"{p}.") for p in stage.get("params", []) if isinstance(p, str))


def test_a_shift_param_reruns_validate_and_the_shift_stages_only() -> None:
    stages = SPEC["stages"]
    for key in ("shift.corruptions", "shift.severities", "shift.max_images", "shift.seed"):
        assert {n for n, s in stages.items() if listed(s.get("do", s), key)} == {"validate", "shift", "shift_eval"}, key
    for key in ("shift.p_tar", "shift.monitor_alpha", "shift.splits"):  # the analysis only, not the logits
        assert {n for n, s in stages.items() if listed(s.get("do", s), key)} == {"validate", "shift_eval"}, key


def test_a_new_training_seed_does_not_rerun_the_shift_stages() -> None:
    for name in ("shift", "shift_eval"):
        assert not listed(SPEC["stages"][name], "train.seeds")
        assert SPEC["stages"][name]["matrix"]["seed"] == "${shift.seeds}"
