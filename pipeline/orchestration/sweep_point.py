"""One sweep point, run by a Prefect worker in a workspace of its own (flow ``benchmark-sweep-point``).

The work-pool sweep (pipeline.orchestration.workpool) submits one flow run of this flow per point,
as a run of the deployment ``benchmark-sweep-point/eeoffload`` in the work pool (type ``process``).
Whichever worker picks it up runs, on its machine:

1. **Workspace.** ``<workdir>/<point>``: a ``git clone`` of the project (``repo``: a path or URL
   this machine can read) at commit ``rev``, made once (into a temporary folder, then renamed)
   and reused by a retry of the same point on this machine, so an interrupted training resumes
   from its epoch checkpoint (``data/checkpoints/<variant>_seed<k>.pt``). ``<workdir>`` is the
   worker's ``$EEOFFLOAD_SWEEP_WORKDIR`` (set by ``make workers``), else the ``workdir`` parameter.
2. **One writer.** An exclusive ``filelock`` on ``<workdir>/.locks/<point>.lock`` (``flock``: the
   kernel releases it when the holder dies) is held for the whole point: two runs of one point never
   write into the same workspace; the second waits up to ``lock_wait_s`` and then fails.
3. **Params.** ``params.yaml`` of ``rev`` with the point's ``overrides`` (``{"network.uplink_mbps":
   5, ...}``) written in and checked by the typed schema before any DVC command.
4. **DVC.** The remote ``sweep`` (``remote``: a directory, ``s3://...``; written to
   ``.dvc/config.local``, not to git) as default; ``dvc repro --pull`` copies the remote's run
   cache entries (entries only), and a stage whose deps, params and command match an entry is
   restored from the run cache, its outputs pulled from the remote,
   instead of being run (a point that only changes ``network.*`` trains nothing). Then ``dvc push
   --run-cache``: the outputs and the run cache entries go to the remote for the other points.
5. **Tracking.** pipeline.orchestration.tracking.log_pipeline_run(workspace, dvc_exp_name=<point>,
   uri=<tracking_uri>) (the shared MLflow server), unless ``tracking_uri`` is empty.
6. **Result.** The point's comparison rows (pipeline.orchestration.sweep.point_rows) and the stages
   it ran / restored, as a table artifact ``sweep-point-<point>`` on the Prefect server (the sweep
   gathers them from there: the workers need not share a disk with it) and as the flow's return value.

**Checkpoints in the remote** (pipeline.orchestration.cluster_checkpoints): before ``dvc repro``
the point pulls its epoch checkpoints from ``<remote>/checkpoints/<point>-<hash>/`` (a retry on
another machine resumes there), and while ``dvc repro`` runs it pushes them (throttled:
``checkpoint_push_s``; atomic); they are deleted from the remote when the point is done. The
worker's own remote options (credentials, keys: ``$EEOFFLOAD_SWEEP_REMOTE_OPTS``, a JSON object of
``dvc remote modify`` options such as ``{"user": "root", "keyfile": "..."}``) go to
``.dvc/config.local`` beside the URL; they belong to the machine, not to the sweep.

While it runs, a thread sets the Prefect variable ``sweep_hb_<flow run id>`` every
``heartbeat_s`` seconds: the sweep takes a run whose heartbeat stops (its worker or machine died)
as crashed and submits the point again.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock, Timeout
from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from pipeline.orchestration.cluster_checkpoints import CheckpointPusher, CheckpointStore, checkpoint_key, open_remote
from pipeline.orchestration.dvc_commands import command_failed, ran_stages
from pipeline.orchestration.settings import check_params, with_settings
from pipeline.orchestration.sweep import point_rows
from pipeline.tools.scratch import scratch_env

FLOW_NAME = "benchmark-sweep-point"
DEFAULT_WORKDIR = Path("build") / "sweep-workspaces"
WORKDIR_ENV = "EEOFFLOAD_SWEEP_WORKDIR"
REMOTE_OPTS_ENV = "EEOFFLOAD_SWEEP_REMOTE_OPTS"


def remote_options() -> dict[str, Any]:
    """This worker's options of the remote (``$EEOFFLOAD_SWEEP_REMOTE_OPTS``, JSON), {} if unset."""
    text = os.environ.get(REMOTE_OPTS_ENV, "").strip()
    try:
        opts = json.loads(text) if text else {}
    except json.JSONDecodeError as e:
        raise ValueError(f"${REMOTE_OPTS_ENV}: not a JSON object ({e}); e.g. '{{\"user\": \"root\"}}'") from None
    if not isinstance(opts, dict):
        raise ValueError(f"${REMOTE_OPTS_ENV}: not a JSON object; e.g. '{{\"user\": \"root\"}}'")
    return opts


