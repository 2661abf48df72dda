"""The typed schema of params.yaml: one validated, frozen dataclass per section.

Every stage calls the functions for the sections it reads (the ones dvc.yaml lists for it) before
touching any file, so a typo fails in a second with one line naming the key and what is allowed::

    params.yaml: <key> = <value>; allowed: <allowed values>

``python -m pipeline.params [params.yaml]`` validates every section at once, plus the rules that
span sections (for flows and CI); exit status 0 when valid, 2 with that one line otherwise.

Each section's dataclass declares its keys with their rules (:mod:`pipeline.params_schema`: the
rules and the one generic reader that writes the error lines); what is left here are the rules
that span keys. The allowed values are the library's own tuples (torch- and scipy-free modules),
so this module runs on a machine with only numpy and PyYAML.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from eeoffload.batches import BATCH_ORDERS
from eeoffload.calibrator_names import METHODS as CALIBRATOR_METHODS
from eeoffload.certify_options import FAMILIES as CERTIFY_FAMILIES
from eeoffload.certify_options import P_VALUES as CERTIFY_P_VALUES
from eeoffload.certify_options import PROCEDURES as CERTIFY_PROCEDURES
from eeoffload.layout import ModelSpec
from eeoffload.training_options import AUGMENTATIONS, OPTIMIZERS, PRECISIONS, SCHEDULES
from eeoffload.wire import COMPRESSORS as LINK_COMPRESSORS
from eeoffload.wire import ENCODINGS as LINK_ENCODINGS
from pipeline.io import PARAMS_FILE, StageError, read_params
from pipeline.params_model import (VariantParams, model_arch, model_spec, variant_branches, variant_names,
                                   variant_params, variants_params)
from pipeline.params_schema import (REQUIRED, Bool, Choice, Choices, Custom, Fraction, Grid, Int, Number, PathText,
                                    Probabilities, Seeds, bad, is_int, is_number, known, read, read_section, rules,
                                    section, value_grid)

#: Re-exported: the library's vocabularies (tests check them) and the helpers stages use.
__all__ = ["BATCH_ORDERS", "CALIBRATOR_METHODS", "CERTIFY_FAMILIES", "CERTIFY_PROCEDURES", "CERTIFY_P_VALUES",
           "LINK_COMPRESSORS", "LINK_ENCODINGS", "Seeds", "bad", "is_number", "model_arch", "value_grid",
           "variant_branches", "variant_names", "variant_params"]

#: CIFAR-10's sizes: the upper bound of every split (prepare checks the actual archive too).
CIFAR10_TRAIN_IMAGES = 50_000
CIFAR10_TEST_IMAGES = 10_000
DEVICES = ("auto", "cpu", "cuda")
BYTES_PER_ELEMENT = (1, 2, 4, 8)  # int8, float16, float32, float64
SECTIONS = ("data", "model", "variants", "train", "latency", "calibration", "network", "evaluate", "certify", "link")


def _spec(cls: type, s: dict[str, Any], prefix: str, extra_keys: tuple[str, ...] = ()) -> Any:
    return cls(**read_section(s, prefix, cls, extra_keys))


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class DataParams:
    archive: str = PathText("a path string, or empty").field()
    seed: int = Int(0).field()
    n_train: int = Int(1, CIFAR10_TRAIN_IMAGES, " (the CIFAR-10 training set)").field()
    n_val: int = Int(1).field()
    n_test: int = Int(1).field()


def data_params(params: dict[str, Any]) -> DataParams:
    """Section ``data`` (stage prepare). Sizes are bounded by CIFAR-10's 50k/10k images here and by
    the actual archive in prepare."""
    p = _spec(DataParams, section(params, "data"), "data")
    if p.n_val + p.n_test > CIFAR10_TEST_IMAGES:
        raise bad("data.n_val + data.n_test", p.n_val + p.n_test,
                  f"a sum of at most {CIFAR10_TEST_IMAGES} (both come from the CIFAR-10 test set)")
    return p


# --------------------------------------------------------------------------- train


def _seeds(value: Any, key: str) -> Seeds:
    """Distinct integers >= 0; each variant is trained once per seed (dvc.yaml's matrix)."""
    if not isinstance(value, list) or not value or not all(is_int(k) and k >= 0 for k in value) \
            or len(set(value)) != len(value):
        raise bad(key, value, "a non-empty list of distinct integers >= 0, e.g. [0, 1, 2]")
    return Seeds(value)


def _augment(value: Any, key: str) -> str:
    """One of AUGMENTATIONS; the booleans of older params files mean none (false) and crop_flip (true)."""
    return ("crop_flip" if value else "none") if isinstance(value, bool) else Choice(AUGMENTATIONS)(value, key)


def _snapshot_epochs(value: Any, key: str) -> tuple[int, ...]:
    """Strictly increasing epochs >= 1 (optional, default none)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(is_int(e) and e >= 1 for e in value) \
            or any(a >= b for a, b in zip(value, value[1:])):
        raise bad(key, value, "a list of strictly increasing integers >= 1 (epochs)")
    return tuple(value)


@dataclass(frozen=True)
class TrainParams:
    device: str = Choice(DEVICES).field()
    seeds: Seeds = Custom(_seeds, "a non-empty list of distinct integers >= 0, e.g. [0, 1, 2]").field()  # noqa: RUF009 (a field spec)
    trunk_epochs: int = Int(0).field()
    joint_epochs: int = Int(0).field()
    batch_size: int = Int(1).field()
    lr: float = Number(0.0, strict=True).field()
    weight_decay: float = Number(0.0).field()
    augment: str = Custom(_augment, " | ".join(AUGMENTATIONS)).field()
    num_threads: int = Int(0).field()
    # optional keys (params files from before they existed take today's recipe)
    snapshot_epochs: tuple[int, ...] = Custom(_snapshot_epochs).field(())  # past the last epoch: dropped
    optimizer: str = Choice(OPTIMIZERS).field("adam")
    momentum: float = Number(0.0, below=1.0).field(0.9)  # sgd only
    nesterov: bool = Bool().field(False)  # sgd only
    schedule: str = Choice(SCHEDULES).field("constant")  # per epoch, to 0 at the last epoch
    early_stopping_patience: int = Int(0).field(0)  # 0 = off
    precision: str = Choice(PRECISIONS).field("fp32")  # autocast


#: train keys that may be left out (params files from before they existed), and their default.
TRAIN_OPTIONAL = {k: d for k, (_, d) in rules(TrainParams).items() if d is not REQUIRED and k != "snapshot_epochs"}


def train_seeds(params: dict[str, Any]) -> Seeds:
    """``train.seeds`` alone (evaluate aggregates over them; ``.first`` is the first-seed rule)."""
    return read(section(params, "train"), "train", "seeds", *rules(TrainParams)["seeds"])


def run_seeds(params: dict[str, Any]) -> Seeds:
    """The seeds a finished run was trained with, for its readers (summary, tracking): ``train.seeds``,
    or the one ``train.seed`` of params files from before the seed axis (default 0)."""
    train = params.get("train") or {}
    return train_seeds(params) if "seeds" in train else Seeds([read(train, "train", "seed", Int(0), 0)])


def train_params(params: dict[str, Any]) -> TrainParams:
    p = _spec(TrainParams, section(params, "train"), "train")
    total = p.trunk_epochs + p.joint_epochs
    if total == 0:
        raise bad("train.trunk_epochs + train.joint_epochs", 0, "at least one epoch")
    if p.nesterov and (p.optimizer != "sgd" or p.momentum == 0):
        raise bad("train.nesterov", True, "false unless train.optimizer = sgd with train.momentum > 0")
    # snapshots past the end of the schedule are dropped, so a shorter run keeps the same list
    return replace(p, snapshot_epochs=tuple(e for e in p.snapshot_epochs if e <= total))


@dataclass(frozen=True)
class RuntimeParams:
    device: str
    num_threads: int


def runtime_params(params: dict[str, Any]) -> RuntimeParams:
    """``train.device`` and ``train.num_threads`` only (stage logits reads nothing else of train)."""
    return RuntimeParams(*(one_key(params, "train", key) for key in ("device", "num_threads")))


def torch_device(name: str) -> str:
    """Resolve ``auto`` to cuda when present, else cpu; refuse ``cuda`` without a GPU."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise StageError("params.yaml: train.device = 'cuda' but no CUDA device is available; allowed here: auto | cpu")
    return name


# --------------------------------------------------------------------------- latency, network


@dataclass(frozen=True, kw_only=True)
class LatencyParams:
    warmup: int = Int(0).field()
    repeats: int = Int(1).field()
    edge_threads: int = Int(1).field()
    edge_slowdown: float = Number(0.0, strict=True).field()
    edge_profile: str = PathText('a path to a layer,ms CSV, or ""').field("")
    cloud_device: str = Choice(DEVICES).field()
    cloud_speedup: float = Number(0.0, strict=True).field()
    bytes_per_element: int = Choice(BYTES_PER_ELEMENT).field()
    remeasure: int = Int(0).field(2)  # re-measurements allowed when a check of the profile fails (0: warn only)


def latency_params(params: dict[str, Any]) -> LatencyParams:
    return _spec(LatencyParams, section(params, "latency"), "latency")


@dataclass(frozen=True)
class NetworkParams:
    uplink_mbps: float = Number(0.0, strict=True).field()
    rtt_ms: float = Number(0.0).field()


def network_params(params: dict[str, Any]) -> NetworkParams:
    return _spec(NetworkParams, section(params, "network"), "network")


# --------------------------------------------------------------------------- calibration

#: calibration.method and calibration.methods: the library's one list of calibrator names.
CALIBRATION_METHODS = CALIBRATOR_METHODS
#: The method names before the calibrators were one interface, and what each is now.
RENAMED_CALIBRATION_METHODS = {"per_exit": "temperature", "global": "global_temperature"}
CALIBRATION_KEYS = ("method", "n_bins", "methods")  # methods: read by stage certify only


def _calibration_method(value: Any, key: str) -> str:
    if isinstance(value, str) and value in RENAMED_CALIBRATION_METHODS:
        raise bad(key, value, f"{' | '.join(CALIBRATION_METHODS)} ({value!r} is now "
                              f"{RENAMED_CALIBRATION_METHODS[value]!r})")
    return Choice(CALIBRATION_METHODS)(value, key)


@dataclass(frozen=True)
class CalibrationParams:
    method: str = Custom(_calibration_method, " | ".join(CALIBRATION_METHODS)).field()
    n_bins: int = Int(1).field()


def calibration_params(params: dict[str, Any]) -> CalibrationParams:
    return _spec(CalibrationParams, section(params, "calibration"), "calibration", ("methods",))


# --------------------------------------------------------------------------- evaluate


@dataclass(frozen=True)
class EvaluateParams:
    p_tar: np.ndarray = Grid(probability=True).field()  # noqa: RUF009 (a field spec)
    deadline_p_tar: np.ndarray = Probabilities().field()  # noqa: RUF009 (a field spec)
    t_tar_ms: np.ndarray = Grid().field()  # noqa: RUF009 (a field spec)
    batch_size: int = Int(1).field()
    batch_order: str = Choice(BATCH_ORDERS).field()
    resamples: int = Int(1).field()
    seed: int = Int(0).field()


def evaluate_params(params: dict[str, Any]) -> EvaluateParams:
    p = _spec(EvaluateParams, section(params, "evaluate"), "evaluate")
    if p.t_tar_ms[0] < 0:
        raise bad("evaluate.t_tar_ms.start", float(p.t_tar_ms[0]), "a number >= 0")
    return p


# --------------------------------------------------------------------------- certify, link

LINK_METHODS = ("auto", "netns", "loopback")  # pipeline.link.runner


@dataclass(frozen=True)
class CertifyParams:
    methods: tuple[str, ...]  # calibration.methods
    n_bins: int  # calibration.n_bins
    targets: np.ndarray = Probabilities(increasing=True).field(key="target_accuracy")  # noqa: RUF009 (a field spec)
    delta: float = Fraction().field()
    splits: int = Int(1).field()
    calibration_fraction: float = Fraction().field()
    fit_fraction: float = Fraction().field()
    procedures: tuple[str, ...] = Choices(CERTIFY_PROCEDURES).field()
    p_value: str = Choice(CERTIFY_P_VALUES).field()
    family: str = Choice(CERTIFY_FAMILIES).field()
    thresholds: np.ndarray = Grid().field()  # noqa: RUF009 (a field spec)
    bootstrap: int = Int(0).field()
    seed: int = Int(0).field()


def certify_params(params: dict[str, Any]) -> CertifyParams:
    """Section ``certify`` plus ``calibration.methods`` and ``calibration.n_bins`` (stage certify)."""
    cal = section(params, "calibration")
    known(cal, "calibration", CALIBRATION_KEYS)
    s = section(params, "certify")
    values = read_section(s, "certify", CertifyParams)
    if values["thresholds"][0] < 0 or values["thresholds"][-1] > 1:
        raise bad("certify.thresholds", s["thresholds"], "start >= 0 and stop <= 1 (confidences)")
    return CertifyParams(methods=read(cal, "calibration", "methods", Choices(CALIBRATOR_METHODS)),
                         n_bins=read(cal, "calibration", "n_bins", *rules(CalibrationParams)["n_bins"]), **values)


@dataclass(frozen=True)
class LinkParams:
    """Section ``link`` (stage measure_link, docs/link.md)."""

    method: str = Choice(LINK_METHODS).field()
    n_samples: int = Int(1).field()
    p_tar: float = Number(0.0, strict=True, below=1.0).field()
    encoding: str = Choice(LINK_ENCODINGS).field()
    compressor: str = Choice(LINK_COMPRESSORS).field()
    uplink_trace: str = PathText('a path to a time_s,mbps CSV, or ""').field()
    edge_threads: int = Int(1).field()
    cloud_threads: int = Int(1).field()
    loss_pct: float = Number(0.0, below=100.0).field()
    max_seconds: float = Number(0.0, strict=True).field()
    tolerance_pct: float = Number(0.0, strict=True).field()


def link_params(params: dict[str, Any]) -> LinkParams:
    return _spec(LinkParams, section(params, "link"), "link")


# --------------------------------------------------------------------------- everything


def one_key(params: dict[str, Any], name: str, key: str) -> Any:
    """One key of section ``name``, checked by its declared rule (for readers that need only it)."""
    cls = {"data": DataParams, "train": TrainParams, "latency": LatencyParams, "network": NetworkParams,
           "calibration": CalibrationParams, "evaluate": EvaluateParams, "link": LinkParams}[name]
    return read(section(params, name), name, key, *rules(cls)[key])


@dataclass(frozen=True)
class Params:
    data: DataParams
    model: ModelSpec
    variants: dict[str, VariantParams]
    train: TrainParams
    latency: LatencyParams
    calibration: CalibrationParams
    network: NetworkParams
    evaluate: EvaluateParams
    certify: CertifyParams
    link: LinkParams


def validate_params(params: dict[str, Any]) -> Params:
    """Every section, then the rules that span sections; StageError on the first problem."""
    p = Params(data=data_params(params), model=model_spec(params), variants=variants_params(params),
               train=train_params(params), latency=latency_params(params), calibration=calibration_params(params),
               network=network_params(params), evaluate=evaluate_params(params), certify=certify_params(params),
               link=link_params(params))
    if p.evaluate.batch_size > p.data.n_test:
        raise bad("evaluate.batch_size", p.evaluate.batch_size,
                  f"an integer in 1..data.n_test = {p.data.n_test} (a batch needs that many test samples)")
    return p


def main(path: str = str(PARAMS_FILE)) -> None:
    p = validate_params(read_params(Path(path)))
    print(f"{path}: valid; variants {', '.join(p.variants)}")


if __name__ == "__main__":
    if len(sys.argv) > 2:
        raise SystemExit("usage: python -m pipeline.params [params.yaml]")
    from pipeline.io import run_stage

    run_stage("params", main, *sys.argv[1:], record_timing=False)
