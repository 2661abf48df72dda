"""The project's one command line: ``python -m pipeline <command> ...``.

* The stages (dvc.yaml runs these): ``python -m pipeline <stage> [VARIANT [SEED]]``. Each command
  imports only its own stage module (pipeline/<stage>.py), so ``python -m pipeline evaluate`` does
  not load torch. One exit-status convention: 0 done, 2 bad input (a params value, an input file, a
  usage error: one line on stderr naming the culprit and the allowed values), anything else a
  failure of the stage itself.
* The tools (pipeline/tools/) and the orchestration (pipeline/orchestration/): ``python -m pipeline
  <tool> ...`` hands the rest of the line to that module's ``main(argv)`` (its own ``--help``).

The standard library's argparse, not a CLI framework: the stages run on machines with only the
stages' packages (the GPU machine has no pydantic, which typer needs; docs/performance.md).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Callable
from typing import Any

PROG = "python -m pipeline"

#: Stage command -> (its module under pipeline/, its arguments, one-line help, records a timing).
#: Arguments: "variant", "seed" (one run of dvc.yaml's variant x seed matrix), "seeds" (optional, several).
STAGES: dict[str, tuple[str, tuple[str, ...], str, bool]] = {
    "validate": ("validate", (), "Check the whole params.yaml before any stage deletes an output "
                 "(data/params_valid.json).", False),
    "prepare": ("prepare", (), "CIFAR-10 archive -> the seeded stratified train/val/test split (data/prepared/).", True),
    "train": ("train", ("variant", "seed"), "Train one run (variant, seed), resumable per epoch: "
              "data/models/<variant>/seed<k>.pt.", True),
    "train-batched": ("train_batched", ("variant", "seeds"), "Train several seeds of a variant as one batched "
                      "model; each seed's outputs as `train` writes them.", False),
    "logits": ("logits", ("variant", "seed"), "Every exit's logits on val and test: "
               "data/logits/<variant>/seed<k>.parquet.", True),
    "calibrate": ("calibrate", ("variant", "seed"), "The calibrator of calibration.method per exit, fitted on "
                  "val; the before/after table on test.", True),
    "certify": ("certify", ("variant", "seed"), "Calibrators compared and Learn-then-Test certified thresholds "
                "(docs/certify.md).", True),
    "shift": ("shift", ("variant", "seed"), "Every exit's logits on the val/test images under CIFAR-10-C corruptions: "
              "data/shift/<variant>/seed<k>.parquet (docs/shift.md).", True),
    "shift_eval": ("shift_eval", ("variant", "seed"), "What breaks under shift, the remedies, the exchangeability "
                   "monitor: reports/shift/<variant>/seed<k>/ (docs/shift.md).", True),
    "profile": ("profile", ("variant",), "Per-layer edge and cloud latency of a variant, checked for disturbance "
                "(docs/latency.md).", True),
    "evaluate": ("evaluate", (), "Offloading, outage and missed-deadline metrics per run, and over the seeds.", True),
    "trajectory": ("trajectory", (), "Calibration, offloading and the claims at every training snapshot.", True),
    "plots": ("plots", (), "The paper's figures and extras (reports/figures/).", True),
    "report": ("report", (), "The self-contained page reports/index.html.", False),
    "measure_link": ("measure_link", ("variant",), "The optional measured link: a real edge and cloud process over "
                     "a shaped link (docs/link.md).", True),
}

#: Tool command -> (its module, one-line help). The module's main(argv) parses the rest of the line.
TOOLS: dict[str, tuple[str, str]] = {
    "paper": ("pipeline.tools.paper", "The shipped results bundle: build its analysis (`make paper`), import a GPU run."),
    "plain-run": ("pipeline.tools.plain_run", "Run dvc.yaml's stages with plain Python, without DVC (the GPU machine)."),
    "scratch": ("pipeline.tools.scratch", "The pipeline in a scratch copy of the project (`make smoke`)."),
    "estimate": ("pipeline.tools.estimate", "What a run of params.yaml will cost (device, training time)."),
    "recipes": ("pipeline.tools.recipes", "The training recipes of configs/recipes/ (`make run RECIPE=...`)."),
    "overlay": ("pipeline.tools.overlay_args", "An overlay file (configs/*.yaml) as `dvc exp run -S` arguments."),
    "check-params": ("pipeline.tools.check_params", "Validate a params file, every section at once."),
    "summary": ("pipeline.tools.summary", "A markdown summary of a finished run."),
    "vega-template": ("pipeline.tools.vega_template", "Rebuild pipeline/templates/dvc_plots.html (needs npm)."),
    "flows": ("pipeline.orchestration.cli", "The Prefect flows: run | experiment | serve | dag (docs/orchestration.md)."),
    "sweep": ("pipeline.orchestration.sweep", "A sweep over uplink rates and branch placements on this machine."),
    "workpool": ("pipeline.orchestration.workpool", "A sweep over Prefect work-pool workers (docs/scale-out.md)."),
    "scaleout": ("pipeline.orchestration.scaleout", "Work-pool workers and the tracking server on this machine."),
    "cluster": ("pipeline.orchestration.cluster", "A scale-out cluster on one machine: up | down | status | sweep | cancel."),
    "services": ("pipeline.orchestration.services", "The Prefect server and the MLflow UI: start | stop | status | api-env."),
    "tracking": ("pipeline.orchestration.tracking", "Log a finished run to MLflow."),
}

_ARGUMENTS: dict[str, Callable[[argparse.ArgumentParser], Any]] = {
    "variant": lambda p: p.add_argument("variant", help="a variant of params.yaml's variants (e.g. one_branch)"),
    "seed": lambda p: p.add_argument("seed", type=_seed, help="a training seed of params.yaml's train.seeds (e.g. 0)"),
    "seeds": lambda p: p.add_argument("seeds", type=_seed, nargs="*", help="seeds of train.seeds (default: all)"),
}


def _seed(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 0")
    return int(text)


def parser() -> argparse.ArgumentParser:
    tools = "\n".join(f"  {name:<15} {help_}" for name, (_, help_) in TOOLS.items())
    ap = argparse.ArgumentParser(prog=PROG, description="The project's one command line: the stages, the tools, the orchestration.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=f"tools (`{PROG} <tool> --help`):\n{tools}")
    sub = ap.add_subparsers(dest="command", metavar="<stage>", title="stages", required=True)
    for name, (_, args, help_, _timing) in STAGES.items():
        sp = sub.add_parser(name, help=help_, description=help_, prog=f"{PROG} {name}")
        for arg in args:
            _ARGUMENTS[arg](sp)
    return ap


def run_tool(name: str, argv: list[str]) -> None:
    """``python -m pipeline <tool> ...``: the tool's main(argv); its return value is the exit status."""
    module = importlib.import_module(TOOLS[name][0])
    raise SystemExit(module.main(argv) or 0)


def run_stage_command(args: argparse.Namespace) -> None:
    from pipeline.core.io import run_stage  # after parsing: `--help` and usage errors load nothing

    module_name, arg_names, _, record_timing = STAGES[args.command]
    if args.command == "measure_link":
        # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the finally blocks stop the processes
        # and delete the namespaces; SIGKILL is covered by PR_SET_PDEATHSIG and the reaper.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    values = [getattr(args, a) for a in arg_names]
    if arg_names[-1:] == ("seeds",):
        values[-1] = values[-1] or None  # none given: every seed of train.seeds
    module = importlib.import_module(f"pipeline.{module_name}")
    run_stage(module_name, module.main, *values, record_timing=record_timing)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in TOOLS:
        run_tool(argv[0], argv[1:])
    run_stage_command(parser().parse_args(argv))