def write_remote_config(ws: Path, remote: str, options: dict[str, Any]) -> None:
    """The remote ``sweep`` (url and ``options``) as the default, in ``.dvc/config.local``."""
    lines = ["[core]", "    remote = sweep", "['remote \"sweep\"']", f"    url = {remote}"]
    lines += [f"    {key} = {value}" for key, value in options.items()]
    (ws / ".dvc" / "config.local").write_text("\n".join(lines) + "\n")


def heartbeat_name(flow_run_id: str) -> str:
    return f"sweep_hb_{str(flow_run_id).replace('-', '_')}"


def artifact_key(point: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) for ``point``."""
    return "sweep-point-" + re.sub(r"[^a-z0-9-]+", "-", point.lower()).strip("-")


def workdir_of(workdir: str | None) -> Path:
    """Where this worker keeps its point workspaces: $EEOFFLOAD_SWEEP_WORKDIR, else ``workdir``,
    else build/sweep-workspaces under the current directory."""
    return Path(os.environ.get(WORKDIR_ENV) or workdir or DEFAULT_WORKDIR).resolve()


def run_cmd(cmd: list[str], cwd: Path, logger: Any, what: str) -> list[str]:
    """``cmd`` in ``cwd`` with the workspace's own code first (scratch_env), every line to the log."""
    logger.info("$ %s", " ".join(cmd[2:] if cmd[:2] == [sys.executable, "-m"] else cmd))
    env = scratch_env(cwd)
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1, errors="replace")
    lines: list[str] = []
    assert proc.stdout is not None
    for raw in proc.stdout:
        if line := raw.rstrip():
            lines.append(line)
            logger.info("%s", line)
    rc = proc.wait()
    if rc != 0:
        raise command_failed(what, rc, lines)
    return lines


def dvc(ws: Path, logger: Any, *args: str) -> list[str]:
    return run_cmd([sys.executable, "-m", "dvc", *args], ws, logger, f"dvc {args[0]} in {ws}")


def prepare_workspace(ws: Path, repo: str, rev: str, logger: Any) -> bool:
    """Clone ``repo`` at ``rev`` into ``ws`` unless a finished clone is there; True if it was."""
    if (ws / ".git").is_dir() and (ws / "dvc.yaml").is_file():
        logger.info("reusing the workspace %s (a retry of this point: checkpoints and outputs kept)", ws)
        return True
    tmp = ws.with_name(ws.name + ".cloning")
    shutil.rmtree(tmp, ignore_errors=True)
    if ws.exists():
        shutil.rmtree(ws)  # an unfinished workspace (no dvc.yaml): start it again
    run_cmd(["git", "clone", "-q", "--no-checkout", repo, str(tmp)], ws.parent, logger, f"git clone {repo}")
    run_cmd(["git", "checkout", "-q", rev], tmp, logger, f"git checkout {rev}")
    tmp.rename(ws)
    return False


def apply_overrides(ws: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """params.yaml of the checked-out commit with ``overrides`` (dotted keys) written in; checked."""
    subprocess.run(["git", "checkout", "-q", "--", "params.yaml"], cwd=ws, check=True)
    params = with_settings(yaml.safe_load((ws / "params.yaml").read_text()), overrides)
    check_params(params, f"sweep point {json.dumps(overrides, sort_keys=True)}")
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


class Heartbeat:
    """Sets the Prefect variable heartbeat_name(<flow run>) every ``every_s`` seconds while alive."""

    def __init__(self, flow_run_id: str | None, every_s: float) -> None:
        self.name = heartbeat_name(flow_run_id) if flow_run_id else None
        self.every_s = every_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="sweep-heartbeat")

    def _beat(self) -> None:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import VariableCreate, VariableUpdate

        with get_client(sync_client=True) as client:
            value = time.time()
            if client.read_variable_by_name(self.name) is None:
                client.create_variable(VariableCreate(name=self.name, value=value))
            else:
                client.update_variable(VariableUpdate(name=self.name, value=value))

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                self._beat()
            except Exception:  # noqa: BLE001 - a missed beat is not an error of the point
                pass
            self.stop.wait(self.every_s)

    def __enter__(self) -> Heartbeat:
        if self.name:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()


