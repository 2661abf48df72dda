"""The command line of the flows: ``python -m pipeline flows run|experiment|serve|dag``.

A flow that fails ends with its error printed once, as one line (a failed stage: which, and its
exit status; its output has streamed above), and no traceback on the terminal: Prefect's records of the
exception (with the traceback) go only to a debug log, ``<root>/.prefect/logs/<cmd>-<time>-<pid>.log``,
whose path the error line names. ``--verbose`` leaves Prefect's console output as it is.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from pipeline.orchestration.project import debug_log_path

CONSOLE_DROPPED = ("Encountered exception during execution", "Task run failed with exception")
FAILED_STATE = re.compile(r"Finished in state (Failed|Crashed)\(")


class ConsoleFilter(logging.Filter):
    """For the terminal: no records carrying a traceback, and 'Finished in state Failed' without
    the error repeated (the CLI prints it once at the end)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info or message.startswith(CONSOLE_DROPPED):
            return False
        if m := FAILED_STATE.match(message):
            record.msg, record.args = f"Finished in state {m.group(1)}", ()
        return True


def quiet_console(log_file: Path) -> logging.Logger:
    """Every log record (tracebacks included) to ``log_file``; the console handlers Prefect set up
    get ConsoleFilter. Returns a logger that writes to the file only."""
    import prefect  # noqa: F401 (sets up Prefect's logging: console handler on the root logger)

    log_file.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(log_file, encoding="utf-8", delay=True)
    to_file.setLevel(logging.DEBUG)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers.insert(0, to_file)  # before the console handlers: it sees each record unfiltered
    for logger in (root, logging.getLogger("prefect")):
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.addFilter(ConsoleFilter())
    debug = logging.getLogger("eeoffload.cli")
    debug.propagate = False
    debug.setLevel(logging.DEBUG)
    debug.addHandler(to_file)
    return debug


def error_line(exc: BaseException | None, fallback: str) -> str:
    """The error a user reads: the message of the flow's exception (our errors say what to do)."""
    from pipeline.orchestration.dvc_commands import StageFailed
    from pipeline.orchestration.settings import BadParams
    from pipeline.orchestration.lock import WorkspaceBusy

    if exc is None:
        return fallback
    if isinstance(exc, StageFailed):  # its output lines are on the terminal already
        return f"{exc.headline} (its output is above)"
    if isinstance(exc, (BadParams, WorkspaceBusy, FileNotFoundError)):
        return str(exc)
    try:
        from pipeline.orchestration.tracking import TrackingError
    except ImportError:  # pragma: no cover
        TrackingError = ()  # type: ignore[assignment]  # noqa: N806
    if isinstance(exc, TrackingError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def run_flow(call: Callable[[], Any], prog: str, root: str | None, verbose: bool = False) -> Any:
    """Run ``call`` (a flow called with return_state=True); on failure print its error once and exit 1."""
    where = Path(root or os.environ.get("EEOFFLOAD_ROOT") or Path.cwd()).resolve()
    log_file = debug_log_path(where, prog.split("pipeline", 1)[-1].strip(" .").replace(" ", "-"))
    debug = quiet_console(log_file) if not verbose else None
    state = call()
    if state.is_completed():
        return state.result()
    try:
        exc = state.result(raise_on_failure=False)
    except BaseException as e:  # noqa: BLE001 (a crashed state re-raises its cause)
        exc = e
    exc = exc if isinstance(exc, BaseException) else None
    message = error_line(exc, state.message or f"flow ended in state {state.name}")
    if debug is not None:
        debug.error("flow failed: %s", message, exc_info=exc)
        first, _, rest = message.partition("\n")
        message = f"{first} (full log: {log_file})" + (f"\n{rest}" if rest else "")
    print(f"{prog}: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def main(argv: list[str] | None = None, prog: str = "python -m pipeline flows") -> None:
    ap = argparse.ArgumentParser(prog=prog, description="Prefect flows over the DVC pipeline (docs/orchestration.md)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the benchmark flow in this workspace")
    run.add_argument("--no-track", action="store_true", help="skip MLflow logging")
    run.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                     help="wait this long for a run already in progress in the workspace (default: fail at once)")
    run.add_argument("--root", default=None)
    run.add_argument("--verbose", action="store_true", help="Prefect's console output unfiltered (tracebacks)")
    exp = sub.add_parser("experiment", help="run a named DVC experiment through the flow")
    exp.add_argument("--name", default=None)
    exp.add_argument("--recipe", default=None, help="a recipe of configs/recipes/ (python -m pipeline recipes)")
    exp.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE")
    exp.add_argument("--no-track", action="store_true")
    exp.add_argument("--wait", type=float, default=0.0, metavar="SECONDS")
    exp.add_argument("--root", default=None)
    exp.add_argument("--verbose", action="store_true")
    sub.add_parser("serve", help="serve the deployments for the Prefect UI (needs PREFECT_API_URL)")
    dag = sub.add_parser("dag", help="print the stage order read from DVC")
    dag.add_argument("--root", default=None)
    args = ap.parse_args(argv)

    if args.cmd == "dag":
        from pipeline.orchestration.dag import stage_graph
        from pipeline.orchestration.project import resolve_root

        for stage, upstream in stage_graph(resolve_root(args.root)):
            print(stage, "<-", ", ".join(upstream) or "-")
        return
    from pipeline.orchestration import flows

    if args.cmd == "serve":
        flows.serve()
        return
    if args.cmd == "run":
        run_flow(lambda: flows.benchmark(root=args.root, track=not args.no_track, wait_s=args.wait,
                                         return_state=True), f"{prog} run", args.root, args.verbose)
        return
    extra = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.set)}
    if args.recipe:
        from pipeline.tools.recipes import RecipeError, recipe_settings

        try:
            extra = {**recipe_settings(args.recipe), **extra}
        except RecipeError as e:
            raise SystemExit(f"{prog} experiment: {e}") from None
    name = args.name or (f"{args.recipe}-{flows.default_exp_name('run').removeprefix('run-')}" if args.recipe else None)
    run_flow(lambda: flows.benchmark_experiment(name=name, extra=extra, track=not args.no_track,
                                                wait_s=args.wait, root=args.root, return_state=True),
             f"{prog} experiment", args.root, args.verbose)
