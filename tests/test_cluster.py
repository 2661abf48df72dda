"""The scale-out cluster on one machine (pipeline.orchestration.cluster), hosts really apart.

One cluster for the module: PostgreSQL behind a real Prefect server and a real MLflow tracking
server (namespace ``head``), sshd as the DVC remote and git server (``store``), two workers each in
its own namespace and working directory (``w1``, ``w2``). A 4-point tiny sweep in which the worker
training a point is SIGKILLed (with its flow-run process: the machine is gone) once that training
has pushed a checkpoint: the point completes on the other worker, resuming from the pushed
checkpoint. Then a sweep cancelled by Ctrl-C during a training: no flow run left open, no worker
process left, nothing partial in the remote.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from pipeline.tools.scratch import scratch_env
from tests.conftest import ROOT, run_stage
from tests.test_sweep_workers import kill_tree, sweep_project

pytestmark = pytest.mark.integration
pytest.importorskip("prefect")
pytest.importorskip("dvc_ssh")

NAME, SUBNET = "eet", "10.78.0"


def _why_not() -> str:
    from pipeline.orchestration.cluster_hosts import missing_requirements
    from pipeline.orchestration.cluster_services import missing_packages

    return "; ".join(missing_requirements() + [f"Debian package {p} missing" for p in missing_packages()])


def cluster_env() -> dict[str, str]:
    return {"EEOFFLOAD_CLUSTER_NAME": NAME, "EEOFFLOAD_CLUSTER_SUBNET": SUBNET,
            "EEOFFLOAD_CLUSTER_DIR": str(ROOT / "build" / "test-cluster"), "PREFECT_WORKER_QUERY_SECONDS": "2"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    if why := _why_not():
        pytest.skip(f"no cluster here: {why}")
    from pipeline.orchestration import cluster as cl

    old = {k: os.environ.get(k) for k in cluster_env()}
    os.environ.update(cluster_env())
    s = cl.services_from_env()
    cl.down(s)  # what an interrupted earlier run left
    shutil.rmtree(s.base, ignore_errors=True)  # the base is under build/: postgres must reach it
    try:
        cl.up(s, workers=2, code_root=ROOT)
        yield s
    finally:
        cl.down(s)
        shutil.rmtree(s.base, ignore_errors=True)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def start_sweep(root: Path, prefix: str, *extra: str) -> subprocess.Popen:
    env = {**scratch_env(ROOT), **cluster_env()}
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "cluster", "sweep", "--uplink", "5", "18.8", "--branches", "relu1",
         "relu2", "--variant", "one_branch", "--p-tar", "0.85", "--t-tar", "50", "--prefix", prefix,
         "--stale", "30", "--timeout", "1500", "--no-model", "--checkpoint-push", "2", *extra],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)


def in_host(s, host: str, ws: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A DVC command in point workspace ``ws`` on ``host``, with that host's environment."""
    env = {**s.worker_env(host, ROOT), **scratch_env(ws)}
    env["PYTHONPATH"] = os.pathsep.join([str(ws / "src"), str(ws)])
    return subprocess.run(s.net.exec_argv(host, [sys.executable, "-m", "dvc", *args]), cwd=ws, env=env,
                          text=True, capture_output=True, check=False)


def remote_is_whole(remote: Path) -> None:
    """No partial upload in the remote: no ``.tmp-`` file, every object's content matches its name."""
    files = [p for p in remote.rglob("*") if p.is_file()]
    assert not [p for p in files if ".tmp-" in p.name or p.name.endswith(".tmp")], files
    for p in (remote / "files" / "md5").rglob("*"):
        if p.is_file():
            name = (p.parent.name + p.name).removesuffix(".dir")
            assert hashlib.md5(p.read_bytes()).hexdigest() == name, p  # noqa: S324


def host_of(s, ws: Path) -> str:
    return ws.relative_to(s.base / "hosts").parts[0]


