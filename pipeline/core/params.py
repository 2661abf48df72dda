"""The typed schema of params.yaml: one validated, frozen dataclass per section.

Every stage calls the functions for the sections it reads (the ones dvc.yaml lists for it) before
touching any file, so a typo fails in a second with one line naming the key and what is allowed::

    params.yaml: <key> = <value>; allowed: <allowed values>

``python -m pipeline check-params [params.yaml]`` validates every section at once, plus the rules that
span sections (for flows and CI); exit status 0 when valid, 2 with that one line otherwise.

The sections that define the network are in :mod:`pipeline.core.params_model`, training's in
:mod:`pipeline.core.params_train` (both re-exported here). Each section's dataclass declares its keys with their rules (:mod:`pipeline.core.params_schema`: the
rules and the one generic reader that writes the error lines); what is left here are the rules
that span keys. The allowed values are the library's own tuples (torch- and scipy-free modules),
so this module runs on a machine with only numpy and PyYAML.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from eeoffload.batches import BATCH_ORDERS
from eeoffload.calibrator_names import METHODS as CALIBRATOR_METHODS
from eeoffload.certify_options import FAMILIES as CERTIFY_FAMILIES
from eeoffload.certify_options import P_VALUES as CERTIFY_P_VALUES
from eeoffload.certify_options import PROCEDURES as CERTIFY_PROCEDURES
from eeoffload.layout import ModelSpec
from eeoffload.wire import COMPRESSORS as LINK_COMPRESSORS
from eeoffload.wire import ENCODINGS as LINK_ENCODINGS
from pipeline.core.params_model import (VariantParams, model_arch, model_spec, variant_branches, variant_names,
                                   variant_params, variants_params)
from pipeline.core.params_schema import (Choice, Choices, Custom, Fraction, Grid, Int, Number, PathText,
                                    Probabilities, Seeds, bad, is_number, known, read, read_section, rules,
                                    section, value_grid)
from pipeline.core.params_train import (DEVICES, TRAIN_OPTIONAL, RuntimeParams, TrainParams, run_seeds, runtime_params,
                                   torch_device, train_params, train_seeds)

#: Re-exported: the library's vocabularies (tests check them) and the helpers stages use.
__all__ = ["BATCH_ORDERS", "CALIBRATOR_METHODS", "CERTIFY_FAMILIES", "CERTIFY_PROCEDURES", "CERTIFY_P_VALUES",
           "LINK_COMPRESSORS", "LINK_ENCODINGS", "Seeds", "bad", "is_number", "model_arch", "value_grid",
           "variant_branches", "variant_names", "variant_params", "DEVICES", "TRAIN_OPTIONAL", "RuntimeParams",
           "TrainParams", "run_seeds", "runtime_params", "torch_device", "train_params", "train_seeds"]

#: CIFAR-10's sizes: the upper bound of every split (prepare checks the actual archive too).
CIFAR10_TRAIN_IMAGES = 50_000
CIFAR10_TEST_IMAGES = 10_000
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
