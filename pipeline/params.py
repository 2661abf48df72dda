"""The typed schema of params.yaml: one validated, frozen dataclass per section.

Every stage calls the functions for the sections it reads (the ones dvc.yaml lists for it) before
touching any file, so a typo fails in a second with one line naming the key and what is allowed::

    params.yaml: <key> = <value>; allowed: <allowed values>

``python -m pipeline.params [params.yaml]`` validates every section at once, plus the rules that
span sections (for flows and CI); exit status 0 when valid, 2 with that one line otherwise.

Plain dataclasses, not pydantic: the stage scripts must run on a GPU box that has only torch,
numpy, pandas, pyarrow, pyyaml, tqdm, seaborn and jinja2, and the rules are few and flat. This
module imports neither torch nor pandas at import time (branch names are checked with a lazy
import of the torch-free :mod:`eeoffload.layout`; the calibrator names are the library's list in
the import-free :mod:`eeoffload.calibrator_names`).

Length (about 620 lines): the schema of all nine sections with their one-line errors, in one
place so that a reader sees every knob's allowed values together; it runs on a machine with only
numpy and PyYAML (the torch-free layer names of eeoffload.layout aside).
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eeoffload.calibrator_names import METHODS as CALIBRATOR_METHODS
from pipeline.io import PARAMS_FILE, StageError, read_params

#: CIFAR-10's sizes: the upper bound of every split (prepare checks the actual archive too).
CIFAR10_TRAIN_IMAGES = 50_000
CIFAR10_TEST_IMAGES = 10_000
#: Longest value grid accepted (p_tar, t_tar_ms): a typo in ``step`` fails instead of hanging.
MAX_GRID_POINTS = 100_000
#: Variant names become file names (data/models/<v>.pt): letters, digits, _ and - only.
VARIANT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")

DEVICES = ("auto", "cpu", "cuda")
#: calibration.method and calibration.methods: the library's one list of calibrator names.
CALIBRATION_METHODS = CALIBRATOR_METHODS
#: The method names before the calibrators were one interface, and what each is now.
RENAMED_CALIBRATION_METHODS = {"per_exit": "temperature", "global": "global_temperature"}
BATCH_ORDERS = ("sample_id", "shuffled")  # eeoffload.offload.BATCH_ORDERS (checked in tests)
BYTES_PER_ELEMENT = (1, 2, 4, 8)  # int8, float16, float32, float64

DATA_KEYS = ("archive", "seed", "n_train", "n_val", "n_test")
VARIANT_KEYS = ("branches", "exit_weights")
TRAIN_KEYS = ("device", "seeds", "trunk_epochs", "joint_epochs", "batch_size", "lr", "weight_decay", "augment",
              "num_threads", "snapshot_epochs", "optimizer", "momentum", "nesterov", "schedule",
              "early_stopping_patience", "precision")
#: train keys that may be left out (params files from before they existed), and their default.
TRAIN_OPTIONAL = {"optimizer": "adam", "momentum": 0.9, "nesterov": False, "schedule": "constant",
                  "early_stopping_patience": 0, "precision": "fp32"}
MODEL_KEYS = ("arch", "head", "init_weights", "batch_norm", "width")
LATENCY_KEYS = ("warmup", "repeats", "edge_threads", "edge_slowdown", "edge_profile", "cloud_device",
                "cloud_speedup", "bytes_per_element", "remeasure")
LATENCY_OPTIONAL = {"edge_profile": "", "remeasure": 2}  # latency keys that may be left out, and their default
CALIBRATION_KEYS = ("method", "n_bins", "methods")  # methods: read by stage certify only
NETWORK_KEYS = ("uplink_mbps", "rtt_ms")
EVALUATE_KEYS = ("p_tar", "deadline_p_tar", "t_tar_ms", "batch_size", "batch_order", "resamples", "seed")
CERTIFY_KEYS = ("target_accuracy", "delta", "splits", "calibration_fraction", "fit_fraction", "procedures", "p_value",
                "family", "thresholds", "bootstrap", "seed")
SECTIONS = ("data", "model", "variants", "train", "latency", "calibration", "network", "evaluate", "certify", "link")


# --------------------------------------------------------------------------- primitives


def bad(key: str, value: Any, allowed: str) -> StageError:
    """The one-line error for a bad value."""
    return StageError(f"params.yaml: {key} = {value!r}; allowed: {allowed}")


def _section(params: dict[str, Any], name: str) -> dict[str, Any]:
    section = params.get(name)
    if not isinstance(section, dict):
        raise StageError(f"params.yaml: section {name!r} is missing or not a mapping")
    return section


def _known(section: dict[str, Any], prefix: str, keys: tuple[str, ...]) -> None:
    """Refuse keys the schema does not know (a typo would otherwise be silently ignored)."""
    unknown = [str(k) for k in section if k not in keys]
    if unknown:
        raise StageError(f"params.yaml: {prefix}.{unknown[0]} is not a known key; allowed: {', '.join(keys)}")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _require(section: dict[str, Any], prefix: str, key: str, allowed: str) -> Any:
    if key not in section:
        raise StageError(f"params.yaml: {prefix}.{key} is missing; allowed: {allowed}")
    return section[key]


def _int(section: dict[str, Any], prefix: str, key: str, minimum: int = 1) -> int:
    allowed = f"an integer >= {minimum}"
    value = _require(section, prefix, key, allowed)
    if not _is_int(value) or value < minimum:
        raise bad(f"{prefix}.{key}", value, allowed)
    return value


def _number(section: dict[str, Any], prefix: str, key: str, minimum: float, strict: bool) -> float:
    allowed = f"a number {'>' if strict else '>='} {minimum:g}"
    value = _require(section, prefix, key, allowed)
    if not is_number(value) or not (value > minimum if strict else value >= minimum):
        raise bad(f"{prefix}.{key}", value, allowed)
    return float(value)


def _choice(section: dict[str, Any], prefix: str, key: str, choices: tuple[str, ...]) -> str:
    allowed = " | ".join(choices)
    value = _require(section, prefix, key, allowed)
    if not isinstance(value, str) or value not in choices:
        raise bad(f"{prefix}.{key}", value, allowed)
    return value


def _bool(section: dict[str, Any], prefix: str, key: str) -> bool:
    value = _require(section, prefix, key, "true | false")
    if not isinstance(value, bool):
        raise bad(f"{prefix}.{key}", value, "true | false")
    return value


def _path(section: dict[str, Any], prefix: str, key: str, allowed: str) -> str:
    """An optional path: missing, null or "" mean none."""
    value = section.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise bad(f"{prefix}.{key}", value, allowed)
    return value.strip()


def value_grid(spec: Any, name: str) -> np.ndarray:
    """start, start + step, ... up to stop included, rounded to 10 decimals (no float noise)."""
    if not isinstance(spec, dict) or set(spec) != {"start", "stop", "step"} \
            or not all(is_number(spec[k]) for k in ("start", "stop", "step")):
        raise bad(name, spec, "a mapping of numbers start, stop, step")
    start, stop, step = float(spec["start"]), float(spec["stop"]), float(spec["step"])
    if step <= 0 or stop < start:
        raise bad(name, spec, "step > 0 and stop >= start")
    n = int(math.floor((stop - start) / step + 1e-9)) + 1
    if n > MAX_GRID_POINTS:
        raise bad(name, spec, f"at most {MAX_GRID_POINTS} points (a larger step)")
    return np.round(start + step * np.arange(n), 10)


def _probabilities(values: np.ndarray, name: str, shown: Any) -> np.ndarray:
    if len(values) == 0 or not np.all((values > 0) & (values < 1)):
        raise bad(name, shown, "values in (0, 1)")
    return values


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class DataParams:
    archive: str
    seed: int
    n_train: int
    n_val: int
    n_test: int


def data_params(params: dict[str, Any]) -> DataParams:
    """Section ``data`` (stage prepare). Sizes are bounded by CIFAR-10's 50k/10k images here and by
    the actual archive in prepare."""
    s = _section(params, "data")
    _known(s, "data", DATA_KEYS)
    n_train = _int(s, "data", "n_train")
    if n_train > CIFAR10_TRAIN_IMAGES:
        raise bad("data.n_train", n_train, f"an integer in 1..{CIFAR10_TRAIN_IMAGES} (the CIFAR-10 training set)")
    n_val, n_test = _int(s, "data", "n_val"), _int(s, "data", "n_test")
    if n_val + n_test > CIFAR10_TEST_IMAGES:
        raise bad("data.n_val + data.n_test", n_val + n_test,
                  f"a sum of at most {CIFAR10_TEST_IMAGES} (both come from the CIFAR-10 test set)")
    return DataParams(
        archive=_path(s, "data", "archive", "a path string, or empty"),
        seed=_int(s, "data", "seed", 0),
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
    )


# --------------------------------------------------------------------------- model


def model_spec(params: dict[str, Any]) -> Any:
    """Section ``model`` (optional; missing keys take today's B-AlexNet): the architecture, the
    side-branch head, optional initial weights and the deviations (batch_norm, width); an
    :class:`eeoffload.layout.ModelSpec`."""
    from eeoffload.layout import ARCHS, HEADS, ModelSpec

    s = params.get("model", {})
    if s is None:
        s = {}
    if not isinstance(s, dict):
        raise StageError("params.yaml: section 'model' is not a mapping")
    _known(s, "model", MODEL_KEYS)
    d = ModelSpec()
    spec = ModelSpec(
        arch=_choice(s, "model", "arch", ARCHS) if "arch" in s else d.arch,
        head=_choice(s, "model", "head", HEADS) if "head" in s else d.head,
        init_weights=_path(s, "model", "init_weights", 'a path to a torchvision AlexNet state dict (.pth), or ""'),
        batch_norm=_bool(s, "model", "batch_norm") if "batch_norm" in s else d.batch_norm,
        width=_int(s, "model", "width", 1) if "width" in s else d.width,
    )
    if spec.init_weights and spec.arch != "alexnet224":
        raise bad("model.init_weights", spec.init_weights, f'"" with model.arch = {spec.arch} (weights load into alexnet224 only)')
    if spec.arch == "alexnet224" and (spec.batch_norm or spec.width != 1):
        raise bad("model.batch_norm / model.width", [spec.batch_norm, spec.width],
                  "false / 1 with model.arch = alexnet224 (the deviations are defined for balexnet32)")
    if spec.init_weights and not Path(spec.init_weights).is_file():
        raise bad("model.init_weights", spec.init_weights, 'an existing file (a torchvision AlexNet state dict), or ""')
    return spec


def model_arch(params: dict[str, Any]) -> str:
    """``model.arch`` alone (branch placements are checked against its layers)."""
    from eeoffload.layout import ARCHS

    s = params.get("model") or {}
    if not isinstance(s, dict) or "arch" not in s:
        return "balexnet32"
    return _choice(s, "model", "arch", ARCHS)


# --------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class VariantParams:
    name: str
    branches: list[str]
    exit_weights: list[float]


def _variants(params: dict[str, Any]) -> dict[str, Any]:
    variants = _section(params, "variants")
    if not variants:
        raise StageError("params.yaml: variants is empty; define at least one variant")
    for name in variants:
        if not isinstance(name, str) or not VARIANT_NAME.match(name):
            raise bad("variants", name, "variant names of letters, digits, _ and - (they become file names)")
    return variants


def variant_names(params: dict[str, Any]) -> list[str]:
    return list(_variants(params))


def _variant_section(params: dict[str, Any], name: str) -> dict[str, Any]:
    variants = _variants(params)
    if name not in variants:
        raise StageError(f"unknown variant {name!r}; allowed: {', '.join(map(str, variants))}")
    s = variants[name]
    if not isinstance(s, dict):
        raise StageError(f"params.yaml: variants.{name} must be a mapping with branches and exit_weights")
    _known(s, f"variants.{name}", VARIANT_KEYS)
    return s


def variant_branches(params: dict[str, Any], name: str) -> list[str]:
    """``variants.<name>.branches`` only (stages logits and profile read nothing else of it)."""
    s = _variant_section(params, name)
    key = f"variants.{name}.branches"
    allowed = "a list of layer names such as [relu1, relu2]"
    branches = _require(s, f"variants.{name}", "branches", allowed)
    if not isinstance(branches, list) or not all(isinstance(b, str) for b in branches):
        raise bad(key, branches, allowed)
    from eeoffload.layout import BranchPlacementError, validate_branches

    try:
        ordered = validate_branches(branches, model_arch(params))
    except BranchPlacementError as e:
        raise StageError(f"params.yaml: {key}: {e}") from None
    if ordered != branches:
        raise StageError(f"params.yaml: {key} = {branches}; list them in trunk order: {ordered}")
    return ordered


def variant_params(params: dict[str, Any], name: str) -> VariantParams:
    """``variants.<name>``: branches and one loss weight > 0 per exit."""
    branches = variant_branches(params, name)
    s = _variant_section(params, name)
    n = len(branches) + 1
    allowed = f"{n} numbers > 0 (one per side branch, then the final exit)"
    weights = _require(s, f"variants.{name}", "exit_weights", allowed)
    if not isinstance(weights, list) or len(weights) != n or not all(is_number(w) and w > 0 for w in weights):
        raise bad(f"variants.{name}.exit_weights", weights, allowed)
    return VariantParams(name=name, branches=branches, exit_weights=[float(w) for w in weights])


def variants_params(params: dict[str, Any]) -> dict[str, VariantParams]:
    """Every variant, validated (stages evaluate, plots, report)."""
    return {name: variant_params(params, name) for name in variant_names(params)}


# --------------------------------------------------------------------------- train


@dataclass(frozen=True)
class TrainParams:
    device: str
    seeds: tuple[int, ...]
    trunk_epochs: int
    joint_epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    augment: str  # eeoffload.training.AUGMENTATIONS
    num_threads: int
    snapshot_epochs: tuple[int, ...] = ()
    optimizer: str = "adam"  # adam | sgd
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    schedule: str = "constant"  # constant | cosine (per epoch, to 0 at the last epoch)
    early_stopping_patience: int = 0  # 0 = off
    precision: str = "fp32"  # fp32 | bf16 (autocast)


def _snapshot_epochs(section: dict[str, Any], total: int) -> tuple[int, ...]:
    """``train.snapshot_epochs``: strictly increasing epochs >= 1 (optional, default none). Those past
    the end of the schedule (``total`` epochs) are dropped, so a shorter run keeps the same list."""
    value = section.get("snapshot_epochs", [])
    if value is None:
        return ()
    if not isinstance(value, list) or not all(_is_int(e) and e >= 1 for e in value) \
            or any(a >= b for a, b in zip(value, value[1:])):
        raise bad("train.snapshot_epochs", value, "a list of strictly increasing integers >= 1 (epochs)")
    return tuple(e for e in value if e <= total)


def train_seeds(params: dict[str, Any]) -> tuple[int, ...]:
    """``train.seeds``: the training seeds, distinct integers >= 0; each variant is trained once per
    seed (dvc.yaml's matrix), and evaluate aggregates over them."""
    s = _section(params, "train")
    allowed = "a non-empty list of distinct integers >= 0, e.g. [0, 1, 2]"
    value = _require(s, "train", "seeds", allowed)
    if not isinstance(value, list) or not value or not all(_is_int(k) and k >= 0 for k in value) \
            or len(set(value)) != len(value):
        raise bad("train.seeds", value, allowed)
    return tuple(value)


def train_params(params: dict[str, Any]) -> TrainParams:
    s = _section(params, "train")
    _known(s, "train", TRAIN_KEYS)
    trunk = _int(s, "train", "trunk_epochs", 0)
    joint = _int(s, "train", "joint_epochs", 0)
    if trunk + joint == 0:
        raise bad("train.trunk_epochs + train.joint_epochs", 0, "at least one epoch")
    return TrainParams(
        device=_choice(s, "train", "device", DEVICES),
        seeds=train_seeds(params),
        trunk_epochs=trunk,
        joint_epochs=joint,
        batch_size=_int(s, "train", "batch_size"),
        lr=_number(s, "train", "lr", 0.0, strict=True),
        weight_decay=_number(s, "train", "weight_decay", 0.0, strict=False),
        augment=_augment(s),
        num_threads=_int(s, "train", "num_threads", 0),
        snapshot_epochs=_snapshot_epochs(s, trunk + joint),
        **_train_optional(s),
    )


def _augment(section: dict[str, Any]) -> str:
    """``train.augment``: none | crop_flip | authors; the booleans of older params files mean
    none (false) and crop_flip (true)."""
    from eeoffload.training_options import AUGMENTATIONS

    value = _require(section, "train", "augment", " | ".join(AUGMENTATIONS))
    if isinstance(value, bool):
        return "crop_flip" if value else "none"
    if not isinstance(value, str) or value not in AUGMENTATIONS:
        raise bad("train.augment", value, " | ".join(AUGMENTATIONS))
    return value


def _train_optional(s: dict[str, Any]) -> dict[str, Any]:
    """The optimiser, schedule, early-stopping and precision keys, each defaulting to today's recipe."""
    from eeoffload.training_options import OPTIMIZERS, PRECISIONS, SCHEDULES

    d = TRAIN_OPTIONAL
    out = {
        "optimizer": _choice(s, "train", "optimizer", OPTIMIZERS) if "optimizer" in s else d["optimizer"],
        "momentum": _number(s, "train", "momentum", 0.0, strict=False) if "momentum" in s else d["momentum"],
        "nesterov": _bool(s, "train", "nesterov") if "nesterov" in s else d["nesterov"],
        "schedule": _choice(s, "train", "schedule", SCHEDULES) if "schedule" in s else d["schedule"],
        "early_stopping_patience": (_int(s, "train", "early_stopping_patience", 0)
                                    if "early_stopping_patience" in s else d["early_stopping_patience"]),
        "precision": _choice(s, "train", "precision", PRECISIONS) if "precision" in s else d["precision"],
    }
    if out["momentum"] >= 1:
        raise bad("train.momentum", out["momentum"], "a number in [0, 1)")
    if out["nesterov"] and (out["optimizer"] != "sgd" or out["momentum"] == 0):
        raise bad("train.nesterov", True, "false unless train.optimizer = sgd with train.momentum > 0")
    return out


@dataclass(frozen=True)
class RuntimeParams:
    device: str
    num_threads: int


def runtime_params(params: dict[str, Any]) -> RuntimeParams:
    """``train.device`` and ``train.num_threads`` only (stage logits reads nothing else of train)."""
    s = _section(params, "train")
    return RuntimeParams(device=_choice(s, "train", "device", DEVICES), num_threads=_int(s, "train", "num_threads", 0))


def torch_device(name: str) -> str:
    """Resolve ``auto`` to cuda when present, else cpu; refuse ``cuda`` without a GPU."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise StageError("params.yaml: train.device = 'cuda' but no CUDA device is available; allowed here: auto | cpu")
    return name


# --------------------------------------------------------------------------- latency


@dataclass(frozen=True)
class LatencyParams:
    warmup: int
    repeats: int
    edge_threads: int
    edge_slowdown: float
    edge_profile: str
    cloud_device: str
    cloud_speedup: float
    bytes_per_element: int
    remeasure: int = 2  # re-measurements allowed when a check of the profile fails (0: warn only)


def latency_params(params: dict[str, Any]) -> LatencyParams:
    s = _section(params, "latency")
    _known(s, "latency", LATENCY_KEYS)
    for key in LATENCY_KEYS:
        if key not in s and key not in LATENCY_OPTIONAL:
            raise StageError(f"params.yaml: latency.{key} is missing")
    bpe = s["bytes_per_element"]
    if not _is_int(bpe) or bpe not in BYTES_PER_ELEMENT:
        raise bad("latency.bytes_per_element", bpe, " | ".join(map(str, BYTES_PER_ELEMENT)))
    return LatencyParams(
        warmup=_int(s, "latency", "warmup", 0),
        repeats=_int(s, "latency", "repeats", 1),
        edge_threads=_int(s, "latency", "edge_threads", 1),
        edge_slowdown=_number(s, "latency", "edge_slowdown", 0.0, strict=True),
        edge_profile=_path(s, "latency", "edge_profile", 'a path to a layer,ms CSV, or ""'),
        cloud_device=_choice(s, "latency", "cloud_device", DEVICES),
        cloud_speedup=_number(s, "latency", "cloud_speedup", 0.0, strict=True),
        bytes_per_element=bpe,
        remeasure=_int(s, "latency", "remeasure", 0) if "remeasure" in s else LATENCY_OPTIONAL["remeasure"],
    )


# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class CalibrationParams:
    method: str
    n_bins: int


def calibration_params(params: dict[str, Any]) -> CalibrationParams:
    s = _section(params, "calibration")
    _known(s, "calibration", CALIBRATION_KEYS)
    method = s.get("method")
    if isinstance(method, str) and method in RENAMED_CALIBRATION_METHODS:
        raise bad("calibration.method", method, f"{' | '.join(CALIBRATION_METHODS)} "
                  f"({method!r} is now {RENAMED_CALIBRATION_METHODS[method]!r})")
    return CalibrationParams(method=_choice(s, "calibration", "method", CALIBRATION_METHODS),
                             n_bins=_int(s, "calibration", "n_bins"))


# --------------------------------------------------------------------------- network, evaluate


@dataclass(frozen=True)
class NetworkParams:
    uplink_mbps: float
    rtt_ms: float


def network_params(params: dict[str, Any]) -> NetworkParams:
    s = _section(params, "network")
    _known(s, "network", NETWORK_KEYS)
    return NetworkParams(uplink_mbps=_number(s, "network", "uplink_mbps", 0.0, strict=True),
                         rtt_ms=_number(s, "network", "rtt_ms", 0.0, strict=False))


@dataclass(frozen=True)
class EvaluateParams:
    p_tar: np.ndarray
    deadline_p_tar: np.ndarray
    t_tar_ms: np.ndarray
    batch_size: int
    batch_order: str
    resamples: int
    seed: int


def evaluate_params(params: dict[str, Any]) -> EvaluateParams:
    s = _section(params, "evaluate")
    _known(s, "evaluate", EVALUATE_KEYS)
    spec = _require(s, "evaluate", "p_tar", "a mapping of numbers start, stop, step")
    p_tar = _probabilities(value_grid(spec, "evaluate.p_tar"), "evaluate.p_tar", spec)
    deadline = _require(s, "evaluate", "deadline_p_tar", "a list of numbers in (0, 1)")
    if not isinstance(deadline, list) or not all(is_number(p) for p in deadline):
        raise bad("evaluate.deadline_p_tar", deadline, "a list of numbers in (0, 1)")
    deadline_p_tar = _probabilities(np.round(np.array(deadline, dtype=np.float64), 10),
                                    "evaluate.deadline_p_tar", deadline)
    t_tar = value_grid(_require(s, "evaluate", "t_tar_ms", "a mapping of numbers start, stop, step"),
                       "evaluate.t_tar_ms")
    if t_tar[0] < 0:
        raise bad("evaluate.t_tar_ms.start", float(t_tar[0]), "a number >= 0")
    return EvaluateParams(
        p_tar=p_tar,
        deadline_p_tar=deadline_p_tar,
        t_tar_ms=t_tar,
        batch_size=_int(s, "evaluate", "batch_size"),
        batch_order=_choice(s, "evaluate", "batch_order", BATCH_ORDERS),
        resamples=_int(s, "evaluate", "resamples"),
        seed=_int(s, "evaluate", "seed", 0),
    )


# --------------------------------------------------------------------------- everything


@dataclass(frozen=True)
class Params:
    data: DataParams
    model: Any  # eeoffload.layout.ModelSpec
    variants: dict[str, VariantParams]
    train: TrainParams
    latency: LatencyParams
    calibration: CalibrationParams
    network: NetworkParams
    evaluate: EvaluateParams


def validate_params(params: dict[str, Any]) -> Params:
    """Every section, then the rules that span sections; StageError on the first problem."""
    p = Params(
        data=data_params(params),
        model=model_spec(params),
        variants=variants_params(params),
        train=train_params(params),
        latency=latency_params(params),
        calibration=calibration_params(params),
        network=network_params(params),
        evaluate=evaluate_params(params),
    )
    if p.evaluate.batch_size > p.data.n_test:
        raise bad("evaluate.batch_size", p.evaluate.batch_size,
                  f"an integer in 1..data.n_test = {p.data.n_test} (a batch needs that many test samples)")
    certify_params(params)  # the sections of the optional-looking stages are checked too
    link_params(params)
    return p


def main(path: str = str(PARAMS_FILE)) -> None:
    p = validate_params(read_params(Path(path)))
    print(f"{path}: valid; variants {', '.join(p.variants)}")


# --------------------------------------------------------------------------- certify

#: eeoffload.certify.{PROCEDURES, P_VALUES, FAMILIES} (checked equal in tests/test_certify.py;
#: repeated here so this module imports no science code). The calibrators: CALIBRATOR_METHODS, above.
CERTIFY_PROCEDURES = ("fixed_sequence", "holm")
CERTIFY_P_VALUES = ("hoeffding_bentkus", "binomial")
CERTIFY_FAMILIES = ("shared",)


@dataclass(frozen=True)
class CertifyParams:
    methods: tuple[str, ...]
    n_bins: int
    targets: np.ndarray
    delta: float
    splits: int
    calibration_fraction: float
    fit_fraction: float
    procedures: tuple[str, ...]
    p_value: str
    family: str
    thresholds: np.ndarray
    bootstrap: int
    seed: int


def _choices(section: dict[str, Any], prefix: str, key: str, choices: tuple[str, ...]) -> tuple[str, ...]:
    """A non-empty list of distinct values of ``choices``."""
    allowed = f"a non-empty list of distinct values of {' | '.join(choices)}"
    value = _require(section, prefix, key, allowed)
    if not isinstance(value, list) or not value or len(set(map(str, value))) != len(value) \
            or not all(isinstance(v, str) and v in choices for v in value):
        raise bad(f"{prefix}.{key}", value, allowed)
    return tuple(value)


def _fraction(section: dict[str, Any], prefix: str, key: str) -> float:
    value = _require(section, prefix, key, "a number in (0, 1)")
    if not is_number(value) or not 0 < value < 1:
        raise bad(f"{prefix}.{key}", value, "a number in (0, 1)")
    return float(value)


def certify_params(params: dict[str, Any]) -> CertifyParams:
    """Section ``certify`` plus ``calibration.methods`` and ``calibration.n_bins`` (stage certify)."""
    cal = _section(params, "calibration")
    _known(cal, "calibration", CALIBRATION_KEYS)
    s = _section(params, "certify")
    _known(s, "certify", CERTIFY_KEYS)
    allowed = "a non-empty list of strictly increasing numbers in (0, 1)"
    targets = _require(s, "certify", "target_accuracy", allowed)
    if not isinstance(targets, list) or not all(is_number(t) for t in targets) \
            or any(a >= b for a, b in zip(targets, targets[1:])):
        raise bad("certify.target_accuracy", targets, allowed)
    grid = value_grid(_require(s, "certify", "thresholds", "a mapping of numbers start, stop, step"),
                      "certify.thresholds")
    if grid[0] < 0 or grid[-1] > 1:
        raise bad("certify.thresholds", s["thresholds"], "start >= 0 and stop <= 1 (confidences)")
    return CertifyParams(
        methods=_choices(cal, "calibration", "methods", CALIBRATOR_METHODS),
        n_bins=_int(cal, "calibration", "n_bins"),
        targets=_probabilities(np.round(np.array(targets, dtype=np.float64), 10), "certify.target_accuracy", targets),
        delta=_fraction(s, "certify", "delta"),
        splits=_int(s, "certify", "splits"),
        calibration_fraction=_fraction(s, "certify", "calibration_fraction"),
        fit_fraction=_fraction(s, "certify", "fit_fraction"),
        procedures=_choices(s, "certify", "procedures", CERTIFY_PROCEDURES),
        p_value=_choice(s, "certify", "p_value", CERTIFY_P_VALUES),
        family=_choice(s, "certify", "family", CERTIFY_FAMILIES),
        thresholds=grid,
        bootstrap=_int(s, "certify", "bootstrap", 0),
        seed=_int(s, "certify", "seed", 0),
    )


# --------------------------------------------------------------------------- link (stage measure_link)

#: eeoffload.wire.ENCODINGS / COMPRESSORS (repeated so that this module imports no science code;
#: checked equal in tests/test_link_stage.py).
LINK_METHODS = ("auto", "netns", "loopback")
LINK_ENCODINGS = ("fp32", "fp16", "int8")
LINK_COMPRESSORS = ("none", "zlib")
LINK_KEYS = ("method", "n_samples", "p_tar", "encoding", "compressor", "uplink_trace", "edge_threads",
             "cloud_threads", "loss_pct", "max_seconds", "tolerance_pct")


@dataclass(frozen=True)
class LinkParams:
    method: str
    n_samples: int
    p_tar: float
    encoding: str
    compressor: str
    uplink_trace: str
    edge_threads: int
    cloud_threads: int
    loss_pct: float
    max_seconds: float
    tolerance_pct: float


def link_params(params: dict[str, Any]) -> LinkParams:
    """Section ``link`` (stage measure_link, docs/link.md)."""
    s = _section(params, "link")
    _known(s, "link", LINK_KEYS)
    p_tar = _number(s, "link", "p_tar", 0.0, strict=True)
    if p_tar >= 1:
        raise bad("link.p_tar", p_tar, "a number in (0, 1)")
    loss = _number(s, "link", "loss_pct", 0.0, strict=False)
    if loss >= 100:
        raise bad("link.loss_pct", loss, "a number in [0, 100)")
    return LinkParams(
        method=_choice(s, "link", "method", LINK_METHODS),
        n_samples=_int(s, "link", "n_samples"),
        p_tar=p_tar,
        encoding=_choice(s, "link", "encoding", LINK_ENCODINGS),
        compressor=_choice(s, "link", "compressor", LINK_COMPRESSORS),
        uplink_trace=_path(s, "link", "uplink_trace", 'a path to a time_s,mbps CSV, or ""'),
        edge_threads=_int(s, "link", "edge_threads"),
        cloud_threads=_int(s, "link", "cloud_threads"),
        loss_pct=loss,
        max_seconds=_number(s, "link", "max_seconds", 0.0, strict=True),
        tolerance_pct=_number(s, "link", "tolerance_pct", 0.0, strict=True),
    )


if __name__ == "__main__":
    if len(sys.argv) > 2:
        raise SystemExit("usage: python -m pipeline.params [params.yaml]")
    from pipeline.io import run_stage

    run_stage("params", main, *sys.argv[1:], record_timing=False)
