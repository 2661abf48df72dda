"""Where every artifact of the pipeline lives: one function or constant per artifact, relative to
the project root. Stages, plots, the report, tracking, the summary and the sweep build paths only
here; dvc.yaml spells the same paths (tests/test_registry.py fails when the two drift), and
docs/interfaces.md gives each artifact's schema and reader.

A *run* is one trained network: a variant of params ``variants`` and a training seed of
``train.seeds``. Per-run artifacts live under ``<variant>/seed<k>``; the latency profile is per
variant (it does not depend on the weights); the metrics are per run and aggregated over seeds.
"""

from __future__ import annotations

from pathlib import Path

# ----------------------------------------------------------------------------- data/
PARAMS_VALID = Path("data/params_valid.json")  # stage validate's constant marker
RAW = Path("data/raw")  # prepare's download of the official CIFAR-10 archive (not a DVC output)
PREPARED = Path("data/prepared")
PREPARED_META = PREPARED / "meta.json"  # the archive, its digest, the seed and the counts per split
MODELS = Path("data/models")
SNAPSHOTS = Path("data/snapshots")
LOGITS = Path("data/logits")
CALIBRATION = Path("data/calibration")
PROFILE = Path("data/profile")
CHECKPOINTS = Path("data/checkpoints")
# ----------------------------------------------------------------------------- reports/
REPORTS = Path("reports")
TIMINGS = REPORTS / "timings"
TRAINING = REPORTS / "training"
CALIBRATION_TABLES = REPORTS / "calibration"
CERTIFY = REPORTS / "certify"
METRICS = REPORTS / "metrics"
METRICS_JSON = REPORTS / "metrics.json"
HEADLINE_JSON = REPORTS / "headline.json"
CURVES = REPORTS / "plots"
TRAJECTORY = REPORTS / "trajectory"
FIGURES = REPORTS / "figures"
FIGURES_MANIFEST = FIGURES / "figures.json"  # the figures plots drew (the report reads it)
REPORT_HTML = REPORTS / "index.html"
LINK = REPORTS / "link"
# ----------------------------------------------------------------------------- distribution shift (docs/shift.md)
SHIFT_LOGITS = Path("data/shift")
SHIFT = REPORTS / "shift"


def run_dir(variant: str, seed: int) -> str:
    """The relative folder name of one run: ``<variant>/seed<k>``."""
    return f"{variant}/seed{int(seed)}"


def prepared_split(split: str) -> Path:
    """``train``, ``val`` or ``test`` images, labels and sample ids (npz), written by prepare."""
    return PREPARED / f"{split}.npz"


def model_path(variant: str, seed: int) -> Path:
    """Trained weights (torch.save of ``{"state_dict", "branches"}``), written by train."""
    return MODELS / f"{run_dir(variant, seed)}.pt"


def snapshots_dir(variant: str, seed: int) -> Path:
    """``epoch_NNN.parquet`` logits tables (logits schema) at ``train.snapshot_epochs``."""
    return SNAPSHOTS / run_dir(variant, seed)


def checkpoint_path(variant: str, seed: int) -> Path:
    """The resumable per-epoch checkpoint of an unfinished training (deleted when it ends)."""
    return CHECKPOINTS / f"{variant}_seed{int(seed)}.pt"


def logits_path(variant: str, seed: int) -> Path:
    """Every exit's logits on val and test (logits schema), written by logits."""
    return LOGITS / f"{run_dir(variant, seed)}.parquet"


def calibration_path(variant: str, seed: int) -> Path:
    """The fitted calibrator of each exit, ``{"method", "exits": {"1": state, ...}}`` (plus
    ``"temperatures"`` for the temperature methods), written by calibrate
    (:mod:`eeoffload.calibrator_state`; read with pipeline.core.artifacts.read_calibration)."""
    return CALIBRATION / f"{run_dir(variant, seed)}.json"


def calibration_exits_path(variant: str, seed: int) -> Path:
    """Per exit and calibration on test: temperature, accuracy, ECE, MCE, NLL (calibrate)."""
    return CALIBRATION_TABLES / f"{run_dir(variant, seed)}_exits.parquet"


def reliability_path(variant: str, seed: int) -> Path:
    """Reliability-diagram bins per exit and calibration on test (calibrate)."""
    return CALIBRATION_TABLES / f"{run_dir(variant, seed)}_reliability.parquet"


def training_csv(variant: str, seed: int) -> Path:
    """The per-epoch training history (train)."""
    return TRAINING / f"{run_dir(variant, seed)}.csv"


def certify_dir(variant: str, seed: int) -> Path:
    """The certify stage's tables of one run."""
    return CERTIFY / run_dir(variant, seed)


def profile_path(variant: str) -> Path:
    """The latency-model inputs of a variant (profile)."""
    return PROFILE / f"{variant}.json"


def profile_layers_path(variant: str) -> Path:
    """The per-layer timings behind :func:`profile_path` (profile)."""
    return PROFILE / f"{variant}_layers.parquet"


def metrics_dir(variant: str) -> Path:
    """evaluate's tables of a variant: ``offload.parquet`` and ``deadline.parquet`` aggregated over
    the seeds, ``latency.json``, and ``seed<k>/{offload,deadline}.parquet`` per run."""
    return METRICS / variant


def run_metrics_dir(variant: str, seed: int) -> Path:
    return METRICS / run_dir(variant, seed)


def curves_dir(variant: str) -> Path:
    """The DVC plots' CSVs of a variant (git-tracked): ``<calibration>.csv``, ``<calibration>_deadline.csv``."""
    return CURVES / variant


def stage_instance(stage: str, variant: str | None = None, seed: int | None = None) -> str:
    """A stage instance as DVC names it: ``evaluate``, ``profile@one_branch`` (foreach),
    ``train@one_branch-0`` (the variant x seed matrix)."""
    if variant is None:
        return stage
    return f"{stage}@{variant}" if seed is None else f"{stage}@{variant}-{int(seed)}"


def timing_path(stage: str) -> Path:
    """Wall time of one stage instance (``train@one_branch-0``: :func:`stage_instance`)."""
    return TIMINGS / f"{stage}.json"


def link_dir(variant: str) -> Path:
    """The optional measure_link stage's tables of a variant (link/dvc.yaml)."""
    return LINK / variant


# ----------------------------------------------------------------------------- distribution shift (docs/shift.md)


def shift_logits_path(variant: str, seed: int) -> Path:
    """Every exit's logits on the val and test images, clean and under each corruption and severity
    (logits schema + corruption, severity and the image statistics stat_*), written by shift."""
    return SHIFT_LOGITS / f"{run_dir(variant, seed)}.parquet"


def shift_dir(variant: str, seed: int) -> Path:
    """The shift_eval stage's tables of one run (what breaks, the remedies, the monitor)."""
    return SHIFT / run_dir(variant, seed)
