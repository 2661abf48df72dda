"""MLflow hookup of stage shift_eval: the flat metric keys, and one child run per shifted seed."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.core import registry
from pipeline.orchestration.tracking_shift import shift_metrics, shift_runs

SUMMARY = {"table": [{"corruption": "contrast", "severity": 5, "acc_final": 0.4, "outage_conventional": 0.9,
                      "outage_calibrated": None, "violation_certified": 0.7}],
           "monitor": {"clean_false_alarm_rate": 0.0,
                       "shifted": {"contrast/5": {"detected": 1.0, "median_delay": 12.0, "outage_share": 0.8,
                                                  "outage_share_monitored": 0.1, "p_device": 0.5}}}}


def write_summary(root: Path, variant: str, seed: int) -> None:
    folder = root / registry.shift_dir(variant, seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps(SUMMARY))


def test_flat_keys(tmp_path: Path) -> None:
    write_summary(tmp_path, "one_branch", 0)
    m = shift_metrics(tmp_path / registry.shift_dir("one_branch", 0))
    assert m == {"shift/contrast/s5/acc_final": 0.4, "shift/contrast/s5/outage_conventional": 0.9,
                 "shift/contrast/s5/violation_certified": 0.7, "shift_monitor/clean_false_alarm_rate": 0.0,
                 "shift_monitor/contrast/s5/detected": 1.0, "shift_monitor/contrast/s5/median_delay": 12.0,
                 "shift_monitor/contrast/s5/outage_share": 0.8, "shift_monitor/contrast/s5/outage_share_monitored": 0.1}
    assert shift_runs(tmp_path, "one_branch", [0, 1]).keys() == {0}


def test_a_child_run_per_shifted_seed(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from pipeline.orchestration.tracking import log_pipeline_run
    from tests.test_tracking import make_pipeline_outputs

    root = make_pipeline_outputs(tmp_path / "p", certify=False, models=False)
    write_summary(root, "one_branch", 0)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    lines: list[str] = []
    parent_id = log_pipeline_run(root, uri=uri, log=lines.append)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("eeoffload-benchmark")
    runs = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}' and tags.eeoffload_role = 'shift'")
    assert len(runs) == 1 and runs[0].data.metrics["shift/contrast/s5/outage_conventional"] == 0.9
    assert any("shift metrics" in line for line in lines)