@flow(name=FLOW_NAME, log_prints=True, flow_run_name="{point}")
def sweep_point_flow(point: str, repo: str, rev: str, overrides: dict[str, Any], remote: str,
                     tracking_uri: str = "", variant: str = "one_branch", p_tar: list[float] | None = None,
                     t_tar_ms: list[float] | None = None, workdir: str | None = None, lock_wait_s: float = 600.0,
                     heartbeat_s: float = 10.0, log_model: bool = True,
                     checkpoint_push_s: float = 60.0) -> dict[str, Any]:
    """One sweep point in its own workspace on this worker (module docstring): clone, overrides,
    ``dvc repro --pull`` over the shared run cache, ``dvc push --run-cache``, MLflow, result artifact."""
    from prefect.runtime import flow_run

    logger = get_run_logger()
    base = workdir_of(workdir)
    ws = base / point
    (base / ".locks").mkdir(parents=True, exist_ok=True)
    lock = FileLock(base / ".locks" / f"{point}.lock")
    with Heartbeat(flow_run.id, heartbeat_s):
        try:
            lock.acquire(timeout=lock_wait_s, poll_interval=1.0)
        except Timeout:
            raise RuntimeError(f"sweep point {point}: its workspace {ws} is held by another run of this point "
                               f"for over {lock_wait_s:.0f} s; nothing was changed") from None
        try:
            started = time.time()
            reused = prepare_workspace(ws, repo, rev, logger)
            params = apply_overrides(ws, overrides)
            options = remote_options()
            write_remote_config(ws, remote, options)
            store = None
            if checkpoint_push_s >= 0:
                store = CheckpointStore(*open_remote(remote, options), checkpoint_key(point, overrides, rev))
                if pulled := store.pull(ws):
                    logger.info("pulled checkpoint(s) %s of an earlier run of this point", ", ".join(pulled))
            with CheckpointPusher(store, ws, checkpoint_push_s, log=logger.info):
                lines = dvc(ws, logger, "repro", "--pull")
            ran = ran_stages(lines)
            restored = [m.group(1) for line in lines
                        if (m := re.match(r"Stage '([^']+)' is cached - skipping run", line))]
            resumed = [line for line in lines if line.startswith("resuming ")]
            dvc(ws, logger, "push", "--run-cache")
            if store is not None:
                store.clear()
            parent_id = None
            if tracking_uri:
                from pipeline.orchestration.tracking import log_pipeline_run

                parent_id = log_pipeline_run(ws, dvc_exp_name=point, uri=tracking_uri, log_model=log_model,
                                             log=logger.info)
            placement = list(params["variants"][variant]["branches"])
            rows = point_rows(ws, point, float(params["network"]["uplink_mbps"]), variant, placement,
                              [float(p) for p in (p_tar or [0.85])], [float(t) for t in (t_tar_ms or [50.0, 100.0])])
            rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()} for row in rows]
            result = {"point": point, "workspace": str(ws), "host": os.uname().nodename, "reused_workspace": reused,
                      "stages_ran": ran, "stages_restored": restored,
                      "resumed_training": resumed, "mlflow_parent_run": parent_id,
                      "seconds": round(time.time() - started, 1), "rows": rows}
            create_table_artifact(key=artifact_key(point), table=rows,
                                  description=json.dumps({k: v for k, v in result.items() if k != "rows"}))
            logger.info("point %s done in %s: ran %s; restored from the run cache %s", point, ws,
                        ", ".join(ran) or "nothing", ", ".join(restored) or "nothing")
            return result
        finally:
            lock.release()
