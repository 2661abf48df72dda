"""Start the cloud and edge processes over a shaped link, collect the records, clean up always.

:func:`run_pair` is the whole measurement: it picks the link (two network namespaces joined by a
veth pair and shaped by ``tc``, or loopback with the rate applied in the sender where namespaces
are not permitted), starts the cloud process, checks the throughput, runs the edge process for
the constant-rate passes and, with a trace, once more while the rate follows the trace, and
returns the per-sample records with a label of the method used.

Every child dies with the stage (``PR_SET_PDEATHSIG``), a reaper process removes namespaces and
leftovers if the stage is killed outright, and the ``finally`` blocks do it on every other exit.
Only 127.0.0.1 and this run's own namespaces are ever addressed; every wait has a bound.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import eeoffload
import pipeline
from eeoffload import wire
from eeoffload.link_model import Trace, constant_trace
from pipeline.link import netns
from pipeline.link.reaper import PIDS_FILE

CLOUD_PORT = 8000  # inside the cloud namespace (private to this run)
STOP_GRACE_S = 3.0


class LinkError(RuntimeError):
    """The measurement could not be done (one line naming the cause)."""


@dataclass(frozen=True)
class LinkConfig:
    method: str = "auto"  # auto | netns | loopback
    uplink_mbps: float = 18.8
    rtt_ms: float = 0.0
    loss_pct: float = 0.0
    connect_timeout_s: float = 60.0
    request_timeout_s: float = 30.0
    max_seconds: float = 600.0
    throughput_seconds: float = 1.0  # length of the throughput check at the constant rate


@dataclass(frozen=True)
class Job:
    model_path: Path
    branches: list[str]
    images: dict[str, np.ndarray]  # images, labels, sample_id of the sample
    temperatures: dict[str, list[float]]  # calibration name -> T per exit 1..n
    p_tar: float = 0.85
    encoding: str = "fp32"
    compressor: str = "none"
    edge_threads: int = 1
    cloud_threads: int = 1
    trace: Trace | None = None
    trace_calibrations: tuple[str, ...] = ("calibrated",)


@dataclass
class Result:
    records: pd.DataFrame
    method: dict[str, Any]
    throughput: dict[str, Any] = field(default_factory=dict)


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the stage dies (Linux prctl PR_SET_PDEATHSIG = 1)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def _env() -> dict[str, str]:
    roots = {str(Path(m.__file__).resolve().parent.parent) for m in (pipeline, eeoffload)}  # type: ignore[arg-type]
    old = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*sorted(roots), *([old] if old else [])])}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _last_error(path: Path) -> str:
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()] if path.exists() else []
    errors = [ln for ln in lines if ln.startswith("error:")]
    line = (errors or lines or ["(no output)"])[-1]
    return line.removeprefix("error: ")


class Run:
    """The processes and namespaces of one measurement, torn down by :meth:`close`."""

    def __init__(self, work: Path, config: LinkConfig) -> None:
        self.work, self.config = work, config
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ns: netns.Namespaces | None = None
        self.namespaces: list[str] = []  # every name this run may create, deleted on close
        self.reaper: subprocess.Popen[bytes] | None = None

    def spawn(self, prefix: list[str], module: str, cfg: dict[str, Any], name: str) -> subprocess.Popen[bytes]:
        path = self.work / f"{name}.json"
        path.write_text(json.dumps(cfg))
        log = open(self.work / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([*prefix, sys.executable, "-m", module, str(path)], env=_env(), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        log.close()
        with open(self.work / PIDS_FILE, "a", encoding="utf-8") as f:
            f.write(f"{proc.pid}\n")
        self.procs.append(proc)
        return proc

    def start_reaper(self, namespaces: list[str]) -> None:
        self.reaper = subprocess.Popen(
            [sys.executable, "-m", "pipeline.link.reaper", str(os.getpid()), "--netns", *namespaces,
             "--dir", str(self.work)], env=_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        end = time.monotonic() + STOP_GRACE_S
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for name in self.namespaces:  # also those of a set-up that failed half-way
            netns.delete_namespace(name)
        shutil.rmtree(self.work, ignore_errors=True)
        if self.reaper is not None and self.reaper.poll() is None:
            self.reaper.terminate()
            self.reaper.wait()


def choose_method(method: str) -> tuple[str, str]:
    """(netns | loopback, reason for a fallback or "")."""
    if method == "loopback":
        return "loopback", "link.method = loopback"
    ok, why = netns.namespaces_permitted()
    if ok:
        return "netns", ""
    if method == "netns":
        raise LinkError(f"link.method = netns but network namespaces are not permitted here: {why}")
    return "loopback", why


class TraceReplay(threading.Thread):
    """Re-sets the tbf rate at each trace row (cyclic) from ``t0`` (``time.time()``) on."""

    def __init__(self, ns: netns.Namespaces, trace: Trace, t0: float) -> None:
        super().__init__(daemon=True)
        self.ns, self.trace, self.t0, self.stop = ns, trace, t0, threading.Event()
        self.error: str = ""

    def run(self) -> None:
        k = 0
        while not self.stop.is_set():
            for start, mbps in zip(self.trace.time_s, self.trace.mbps):
                due = self.t0 + k * self.trace.period_s + start
                if self.stop.wait(max(0.0, due - time.time())):
                    return
                try:
                    netns.set_rate(self.ns, float(mbps))
                except (netns.LinkSetupError, subprocess.TimeoutExpired) as e:
                    self.error = str(e)
                    return
            k += 1


def _edge(run: Run, prefix: list[str], base: dict[str, Any], extra: dict[str, Any], name: str, cloud: Any) -> Path:
    out = run.work / f"{name}.out"
    proc = run.spawn(prefix, "pipeline.link.edge", {**base, **extra, "out_path": str(out)}, name)
    limit = run.config.max_seconds + run.config.connect_timeout_s + 30
    end = time.monotonic() + limit
    while proc.poll() is None:  # also watch the cloud: a dead cloud is reported at once
        if cloud.poll() is not None or time.monotonic() > end:
            proc.kill()
            proc.wait()
            break
        time.sleep(0.05)
    if cloud.poll() is not None:
        raise LinkError(f"cloud process exited with status {cloud.returncode}: {_last_error(run.work / 'cloud.log')}")
    if proc.returncode == -signal.SIGKILL:
        raise LinkError(f"edge process did not finish within {limit:g} s")
    if proc.returncode != 0:
        raise LinkError(_last_error(run.work / f"{name}.log"))
    return out


def run_pair(job: Job, config: LinkConfig) -> Result:
    """The measurement (module docstring); LinkError with one line on any failure."""
    try:
        wire.check_encoding(job.encoding, job.compressor)
    except wire.WireError as e:
        raise LinkError(f"link.encoding: {e}") from None
    method, why = choose_method(config.method)
    if method == "netns":
        netns.sweep_stale()
    work = Path(tempfile.mkdtemp(prefix="eeo-link-"))
    run = Run(work, config)
    tag = f"eeo{os.getpid()}"
    try:
        run.namespaces = [f"{tag}e", f"{tag}c", f"{tag}p"] if method == "netns" else []
        run.start_reaper(run.namespaces)
        return _measure(run, job, config, method, why, tag)
    finally:
        run.close()


def _measure(run: Run, job: Job, config: LinkConfig, method: str, why: str, tag: str) -> Result:
    np.savez(run.work / "sample.npz", **job.images)
    delay = "none" if not (config.rtt_ms or config.loss_pct) else "application"
    if method == "netns":
        run.ns = netns.create(tag)
        if delay != "none" and netns.netem_available():
            run.ns = netns.add_shaping(run.ns, config.uplink_mbps, config.rtt_ms / 2, config.loss_pct)
            delay = "netem"
        else:
            run.ns = netns.add_shaping(run.ns, config.uplink_mbps)
        edge_prefix, cloud_prefix = run.ns.exec_prefix(run.ns.edge), run.ns.exec_prefix(run.ns.cloud)
        host, port = netns.CLOUD_IP, CLOUD_PORT
    else:
        edge_prefix, cloud_prefix, host, port = [], [], "127.0.0.1", _free_port()
    if delay == "application" and config.loss_pct:
        raise LinkError(f"link.loss_pct = {config.loss_pct:g} needs netem, which this kernel lacks; allowed here: 0")
    cloud_cfg = {"model_path": str(job.model_path), "branches": job.branches, "threads": job.cloud_threads,
                 "host": host, "port": port}
    cloud = run.spawn(cloud_prefix, "pipeline.link.cloud", cloud_cfg, "cloud")
    pacing = None if method == "netns" else constant_trace(config.uplink_mbps)
    t0 = time.time()
    base = {"url": f"http://{host}:{port}", "connect_timeout_s": config.connect_timeout_s,
            "request_timeout_s": config.request_timeout_s, "deadline_s": config.max_seconds,
            "model_path": str(job.model_path), "branches": job.branches, "threads": job.edge_threads,
            "images_path": str(run.work / "sample.npz"), "p_tar": job.p_tar, "encoding": job.encoding,
            "compressor": job.compressor, "delay_ms": config.rtt_ms / 2 if delay == "application" else 0.0,
            "trace_t0": t0, "pacing": _trace_json(pacing)}
    nbytes = int(config.uplink_mbps * 1e6 / 8 * config.throughput_seconds)
    out = _edge(run, edge_prefix, base, {"mode": "throughput", "throughput_bytes": nbytes}, "throughput", cloud)
    throughput = json.loads(out.read_text()) | {"set_mbps": config.uplink_mbps}
    passes = [{"calibration": c, "temperatures": t, "uplink": "constant"} for c, t in job.temperatures.items()]
    tables = [pd.read_parquet(_edge(run, edge_prefix, base, {"mode": "measure", "passes": passes}, "edge", cloud))]
    if job.trace is not None:
        tables.append(_trace_pass(run, job, base, edge_prefix, method, cloud))
    label = {"link": "netns+veth, tc tbf" if method == "netns" else "loopback, rate applied in the sender",
             "delay": delay, "fallback_reason": why, "encoding": job.encoding, "compressor": job.compressor,
             "edge_threads": job.edge_threads, "cloud_threads": job.cloud_threads}
    return Result(pd.concat(tables, ignore_index=True), label, throughput)


def _trace_json(trace: Trace | None) -> dict[str, list[float]] | None:
    return None if trace is None else {"time_s": trace.time_s.tolist(), "mbps": trace.mbps.tolist()}


def _trace_pass(run: Run, job: Job, base: dict[str, Any], prefix: list[str], method: str, cloud: Any) -> pd.DataFrame:
    assert job.trace is not None
    passes = [{"calibration": c, "temperatures": job.temperatures[c], "uplink": "trace"}
              for c in job.trace_calibrations]
    t0 = time.time() + 0.5
    cfg = {**base, "mode": "measure", "passes": passes, "trace_t0": t0}
    if method != "netns":
        return pd.read_parquet(_edge(run, prefix, base, cfg | {"pacing": _trace_json(job.trace)}, "edge_trace", cloud))
    assert run.ns is not None
    replay = TraceReplay(run.ns, job.trace, t0)
    replay.start()
    try:
        table = pd.read_parquet(_edge(run, prefix, base, cfg, "edge_trace", cloud))
    finally:
        replay.stop.set()
        replay.join()
    if replay.error:
        raise LinkError(f"trace replay: {replay.error}")
    return table
