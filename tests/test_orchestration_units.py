"""Orchestration pieces that need no Prefect server: the workspace lock, -S arguments, the params
check, the console filter of the CLI, the services, the sweep figure, the Makefile's options, and
the one tracking URI shared by flows, `make smoke` and `make ui`."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT


def test_lock_held_elsewhere_is_a_clear_error(tmp_path: Path) -> None:
    from pipeline.orchestration.lock import WorkspaceBusy, lock_holder, workspace_lock

    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    assert lock_holder(tmp_path) is None
    with workspace_lock(tmp_path, "flow benchmark"):
        holder = lock_holder(tmp_path)
        assert holder["pid"] == os.getpid() and holder["what"] == "flow benchmark" and holder["started"]
        start = time.monotonic()
        with pytest.raises(WorkspaceBusy, match=r"is busy: flow benchmark \(pid \d+, started .*\) holds .*"
                                                r"DVC cannot run twice in one workspace"):
            with workspace_lock(tmp_path, "second", wait_s=1.0):
                pass
        waited = time.monotonic() - start
        assert 0.9 < waited < 10  # it waited wait_s, then gave up
    assert lock_holder(tmp_path) is None
    with workspace_lock(tmp_path, "third"):  # released: free again
        pass


def test_lock_is_released_when_the_holder_dies(tmp_path: Path) -> None:
    from pipeline.orchestration.lock import lock_holder, workspace_lock

    code = ("import sys, time; from pathlib import Path; from pipeline.orchestration.lock import workspace_lock\n"
            "with workspace_lock(Path(sys.argv[1]), 'doomed flow'):\n    print('held', flush=True); time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        assert lock_holder(tmp_path)["what"] == "doomed flow"
    finally:
        proc.kill()
        proc.wait()
    assert lock_holder(tmp_path) is None  # the kernel dropped the dead holder's lock
    with workspace_lock(tmp_path, "next", wait_s=0):
        assert lock_holder(tmp_path)["what"] == "next"


def test_a_waiting_flow_gets_the_lock_when_it_is_released(tmp_path: Path) -> None:
    from pipeline.orchestration.lock import workspace_lock

    code = ("import sys, time; from pathlib import Path; from pipeline.orchestration.lock import workspace_lock\n"
            "with workspace_lock(Path(sys.argv[1]), 'short flow'):\n    print('held', flush=True); time.sleep(2)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    with workspace_lock(tmp_path, "patient", wait_s=60):
        pass
    assert proc.wait(timeout=60) == 0


def test_experiment_parameters_become_dvc_set_args() -> None:
    from pipeline.orchestration.settings import exp_set_args, experiment_settings

    params = {"variants": {"one_branch": {"branches": ["relu1"], "exit_weights": [1.0, 0.3]}}}
    flat = experiment_settings(uplink_mbps=5, p_tar={"step": 0.01}, branches={"one_branch": ["relu1", "relu2"]},
                               joint_epochs=3, extra={"calibration.n_bins": 10}, params=params)
    assert exp_set_args(flat) == [
        "-S", "network.uplink_mbps=5.0", "-S", "evaluate.p_tar.step=0.01", "-S", "train.joint_epochs=3",
        "-S", "variants.one_branch.branches=[relu1, relu2]", "-S", "variants.one_branch.exit_weights=[1.0, 0.65, 0.3]",
        "-S", "calibration.n_bins=10"]
    long = exp_set_args(experiment_settings(deadline_p_tar=[0.5 + 0.01 * i for i in range(40)]))
    assert "\n" not in long[1] and long[1].startswith("evaluate.deadline_p_tar=[0.5, 0.51,")


def test_sweep_uses_public_functions_only() -> None:
    """No private (_name) imports across the orchestration modules, the tools and the CLI."""
    import ast

    files = [*(ROOT / "pipeline" / "orchestration").glob("*.py"),
             *(ROOT / "pipeline" / "tools").glob("*.py"), ROOT / "pipeline" / "cli.py"]
    private = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipeline"):
                private += [f"{path.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert private == []


def test_bad_params_name_the_file_once() -> None:
    from pipeline.orchestration.settings import BadParams, check_params

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["network"]["uplink_mbps"] = -5
    with pytest.raises(BadParams) as info:
        check_params(params, "params.yaml")
    assert str(info.value).startswith("params.yaml: network.uplink_mbps = -5; allowed:")
    assert str(info.value).count("params.yaml") == 1
    with pytest.raises(BadParams, match=r"^/nowhere/params\.yaml: params file not found$"):
        check_params(None, "/nowhere/params.yaml")


def test_console_filter_drops_tracebacks_and_repeated_errors() -> None:
    from pipeline.orchestration.cli import ConsoleFilter

    def record(msg: str, exc: bool = False) -> logging.LogRecord:
        exc_info = None
        if exc:
            try:
                raise ValueError("boom")
            except ValueError:
                exc_info = sys.exc_info()
        return logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1, msg, (), exc_info)

    keep = ConsoleFilter()
    assert not keep.filter(record("Encountered exception during execution: ValueError('boom')", exc=True))
    assert not keep.filter(record("anything with a traceback", exc=True))
    failed = record("Finished in state Failed('Flow run encountered an exception: ValueError: boom')")
    assert keep.filter(failed) and failed.getMessage() == "Finished in state Failed"
    cached = record("Finished in state Cached('DVC skipped prepare: up to date')")
    assert keep.filter(cached) and "DVC skipped prepare" in cached.getMessage()
    assert keep.filter(record("Running stage 'prepare':"))


def test_services_bind_to_loopback_with_telemetry_off() -> None:
    from pipeline.orchestration import services

    for argv, health in services.commands().values():
        assert argv[argv.index("--host") + 1] == "127.0.0.1"
        assert health.startswith("http://127.0.0.1:")
    env = services.service_env()
    assert env["DO_NOT_TRACK"] == "true" and env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert str(services.STATE).startswith(str(services.ROOT))  # PID files inside the repo


def test_smoke_logs_where_make_ui_looks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One tracking URI: the store `make ui` serves is the one the flows of this project log to
    (pipeline.orchestration.tracking's default) and the one `make smoke` (a flow in build/smoke) logs to."""
    from pipeline.tools import scratch
    from pipeline.orchestration import tracking
    from pipeline.orchestration import project, services

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PREFECT_HOME", raising=False)
    argv, _ = services.commands()["mlflow"]
    served = argv[argv.index("--backend-store-uri") + 1]
    assert served == project.mlflow_store_uri() == tracking.tracking_uri(ROOT)
    assert argv[argv.index("--default-artifact-root") + 1] == (ROOT / "mlartifacts").as_uri()
    env = scratch.flow_env(tmp_path / "smoke")
    assert env["MLFLOW_TRACKING_URI"] == served  # not sqlite:///build/smoke/mlflow.db
    assert env["PREFECT_HOME"] == str(ROOT / ".prefect") == str(services.STATE.parent)  # make ui's database
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert scratch.flow_env(tmp_path / "smoke")["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"


def make_n(*args: str) -> str:
    proc = subprocess.run(["make", "-n", *args], cwd=ROOT, text=True, capture_output=True,
                          env={**os.environ, "MAKEFLAGS": ""})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.skipif(not (ROOT / ".venv" / ".installed").exists(), reason="make venv would install")
def test_makefile_passes_wait_and_runs_smoke_as_a_flow() -> None:
    assert re.search(r"-m pipeline flows run --wait 30\b", make_n("flow", "WAIT=30"))
    assert "--wait" not in make_n("flow")
    assert re.search(r"-m pipeline sweep .*--wait 5\b", make_n("sweep", "WAIT=5"))
    smoke = make_n("smoke")
    assert "pipeline services api-env" in smoke and "--dest build/smoke --flow" in smoke


def test_sweep_comparison_figure_and_names(tmp_path: Path) -> None:
    import pandas as pd

    from pipeline.orchestration.sweep import comparison_figure, point_name

    assert point_name("sweep", 18.8, ["relu1", "relu2"]) == "sweep-u18_8-relu1_relu2"
    rows = [{"branches": "relu1", "uplink_mbps": u, "calibration": c, "p_tar": 0.85, "t_tar_ms": t,
             "missed_deadline": 1.0 / u} for u in (5.0, 18.8) for c in ("conventional", "calibrated")
            for t in (50.0, 100.0)]
    comparison_figure(pd.DataFrame(rows), tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 1000


def test_debug_logs_are_per_run_and_pruned(tmp_path: Path) -> None:
    from pipeline.orchestration.project import debug_log_path

    folder = tmp_path / ".prefect" / "logs"
    folder.mkdir(parents=True)
    for i in range(5):
        (folder / f"flows-run-2026010{i}-000000-1.log").write_text("old")
        os.utime(folder / f"flows-run-2026010{i}-000000-1.log", (1000 + i, 1000 + i))
    (folder / "sweep-20260101-000000-1.log").write_text("other command")
    path = debug_log_path(tmp_path, "flows-run", keep=2)
    assert path.parent == folder and path.name.startswith("flows-run-") and str(os.getpid()) in path.name
    assert sorted(p.name for p in folder.iterdir()) == [
        "flows-run-20260103-000000-1.log", "flows-run-20260104-000000-1.log", "sweep-20260101-000000-1.log"]


def test_sweep_points_with_other_seeds_shift_the_first_of_them() -> None:
    """``--seeds 1 2`` on a params.yaml whose shift.seeds is [0]: each point shifts seed 1 (the rule
    of `make paper`), not a seed it does not train (stage validate would refuse every point)."""
    import yaml

    from pipeline.orchestration.workpool import make_points
    from tests.conftest import ROOT

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert params["shift"]["seeds"] == [0]
    (point,) = make_points(params, [18.8], None, "one_branch", [1, 2], "p")
    assert point.overrides["train.seeds"] == [1, 2] and point.overrides["shift.seeds"] == [1]
    (same,) = make_points(params, [18.8], None, "one_branch", [0, 1], "p")
    assert "shift.seeds" not in same.overrides