def test_lost_worker_point_completes_elsewhere(cluster, tmp_path: Path, tiny_zip: Path) -> None:
    import torch
    from mlflow import MlflowClient

    s = cluster
    root = sweep_project(tmp_path / "project", tiny_zip, {"trunk_epochs": 6, "joint_epochs": 6,
                                                          "snapshot_epochs": [1, 12]})
    cli = start_sweep(root, "lost")
    killed_ws, deadline = None, time.monotonic() + 900
    while killed_ws is None and cli.poll() is None and time.monotonic() < deadline:
        pushed = {p.parts[-2] for p in (s.remote_path / "checkpoints").glob("*/*.pt")}
        for ckpt in s.base.glob("hosts/w*/points/*/data/checkpoints/*.pt"):
            ws = ckpt.parents[2]
            if not any(k.startswith(ws.name + "-") for k in pushed):
                continue
            info = s.running(host_of(s, ws))
            if info:
                kill_tree(info["pid"], signal.SIGKILL)  # the worker, its flow run, DVC, the training
                killed_ws = ws
                break
        time.sleep(0.2)
    if killed_ws is None:
        cli.kill()
        pytest.fail("no pushed training checkpoint seen to kill a worker at; sweep output:\n"
                    + (cli.communicate()[0] or "")[-6000:])
    out, _ = cli.communicate(timeout=1500)
    assert cli.returncode == 0, out[-6000:]
    summary = json.loads((root / "reports" / "sweeps" / "lost" / "points.json").read_text())
    assert summary["failed"] == {}, (summary["failed"], out[-6000:])
    points = {p["name"]: p for p in summary["points"]}
    assert len(points) == 4 and all(p["status"] == "completed" for p in points.values())
    lost = points[killed_ws.name]
    done_on = host_of(s, Path(lost["workspace"]))
    assert done_on != host_of(s, killed_ws) and len(lost["run_ids"]) >= 2, lost
    assert lost["resumed_training"], lost  # "resuming one_branch seed 0 from ... after epoch N"
    assert "pulled checkpoint" in (s.state / f"{done_on}.log").read_text(errors="replace")
    table = pd.read_csv(summary["comparison"])
    assert table["experiment"].nunique() == 4
    assert len(table.drop_duplicates(["branches", "uplink_mbps", "p_tar", "t_tar_ms"])) == 4
    client = MlflowClient(s.tracking_uri)
    exp = client.get_experiment_by_name("eeoffload-benchmark")
    parents = client.search_runs([exp.experiment_id], filter_string="tags.eeoffload_role = 'parent'")
    assert set(points) <= {r.data.tags["dvc_exp_name"] for r in parents if r.info.status == "FINISHED"}
    for p in points.values():
        ws = Path(p["workspace"])
        cloud = in_host(s, host_of(s, ws), ws, "status", "--cloud")
        assert cloud.returncode == 0 and "in sync" in cloud.stdout, (ws, cloud.stdout, cloud.stderr)
    remote_is_whole(s.remote_path)
    assert not list((s.remote_path / "checkpoints").glob("*/*"))  # cleared when the points finished
    # the resumed weights equal an uninterrupted training of the same params (CPU)
    ref = sweep_project(tmp_path / "reference", tiny_zip)
    shutil.copy2(Path(lost["workspace"]) / "params.yaml", ref / "params.yaml")
    for stage in (["prepare"], ["train", "one_branch", "0"]):
        proc = run_stage(ref, *stage)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    a, b = (torch.load(r / "data/models/one_branch/seed0.pt", map_location="cpu", weights_only=True)["state_dict"]
            for r in (ref, Path(lost["workspace"])))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cancel_stops_runs_and_workers(cluster, tmp_path: Path, tiny_zip: Path) -> None:
    from prefect.client.orchestration import get_client

    from pipeline.orchestration import cluster as cl
    from pipeline.orchestration.cluster_hosts import pids_in
    from pipeline.orchestration.sweep_cancel import open_runs

    s = cluster
    cl.up(s, workers=2, code_root=ROOT)  # the worker the first test killed comes back
    root = sweep_project(tmp_path / "project", tiny_zip, {"trunk_epochs": 20, "joint_epochs": 20,
                                                          "snapshot_epochs": [1, 40]})
    # other epochs than the first test: nothing of this training is in the run cache to restore
    cli = start_sweep(root, "cancel")
    deadline = time.monotonic() + 600
    while cli.poll() is None and time.monotonic() < deadline:
        if list(s.base.glob("hosts/w*/points/cancel-*/data/checkpoints/*.pt")):
            break
        time.sleep(0.2)
    if cli.poll() is not None or time.monotonic() >= deadline:
        cli.kill()
        pytest.fail("the sweep ended (or no training started) before it could be cancelled; its output:\n"
                    + (cli.communicate()[0] or "")[-6000:])
    os.killpg(cli.pid, signal.SIGINT)  # Ctrl-C in its terminal
    out, _ = cli.communicate(timeout=300)
    assert cli.returncode == 130, out[-6000:]
    assert "cancelling its flow runs" in out and "partial file(s) removed" in out, out[-6000:]
    with cl.on_cluster(s), get_client(sync_client=True) as client:
        assert open_runs(client, "cancel") == []
    os.environ.pop("PREFECT_API_URL", None)
    for host in ("w1", "w2"):
        assert s.running(host) is None
        assert pids_in(s.net.ns(host)) == [], host  # no worker, flow run, DVC or training process
    remote_is_whole(s.remote_path)
