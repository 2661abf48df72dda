"""The Prefect flow over the real DVC pipeline on the tiny archive, under prefect_test_harness.

One scratch project for the module: a first flow run in a subprocess (every stage runs), a second
flow started while it holds the workspace (fails fast, nothing changed), then an in-process run
(every stage cached, MLflow logged), and one with an unreachable tracking server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from pipeline.scratch import make_scratch_project, scratch_env
from tests.conftest import TINY_PARAMS

pytestmark = pytest.mark.integration

prefect = pytest.importorskip("prefect")


@dataclass
class FlowProject:
    root: Path
    api_url: str
    first: subprocess.CompletedProcess[str]
    busy_state: object
    busy_seconds: float
    stages: list[str]


@pytest.fixture(scope="session")
def prefect_api() -> str:
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=int(os.environ.get("PREFECT_SERVER_API_STARTUP_TIMEOUT", 180))):
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def flow_project(tmp_path_factory: pytest.TempPathFactory, tiny_zip: Path, prefect_api: str) -> FlowProject:
    """A fresh tiny project; the flow runs in a subprocess while a second start is tried in-process."""
    from pipeline.flows import benchmark, lock_holder, stage_graph

    overrides = {**TINY_PARAMS, "data": {**TINY_PARAMS["data"], "archive": str(tiny_zip)}}
    root = make_scratch_project(tmp_path_factory.mktemp("flow") / "p", overrides)
    env = {**scratch_env(root), "PREFECT_API_URL": prefect_api}
    os.environ["PYTHONPATH"] = env["PYTHONPATH"]  # in-process flows run this project's stage code
    first = subprocess.Popen([sys.executable, "-m", "pipeline.flows", "run", "--no-track", "--root", str(root)],
                             cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while lock_holder(root) is None and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lock_holder(root) is not None, "the first flow never took the workspace lock"
    start = time.monotonic()
    busy_state = benchmark(root=str(root), track=False, return_state=True)
    busy_seconds = time.monotonic() - start
    out, _ = first.communicate(timeout=900)
    return FlowProject(root, prefect_api, subprocess.CompletedProcess(first.args, first.returncode, out, ""),
                       busy_state, busy_seconds, [s for s, _ in stage_graph(root)])


def task_runs_of(flow_run_id) -> dict[str, object]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name: run.state for run in runs}


def dvc_status(root: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=root, env=scratch_env(root),
                          text=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_stage_order_is_dvcs_dag(flow_project: FlowProject) -> None:
    stages = flow_project.stages
    assert len(stages) == 15 and stages[0] == "prepare" and stages[-1] == "report"  # 5 per variant x 2 + 5
    for v in ("one_branch", "two_branch"):
        assert stages.index(f"train@{v}") < stages.index(f"logits@{v}") < stages.index(f"calibrate@{v}") \
            < stages.index("evaluate") < stages.index("plots")


def test_first_run_every_stage_is_a_task(flow_project: FlowProject) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState,
                                                FlowRunFilterStateType)
    from prefect.client.schemas.objects import StateType

    assert flow_project.first.returncode == 0, flow_project.first.stdout[-4000:]
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["benchmark"])),
                                     flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
                                         any_=[StateType.COMPLETED]))))
    first = min(runs, key=lambda r: r.start_time)  # the subprocess run, started first
    tasks = task_runs_of(first.id)
    assert set(flow_project.stages) <= set(tasks)
    for stage in flow_project.stages:
        assert tasks[stage].is_completed() and tasks[stage].name == "Completed", (stage, tasks[stage])
    assert tasks["summary"].is_completed()
    assert "Running stage 'train@one_branch'" in flow_project.first.stdout  # stage output in the log
    assert (flow_project.root / "reports" / "index.html").exists()


def test_concurrent_start_fails_fast_with_a_clear_message(flow_project: FlowProject) -> None:
    state = flow_project.busy_state
    assert state.is_failed()
    with pytest.raises(Exception, match="is busy") as info:
        state.result()
    assert "DVC cannot run twice in one workspace" in str(info.value)
    assert flow_project.busy_seconds < 60
    assert flow_project.first.returncode == 0
    assert "up to date" in dvc_status(flow_project.root)  # dvc.lock and outputs intact


def test_second_run_marks_every_stage_cached_and_logs_mlflow(flow_project: FlowProject, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    from pipeline.flows import benchmark

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    state = benchmark(root=str(flow_project.root), return_state=True)
    assert state.is_completed(), state.message
    assert state.result() == {stage: "cached" for stage in flow_project.stages}
    tasks = task_runs_of(state.state_details.flow_run_id)
    for stage in flow_project.stages:
        assert tasks[stage].is_completed() and tasks[stage].name == "Cached", (stage, tasks[stage])
    assert tasks["mlflow"].is_completed()
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("eeoffload-benchmark").experiment_id])
    roles = [r.data.tags["eeoffload_role"] for r in runs]
    n_methods = len(yaml.safe_load((flow_project.root / "params.yaml").read_text())["calibration"]["methods"])
    assert sorted(roles) == ["child"] * 4 + ["method"] * (2 * n_methods) + ["parent"]  # methods: certify


def test_unreachable_tracking_server_fails_clearly_and_keeps_outputs(flow_project: FlowProject,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.flows import benchmark

    root = flow_project.root
    before = {p: p.stat().st_mtime_ns for p in (root / "reports").rglob("*") if p.is_file()}
    lock = (root / "dvc.lock").read_bytes()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    state = benchmark(root=str(root), return_state=True)
    assert state.is_failed()
    tasks = task_runs_of(state.state_details.flow_run_id)
    assert all(tasks[s].name == "Cached" for s in flow_project.stages)
    assert tasks["summary"].is_completed() and tasks["mlflow"].is_failed()
    with pytest.raises(Exception, match="unreachable") as info:
        state.result()
    assert "complete and untouched" in str(info.value)
    assert {p: p.stat().st_mtime_ns for p in (root / "reports").rglob("*") if p.is_file()} == before
    assert (root / "dvc.lock").read_bytes() == lock


def micro_project(root: Path, bad_cmd: str) -> Path:
    """A two-stage DVC project without the benchmark: `ok` writes a file, `bad` depends on it."""
    root.mkdir(parents=True)
    import yaml

    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "ok": {"cmd": "python -c \"open('a.txt', 'w').write('a')\"", "outs": ["a.txt"]},
        "bad": {"cmd": bad_cmd, "deps": ["a.txt"], "outs": ["b.txt"]}}}))
    (root / "params.yaml").write_text((Path(__file__).resolve().parent.parent / "params.yaml").read_text())
    env = scratch_env(root)
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@localhost"],
                ["git", "config", "user.name", "t"], [sys.executable, "-m", "dvc", "init", "-q"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "micro"]):
        subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)
    return root


def test_failed_stage_fails_its_task_with_the_stage_error(tmp_path: Path, prefect_api: str) -> None:
    from pipeline.flows import StageFailed, benchmark

    root = micro_project(tmp_path / "micro", "python -c \"import sys; sys.exit('boom: bad input')\"")
    state = benchmark(root=str(root), track=False, return_state=True)
    assert state.is_failed()
    tasks = task_runs_of(state.state_details.flow_run_id)
    assert tasks["ok"].is_completed() and tasks["bad"].is_failed()
    assert "summary" not in tasks
    with pytest.raises(StageFailed, match=r"stage bad failed .*\n(.|\n)*boom: bad input"):
        state.result()


def test_lock_held_elsewhere_is_a_clear_error(tmp_path: Path) -> None:
    from pipeline.flows import WorkspaceBusy, lock_holder, workspace_lock

    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    assert lock_holder(tmp_path) is None
    with workspace_lock(tmp_path, "flow benchmark"):
        assert lock_holder(tmp_path)["pid"] == os.getpid()
        start = time.monotonic()
        with pytest.raises(WorkspaceBusy, match=r"is busy: flow benchmark \(pid \d+"):
            with workspace_lock(tmp_path, "second", wait_s=1.0):
                pass
        assert time.monotonic() - start < 10
    assert lock_holder(tmp_path) is None
    with workspace_lock(tmp_path, "third"):  # released: free again
        pass


def test_experiment_parameters_become_dvc_set_args() -> None:
    from pipeline.flows import experiment_settings, set_args

    params = {"variants": {"one_branch": {"branches": ["relu1"], "exit_weights": [1.0, 0.3]}}}
    flat = experiment_settings(uplink_mbps=5, p_tar={"step": 0.01}, branches={"one_branch": ["relu1", "relu2"]},
                               joint_epochs=3, extra={"calibration.n_bins": 10}, params=params)
    assert set_args(flat) == [
        "-S", "network.uplink_mbps=5.0", "-S", "evaluate.p_tar.step=0.01", "-S", "train.joint_epochs=3",
        "-S", "variants.one_branch.branches=[relu1, relu2]", "-S", "variants.one_branch.exit_weights=[1.0, 0.65, 0.3]",
        "-S", "calibration.n_bins=10"]


def test_services_bind_to_loopback_with_telemetry_off() -> None:
    from pipeline import services

    for argv, health in services.commands().values():
        assert argv[argv.index("--host") + 1] == "127.0.0.1"
        assert health.startswith("http://127.0.0.1:")
    env = services._env()
    assert env["DO_NOT_TRACK"] == "true" and env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert str(services.STATE).startswith(str(services.ROOT))  # PID files inside the repo


def test_sweep_comparison_figure_and_names(tmp_path: Path) -> None:
    import pandas as pd

    from pipeline.sweep import comparison_figure, point_name

    assert point_name("sweep", 18.8, ["relu1", "relu2"]) == "sweep-u18_8-relu1_relu2"
    rows = [{"branches": "relu1", "uplink_mbps": u, "calibration": c, "p_tar": 0.85, "t_tar_ms": t,
             "missed_deadline": 1.0 / u} for u in (5.0, 18.8) for c in ("conventional", "calibrated")
            for t in (50.0, 100.0)]
    comparison_figure(pd.DataFrame(rows), tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 1000


def test_bad_parameters_fail_before_any_dvc_command(tmp_path: Path, prefect_api: str) -> None:
    import yaml

    from pipeline.flows import benchmark_experiment

    root = tmp_path / "p"
    root.mkdir()
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "params.yaml").write_text((Path(__file__).resolve().parent.parent / "params.yaml").read_text())
    state = benchmark_experiment(root=str(root), uplink_mbps=-1, track=False, return_state=True)
    assert state.is_failed()
    with pytest.raises(ValueError, match=r"network\.uplink_mbps = -1"):
        state.result()
    assert not (root / ".dvc").exists()  # nothing ran, not even the lock
    assert yaml.safe_load((root / "params.yaml").read_text())["network"]["uplink_mbps"] == 18.8
