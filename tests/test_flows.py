"""The Prefect flow over the real DVC pipeline on the tiny archive, under prefect_test_harness.

One scratch project for the module: a first flow run in a subprocess (every stage runs), a second
flow started while it holds the workspace (fails fast, nothing changed), then an in-process run
(every stage cached, MLflow logged), and one with an unreachable tracking server. The stages are
never named here: they come from DVC (`dvc dag --dot`), as dvc.yaml's matrix makes them. The CLI
(`python -m pipeline flows`) ends a failed flow with its error printed once and no traceback.
The pieces that need no Prefect server are in test_orchestration_units.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from pipeline.tools.scratch import make_scratch_project, scratch_env
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
    from pipeline.orchestration.dag import stage_names
    from pipeline.orchestration.flows import benchmark
    from pipeline.orchestration.lock import lock_holder

    overrides = {**TINY_PARAMS, "data": {**TINY_PARAMS["data"], "archive": str(tiny_zip)}}
    root = make_scratch_project(tmp_path_factory.mktemp("flow") / "p", overrides)
    env = {**scratch_env(root), "PREFECT_API_URL": prefect_api}
    os.environ["PYTHONPATH"] = env["PYTHONPATH"]  # in-process flows run this project's stage code
    first = subprocess.Popen([sys.executable, "-m", "pipeline", "flows", "run", "--no-track", "--root", str(root)],
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
                       busy_state, busy_seconds, stage_names(root))


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


def dvc_dag_edges(root: Path) -> tuple[set[str], set[tuple[str, str]]]:
    """The stages and (upstream, downstream) edges DVC's own CLI reports (`dvc dag --dot`)."""
    proc = subprocess.run([sys.executable, "-m", "dvc", "dag", "--dot"], cwd=root, env=scratch_env(root),
                          text=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    edges = set(re.findall(r'"([^"]+)" -> "([^"]+)"', proc.stdout))
    nodes = set(re.findall(r'^"([^"]+)";$', proc.stdout, flags=re.M)) | {n for e in edges for n in e}
    return nodes, edges


def test_stage_order_is_dvcs_dag(flow_project: FlowProject) -> None:
    from pipeline.orchestration.dag import stage_graph

    stages = flow_project.stages
    nodes, edges = dvc_dag_edges(flow_project.root)
    assert len(stages) == len(set(stages)) and set(stages) == nodes
    assert edges, "dvc.yaml has stages that depend on each other"
    for upstream, downstream in edges:
        assert stages.index(upstream) < stages.index(downstream), (upstream, downstream)
    assert {(u, s) for s, ups in stage_graph(flow_project.root) for u in ups} == edges  # the tasks' wait_for


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
    for stage in flow_project.stages:  # every stage ran, its output in the log
        assert f"Running stage '{stage}'" in flow_project.first.stdout, stage
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

    from pipeline.orchestration.flows import benchmark

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
    params = yaml.safe_load((flow_project.root / "params.yaml").read_text())
    n_variants, n_methods = len(params["variants"]), len(params["calibration"]["methods"])
    n_shifted = len((params.get("shift") or {}).get("seeds", []))  # shift: variant x shift.seeds (docs/shift.md)
    assert sorted(roles) == (["child"] * 2 * n_variants + ["method"] * (n_variants * n_methods)
                             + ["parent"] + ["shift"] * (n_variants * n_shifted))  # children: variant x {conventional, calibrated}; methods: certify


def test_unreachable_tracking_server_fails_clearly_and_keeps_outputs(flow_project: FlowProject,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.orchestration.flows import benchmark

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
    from pipeline.orchestration.dvc_commands import StageFailed
    from pipeline.orchestration.flows import benchmark

    root = micro_project(tmp_path / "micro", "python -c \"import sys; sys.exit('boom: bad input')\"")
    state = benchmark(root=str(root), track=False, return_state=True)
    assert state.is_failed()
    tasks = task_runs_of(state.state_details.flow_run_id)
    assert tasks["ok"].is_completed() and tasks["bad"].is_failed()
    assert "summary" not in tasks
    with pytest.raises(StageFailed, match=r"stage bad failed .*\n(.|\n)*boom: bad input"):
        state.result()


def test_bad_parameters_fail_before_any_dvc_command(tmp_path: Path, prefect_api: str) -> None:
    import yaml

    from pipeline.orchestration.flows import benchmark_experiment

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


def cli_project(root: Path, edit: tuple[str, str] | None = None) -> Path:
    """A project with no stages and the repo's params.yaml, one line of it replaced by ``edit``."""
    root.mkdir(parents=True)
    (root / "dvc.yaml").write_text("stages: {}\n")
    text = (Path(__file__).resolve().parent.parent / "params.yaml").read_text()
    if edit:
        assert re.search(edit[0], text, flags=re.M), edit
        text = re.sub(edit[0], edit[1], text, count=1, flags=re.M)
    (root / "params.yaml").write_text(text)
    return root


def run_cli(root: Path, prefect_api: str, *args: str, command: str = "flows") -> tuple[int, str]:
    """`python -m pipeline <command> <args> --root <root>` with this repo's code; (exit status, stdout + stderr)."""
    env = {**scratch_env(Path(__file__).resolve().parent.parent), "PREFECT_API_URL": prefect_api}
    proc = subprocess.run([sys.executable, "-m", "pipeline", command, *args, "--root", str(root)],
                          cwd=Path(__file__).resolve().parent.parent, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    return proc.returncode, proc.stdout


def debug_log_of(output: str) -> Path:
    match = re.search(r"\(full log: ([^)]+)\)", output)
    assert match, output
    return Path(match.group(1))


@pytest.mark.parametrize(("edit", "args", "message"), [
    ((r"^(\s*)uplink_mbps: .*$", r"\1uplink_mbps: -5"), ["run", "--no-track"],
     "params.yaml: network.uplink_mbps = -5; allowed:"),
    ((r"^(\s*)uplink_mbps:", r"\1uplink_mbsp:"), ["run", "--no-track"],
     "params.yaml: network.uplink_mbsp is not a known key"),
    (None, ["experiment", "--no-track", "-S", "network.uplink_mbps=-5"],
     "params.yaml with -S network.uplink_mbps=-5: network.uplink_mbps = -5"),
], ids=["negative-uplink", "typo", "experiment-S"])
def test_cli_bad_params_error_printed_once_without_traceback(tmp_path: Path, prefect_api: str, edit, args,
                                                             message: str) -> None:
    root = cli_project(tmp_path / "p", edit)
    rc, output = run_cli(root, prefect_api, *args)
    assert rc == 1, output
    assert output.count(message) == 1, output
    assert "params.yaml: params.yaml" not in output
    assert "Traceback" not in output, output
    assert "Finished in state Failed" in output  # Prefect's own line stays, without the error again
    log = debug_log_of(output)
    assert log.is_relative_to(root / ".prefect") and "Traceback" in log.read_text()
    assert not (root / ".dvc").exists()  # nothing ran, not even the lock


def test_cli_busy_workspace_error_printed_once_without_traceback(tmp_path: Path, prefect_api: str) -> None:
    from pipeline.orchestration.lock import workspace_lock

    root = cli_project(tmp_path / "p")
    with workspace_lock(root, "flow benchmark (the test holds it)"):
        rc, output = run_cli(root, prefect_api, "run", "--no-track", "--wait", "1")
    assert rc == 1, output
    assert output.count("is busy: flow benchmark (the test holds it) (pid ") == 1, output
    assert output.count("DVC cannot run twice in one workspace") == 1, output
    assert "Traceback" not in output, output
    assert "Traceback" in debug_log_of(output).read_text()


def test_cli_failed_stage_error_printed_once_without_traceback(tmp_path: Path, prefect_api: str) -> None:
    root = micro_project(tmp_path / "micro", "python -c \"import sys; sys.exit('boom: bad input')\"")
    rc, output = run_cli(root, prefect_api, "run", "--no-track")
    assert rc == 1, output
    assert output.count("stage bad failed (exit status") == 1, output
    assert len(re.findall(r"- boom: bad input$", output, flags=re.M)) == 1, output  # streamed once, not repeated
    assert "Traceback" not in output, output


def test_sweep_cli_bad_point_error_printed_once_without_traceback(tmp_path: Path, prefect_api: str) -> None:
    root = cli_project(tmp_path / "p")
    params = (root / "params.yaml").read_text()
    rc, output = run_cli(root, prefect_api, "--uplink", "10", "-5", command="sweep")
    assert rc == 1, output
    assert output.count("network.uplink_mbps = -5.0; allowed:") == 1, output
    assert "python -m pipeline sweep: sweep point -S network.uplink_mbps=-5.0" in output
    assert "Traceback" not in output, output
    assert (root / "params.yaml").read_text() == params and not (root / ".dvc").exists()  # checked before any run
