"""Cancel a work-pool sweep: its submitted and running flow runs, then (by the caller) its workers.

The sweep (pipeline.orchestration.workpool) tags each point's flow run ``sweep:<prefix>``.
:func:`cancel_runs` sets every such run that has not finished to Cancelling (Running: the worker
that runs it kills its process) or Cancelled (Scheduled, Pending: no worker takes it any more),
waits until none is left running, and sets what is still not final after ``wait_s`` to Cancelled
by force (its worker is gone). :func:`check_remote` then removes what a killed point left half
written in the DVC remote: checkpoint uploads in progress (``.tmp-``) and objects whose content
does not match their name (an upload that was cut), which DVC would otherwise take as present.
"""

from __future__ import annotations

import hashlib
import posixpath
import signal
import time
from collections.abc import Callable
from typing import Any

FINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


def sweep_tag(prefix: str) -> str:
    return f"sweep:{prefix}"


def open_runs(client: Any, prefix: str) -> list[Any]:
    """The flow runs of sweep ``prefix`` that have not finished."""
    from prefect.client.schemas.filters import (FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType,
                                                FlowRunFilterTags)
    from prefect.client.schemas.objects import StateType

    return client.read_flow_runs(flow_run_filter=FlowRunFilter(
        tags=FlowRunFilterTags(all_=[sweep_tag(prefix)]),
        state=FlowRunFilterState(type=FlowRunFilterStateType(not_any_=[StateType(s) for s in FINAL]))))


def cancel_runs(prefix: str, wait_s: float = 60.0, say: Callable[[str], None] = print) -> list[str]:
    """Cancel every unfinished flow run of sweep ``prefix``; the names of those cancelled."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled, Cancelling

    names: list[str] = []
    with get_client(sync_client=True) as client:
        runs = open_runs(client, prefix)
        for run in runs:
            kind = run.state.type.value if run.state else "SCHEDULED"
            state = Cancelling(message="sweep cancelled") if kind == "RUNNING" else Cancelled(message="sweep cancelled")
            client.set_flow_run_state(run.id, state, force=True)
            names.append(run.name)
            say(f"flow run {run.name} ({kind.lower()}): {'cancelling' if kind == 'RUNNING' else 'cancelled'}")
        began = time.monotonic()
        while (left := open_runs(client, prefix)) and time.monotonic() - began < wait_s:
            time.sleep(1.0)
        for run in left:  # its worker did not answer: gone or stopped
            client.set_flow_run_state(run.id, Cancelled(message="sweep cancelled; its worker did not answer"),
                                      force=True)
            say(f"flow run {run.name}: set cancelled (no worker answered in {wait_s:.0f} s)")
    return names


def check_remote(url: str, options: dict[str, Any] | None = None) -> list[str]:
    """Remove partial checkpoint uploads and damaged objects from the DVC remote ``url``; what went."""
    from pipeline.orchestration.cluster_checkpoints import open_remote, remove_partials

    fs, root = open_remote(url, options)
    gone = remove_partials(fs, root)
    files = posixpath.join(root, "files", "md5")
    for path in fs.find(files) if fs.exists(files) else []:
        parts = path[len(files):].strip("/").split("/")
        if len(parts) != 2:
            continue
        expected = (parts[0] + parts[1]).removesuffix(".dir")
        digest = hashlib.md5()  # noqa: S324 - DVC's content address
        with fs.open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != expected:
            fs.rm_file(path)
            gone.append(path)
    return gone


def cancellable(call: Callable[[], Any], prefix: str, on_cancel: Callable[[], Any] | None = None) -> Any:
    """``call()``; if SIGINT (Ctrl-C) or SIGTERM arrives meanwhile, cancel sweep ``prefix``'s flow
    runs, call ``on_cancel()`` (e.g. stop the workers) and exit with status 130."""
    interrupted: list[int] = []

    def interrupt(signum: int, _frame: Any) -> None:
        interrupted.append(signum)
        raise KeyboardInterrupt

    old = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return call()
    except (KeyboardInterrupt, SystemExit):
        if not interrupted:
            raise
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if interrupted:
            for sig in old:  # a second Ctrl-C must not cut the cancelling short
                signal.signal(sig, signal.SIG_IGN)
    print(f"sweep {prefix}: interrupted; cancelling its flow runs", flush=True)
    try:
        cancel_runs(prefix, wait_s=30.0)
        if on_cancel is not None:
            on_cancel()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    raise SystemExit(130)
