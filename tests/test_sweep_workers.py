"""The work-pool sweep (pipeline.orchestration.workpool) over real servers on this machine.

A real Prefect server (prefect_test_harness, as in test_flows.py), a real ``mlflow server`` over
SQLite on a free 127.0.0.1 port, a local directory as DVC remote, and two ``prefect worker start
--type process`` workers (pipeline.orchestration.scaleout). The project is a scratch copy of this
one on the tiny archive (one variant, one training seed). A sweep of 2 uplink rates x 2 branch
placements is 4 flow runs of ``benchmark-sweep-point``; then a second sweep in which one worker is
killed (with its flow-run process) in the middle of a training: the point is resubmitted, resumes
from its epoch checkpoint in the same workspace, and the sweep completes with all 4 points.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.tools.scratch import make_scratch_project, scratch_env
from tests.conftest import ROOT, TINY_PARAMS

pytestmark = pytest.mark.integration

prefect = pytest.importorskip("prefect")

UPLINK = [5.0, 18.8]
PLACEMENTS = [["relu1"], ["relu2"]]


@dataclass
class Servers:
    api_url: str
    tracking_uri: str
    base: Path


def sweep_project(dest: Path, archive: Path, train: dict | None = None) -> Path:
    """A git + DVC scratch project on the tiny archive with one variant (one_branch) and one seed."""
    overrides = {**TINY_PARAMS, "data": {**TINY_PARAMS["data"], "archive": str(archive)},
                 "train": {**TINY_PARAMS["train"], "seeds": [0], **(train or {})}}
    root = make_scratch_project(dest, overrides)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["variants"] = {"one_branch": params["variants"]["one_branch"]}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "commit", "-qam", "one variant, one seed"], cwd=root, check=True, capture_output=True)
    return root


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from pipeline.orchestration import scaleout

    base = tmp_path_factory.mktemp("sweep-workers")
    os.environ["EEOFFLOAD_SCALEOUT_STATE"] = str(base / "state")
    os.environ.setdefault("PREFECT_WORKER_QUERY_SECONDS", "2")
    with prefect_test_harness(server_startup_timeout=int(os.environ.get("PREFECT_SERVER_API_STARTUP_TIMEOUT", 180))):
        proc, url = scaleout.start_tracking_server("127.0.0.1", scaleout.free_port(),
                                                   f"sqlite:///{base / 'mlflow.db'}", str(base / "mlartifacts"))
        try:
            yield Servers(PREFECT_API_URL.value(), url, base)
        finally:
            from pipeline.orchestration.processes import terminate_group

            terminate_group(proc.pid, 30, alive=lambda: proc.poll() is None)
            proc.wait(timeout=30)
            os.environ.pop("EEOFFLOAD_SCALEOUT_STATE", None)


@pytest.fixture
def workers(servers: Servers, tmp_path: Path) -> Iterator[tuple[dict[str, subprocess.Popen], Path]]:
    """Two process workers of the pool on this machine, point workspaces under tmp_path/ws."""
    from pipeline.orchestration import scaleout

    workdir = tmp_path / "ws"
    env_home = tmp_path / "prefect-home"
    env_home.mkdir()
    old_home = os.environ.get("PREFECT_HOME")
    os.environ["PREFECT_HOME"] = str(env_home)  # the workers' own Prefect home
    try:
        procs = {f"w{i}": scaleout.start_worker(f"{tmp_path.name}-w{i}", servers.api_url, workdir) for i in (1, 2)}
    finally:
        if old_home is None:
            os.environ.pop("PREFECT_HOME", None)
        else:
            os.environ["PREFECT_HOME"] = old_home
    try:
        yield procs, workdir
    finally:
        for proc in procs.values():
            kill_tree(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                kill_tree(proc.pid, signal.SIGKILL)


def kill_tree(pid: int, sig: int) -> list[int]:
    """Signal ``pid`` and every process below it (the worker, its flow-run process, DVC, the stage)."""
    import psutil

    try:
        parent = psutil.Process(pid)
        procs = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        return []
    for p in procs:
        try:
            p.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    return [p.pid for p in procs]


def dvc_out(ws: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=ws, env=scratch_env(ws), text=True,
                          capture_output=True, check=False)


def check_points(summary: dict, workdir: Path, remote: Path, tracking_uri: str, prefix: str) -> list[dict]:
    """Every point completed in its own workspace, in sync with the remote, logged to MLflow; the
    gathered table has one row per point."""
    from mlflow import MlflowClient

    assert summary["failed"] == {}, summary["failed"]
    points = summary["points"]
    assert len(points) == 4 and all(p["status"] == "completed" for p in points)
    workspaces = {Path(p["workspace"]) for p in points}
    assert len(workspaces) == 4 and all(ws.parent == workdir.resolve() for ws in workspaces)
    assert not list(workdir.glob("*.cloning"))
    for ws in workspaces:
        status = dvc_out(ws, "status")
        assert status.returncode == 0 and "up to date" in status.stdout, (ws, status.stdout, status.stderr)
        cloud = dvc_out(ws, "status", "--cloud")  # every output of the point is in the remote
        assert cloud.returncode == 0 and "in sync" in cloud.stdout, (ws, cloud.stdout, cloud.stderr)
        assert not list((ws / "data").glob("checkpoints/*.pt"))
    assert (remote / "runs").is_dir() and (remote / "files" / "md5").is_dir()
    table = pd.read_csv(Path(summary["comparison"]))
    per_point = table.pivot_table(index=["branches", "uplink_mbps", "p_tar", "t_tar_ms"], columns="calibration",
                                  values="missed_deadline").reset_index()
    assert len(per_point) == 4 and table["experiment"].nunique() == 4
    assert (Path(summary["comparison"]).parent / "missed_deadline_vs_uplink.png").is_file()
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("eeoffload-benchmark")
    parents = client.search_runs([exp.experiment_id], filter_string="tags.eeoffload_role = 'parent'")
    logged = {r.data.tags["dvc_exp_name"] for r in parents if r.info.status == "FINISHED"}
    assert {p["name"] for p in points} <= logged
    for p in points:
        children = client.search_runs([exp.experiment_id], filter_string=(
            f"tags.eeoffload_role = 'child' and tags.dvc_exp_name = '{p['name']}'"))
        assert len(children) == 2 and all("p_device/p0.85" in c.data.metrics for c in children), p["name"]
    return points


def test_four_points_over_two_workers(servers: Servers, workers, tmp_path: Path, tiny_zip: Path) -> None:
    from pipeline.orchestration.workpool import sweep_workers

    _, workdir = workers
    root = sweep_project(tmp_path / "project", tiny_zip)
    remote = tmp_path / "remote"
    state = sweep_workers(uplink_mbps=UPLINK, branch_placements=PLACEMENTS, variant="one_branch", p_tar=[0.85],
                          t_tar_ms=[50.0], prefix="four", remote=str(remote), tracking_uri=servers.tracking_uri,
                          stale_s=60, timeout_s=1800, log_model=False, root=str(root), return_state=True)
    assert state.is_completed(), state.message
    points = check_points(state.result(), workdir, remote, servers.tracking_uri, "four")
    by_name = {p["name"]: p for p in points}
    for placement in ("relu1", "relu2"):  # the second uplink rate of a placement trains nothing
        first, second = by_name[f"four-u5-{placement}"], by_name[f"four-u18_8-{placement}"]
        assert "train@one_branch-0" in first["stages_ran"]
        assert not [s for s in second["stages_ran"] if s.split("@")[0] in ("prepare", "train", "logits", "calibrate")]
        assert "train@one_branch-0" in second["stages_restored"], second
    assert len({p["host"] for p in points}) == 1


def test_killed_worker_point_is_retried_and_resumes(servers: Servers, workers, tmp_path: Path,
                                                    tiny_zip: Path) -> None:
    import psutil

    procs, workdir = workers
    # longer training, so that the kill lands between two epochs of a training
    root = sweep_project(tmp_path / "project", tiny_zip, {"trunk_epochs": 6, "joint_epochs": 6,
                                                          "snapshot_epochs": [1, 12]})
    remote = tmp_path / "remote"
    env = {**scratch_env(ROOT), "PREFECT_API_URL": servers.api_url}
    cli = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "workpool", "sweep", "--uplink", *map(str, UPLINK),
         "--branches", "relu1", "relu2", "--variant", "one_branch", "--p-tar", "0.85", "--t-tar", "50",
         "--prefix", "fault", "--remote", str(remote), "--tracking-uri", servers.tracking_uri, "--stale", "30",
         "--timeout", "1800", "--no-model", "--root", str(root)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed_ws = None
    deadline = time.monotonic() + 900
    while killed_ws is None and cli.poll() is None and time.monotonic() < deadline:
        for ckpt in workdir.glob("*/data/checkpoints/*.pt"):
            ws = ckpt.parents[2]
            for proc in procs.values():
                try:
                    tree = psutil.Process(proc.pid).children(recursive=True)
                except psutil.NoSuchProcess:
                    continue
                if any(_cwd(p) == ws for p in tree):
                    kill_tree(proc.pid, signal.SIGKILL)  # the worker and its point: a machine gone
                    killed_ws = ws
                    break
            if killed_ws:
                break
        time.sleep(0.2)
    assert killed_ws is not None, "no training checkpoint seen to kill a worker at"
    out, _ = cli.communicate(timeout=1800)
    assert cli.returncode == 0, out[-6000:]
    summary = json.loads((root / "reports" / "sweeps" / "fault" / "points.json").read_text())
    points = check_points(summary, workdir, remote, servers.tracking_uri, "fault")
    retried = [p for p in points if Path(p["workspace"]) == killed_ws]
    assert len(retried) == 1 and len(retried[0]["run_ids"]) >= 2, retried
    assert retried[0]["reused_workspace"] is True
    assert retried[0]["resumed_training"], retried[0]  # "resuming one_branch seed 0 from ... after epoch N"
    assert "submitting it again" in out or "retry after" in out


def _cwd(proc) -> Path | None:
    try:
        return Path(proc.cwd())
    except Exception:  # noqa: BLE001 - gone, or not ours
        return None
