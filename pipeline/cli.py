"""The stages as one command line: ``python -m pipeline <stage> [VARIANT [SEED]]`` (dvc.yaml runs these).

Every stage has ``--help``. One exit-status convention: 0 done, 2 bad input (a params value, an
input file, a usage error: one line on stderr naming the culprit and the allowed values), anything
else a failure of the stage itself. Each command imports only its own stage module, so
``python -m pipeline evaluate`` does not load torch. The modules also run alone
(``python -m pipeline.evaluate``), with the same convention.
"""

from __future__ import annotations

import importlib
import signal
import sys

import typer

from pipeline.io import run_stage

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help=__doc__.splitlines()[0], rich_markup_mode=None)

VARIANT = typer.Argument(..., help="a variant of params.yaml's variants (e.g. one_branch)")
SEED = typer.Argument(..., min=0, help="a training seed of params.yaml's train.seeds (e.g. 0)")


def _stage(name: str, *args: object, record_timing: bool = True) -> None:
    module = importlib.import_module(f"pipeline.{name}")
    run_stage(name, module.main, *args, record_timing=record_timing)


@app.command()
def validate() -> None:
    """Check the whole params.yaml before any stage deletes an output (data/params_valid.json)."""
    _stage("validate", record_timing=False)


@app.command()
def prepare() -> None:
    """CIFAR-10 archive -> the seeded stratified train/val/test split (data/prepared/)."""
    _stage("prepare")


@app.command()
def train(variant: str = VARIANT, seed: int = SEED) -> None:
    """Train one run (variant, seed), resumable per epoch: data/models/<variant>/seed<k>.pt."""
    _stage("train", variant, seed)


@app.command("train-batched")
def train_batched(variant: str = VARIANT,
                  seeds: list[int] = typer.Argument(None, min=0, help="seeds of train.seeds (default: all)")) -> None:
    """Train several seeds of a variant as one batched model; each seed's outputs as `train` writes them."""
    _stage("train_batched", variant, seeds or None, record_timing=False)


@app.command()
def logits(variant: str = VARIANT, seed: int = SEED) -> None:
    """Every exit's logits on val and test: data/logits/<variant>/seed<k>.parquet."""
    _stage("logits", variant, seed)


@app.command()
def calibrate(variant: str = VARIANT, seed: int = SEED) -> None:
    """Temperature per exit, fitted on val (equation 2); the before/after table on test."""
    _stage("calibrate", variant, seed)


@app.command()
def certify(variant: str = VARIANT, seed: int = SEED) -> None:
    """Calibrators compared and Learn-then-Test certified thresholds (docs/certify.md)."""
    _stage("certify", variant, seed)


# --- distribution shift (docs/shift.md) ---------------------------------------------------------
@app.command()
def shift(variant: str = VARIANT, seed: int = SEED) -> None:
    """Every exit's logits on the val/test images under CIFAR-10-C corruptions: data/shift/<variant>/seed<k>.parquet."""
    _stage("shift", variant, seed)


@app.command("shift_eval")
def shift_eval(variant: str = VARIANT, seed: int = SEED) -> None:
    """What breaks under shift, the remedies, the exchangeability monitor: reports/shift/<variant>/seed<k>/."""
    _stage("shift_eval", variant, seed)
# --- end distribution shift ----------------------------------------------------------------------


@app.command()
def profile(variant: str = VARIANT) -> None:
    """Per-layer edge and cloud latency of a variant, checked for disturbance (docs/latency.md)."""
    _stage("profile", variant)


@app.command()
def evaluate() -> None:
    """Offloading, outage and missed-deadline metrics per run, and over the seeds."""
    _stage("evaluate")


@app.command()
def trajectory() -> None:
    """Calibration, offloading and the claims at every training snapshot."""
    _stage("trajectory")


@app.command()
def plots() -> None:
    """The paper's figures and extras (reports/figures/)."""
    _stage("plots")


@app.command()
def report() -> None:
    """The self-contained page reports/index.html."""
    _stage("report", record_timing=False)


@app.command("measure_link")
def measure_link(variant: str = VARIANT) -> None:
    """The optional measured link: a real edge and cloud process over a shaped link (docs/link.md)."""
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the finally blocks stop the processes
    # and delete the namespaces; SIGKILL is covered by PR_SET_PDEATHSIG and the reaper.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    _stage("measure_link", variant)


def main() -> None:
    app()
