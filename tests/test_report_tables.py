"""The report's Machine and Stage durations tables (issue 26): no empty field (`threads: ;`), and
the stages' sum labelled as such beside the wall span from the earliest start to the latest end
(concurrent trainings counted once). Unit level: no stage runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.core import registry
from pipeline.core.io import write_timing
from pipeline.report_rows import machine, timings, wall_span
from tests.conftest import ROOT


def test_machine_table_omits_unset_fields() -> None:
    rows = dict(machine({"one_branch": {"edge": {"device": "cpu: EPYC", "threads": None, "repeats": 50},
                                        "cloud": {"device": "cpu: EPYC", "threads": 4}}}))
    assert rows["edge (one_branch)"] == "device: cpu: EPYC; repeats: 50"
    assert rows["cloud (one_branch)"] == "device: cpu: EPYC; threads: 4"


def test_stage_durations_give_the_sum_and_the_wall_span(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_timing("evaluate", None, 2.5)
    record = json.loads(registry.timing_path("evaluate").read_text())
    assert record["end"] - record["start"] == pytest.approx(2.5, abs=1e-2)

    folder = tmp_path / "timings"
    folder.mkdir()
    for name, start, end in (("train@a-0", 100.0, 400.0), ("train@b-0", 110.0, 390.0), ("evaluate", 400.0, 405.0)):
        stage, _, rest = name.partition("@")
        (folder / f"{name}.json").write_text(json.dumps({"stage": stage, "variant": rest or None,
                                                         "seconds": end - start, "start": start, "end": end}))
    rows = timings(folder)
    assert sum(r["seconds"] for r in rows) == 585.0
    assert wall_span(rows) == 305.0  # the two trainings overlap
    (folder / "old.json").write_text(json.dumps({"stage": "logits", "variant": "a", "seconds": 1.0}))  # no start
    assert wall_span(timings(folder)) is None

    template = (ROOT / "pipeline" / "templates" / "report.html.j2").read_text()
    assert "sum of stage times" in template and "earliest start to latest end" in template
    assert '<th colspan="2">total</th>' not in template
