"""Typed, validated views of params.yaml sections: one clear error naming the key and allowed values.

Plain dataclasses (no pydantic) so that stage scripts run where only torch/numpy/pandas exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eeoffload.model import BranchPlacementError, validate_branches
from pipeline.io import StageError


def _section(params: dict[str, Any], name: str) -> dict[str, Any]:
    section = params.get(name)
    if not isinstance(section, dict):
        raise StageError(f"params.yaml: section {name!r} is missing or not a mapping")
    return section


def _get(section: dict[str, Any], prefix: str, key: str, kind: type | tuple[type, ...], allowed: str) -> Any:
    if key not in section:
        raise StageError(f"params.yaml: {prefix}.{key} is missing; allowed: {allowed}")
    value = section[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise StageError(f"params.yaml: {prefix}.{key} = {value!r}; allowed: {allowed}")
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kinds):
        raise StageError(f"params.yaml: {prefix}.{key} = {value!r}; allowed: {allowed}")
    return value


def _positive_int(section: dict[str, Any], prefix: str, key: str, minimum: int = 1) -> int:
    value = _get(section, prefix, key, int, f"an integer >= {minimum}")
    if value < minimum:
        raise StageError(f"params.yaml: {prefix}.{key} = {value!r}; allowed: an integer >= {minimum}")
    return value


def _choice(section: dict[str, Any], prefix: str, key: str, choices: tuple[str, ...]) -> str:
    value = _get(section, prefix, key, str, " | ".join(choices))
    if value not in choices:
        raise StageError(f"params.yaml: {prefix}.{key} = {value!r}; allowed: {' | '.join(choices)}")
    return value


@dataclass(frozen=True)
class DataParams:
    archive: str
    seed: int
    n_train: int
    n_val: int
    n_test: int


def data_params(params: dict[str, Any]) -> DataParams:
    s = _section(params, "data")
    archive = s.get("archive") or ""
    if not isinstance(archive, str):
        raise StageError(f"params.yaml: data.archive = {archive!r}; allowed: a path string or empty")
    return DataParams(
        archive=archive,
        seed=_positive_int(s, "data", "seed", 0),
        n_train=_positive_int(s, "data", "n_train"),
        n_val=_positive_int(s, "data", "n_val"),
        n_test=_positive_int(s, "data", "n_test"),
    )


@dataclass(frozen=True)
class VariantParams:
    name: str
    branches: list[str]
    exit_weights: list[float]


def variant_names(params: dict[str, Any]) -> list[str]:
    variants = _section(params, "variants")
    if not variants:
        raise StageError("params.yaml: variants is empty; define at least one variant")
    return list(variants)


def variant_params(params: dict[str, Any], name: str) -> VariantParams:
    variants = _section(params, "variants")
    if name not in variants:
        raise StageError(f"unknown variant {name!r}; allowed: {', '.join(map(str, variants))}")
    s = variants[name]
    prefix = f"variants.{name}"
    if not isinstance(s, dict):
        raise StageError(f"params.yaml: {prefix} must be a mapping with branches and exit_weights")
    branches = _get(s, prefix, "branches", list, "a list of layer names such as [relu1, relu2]")
    try:
        ordered = validate_branches([str(b) for b in branches])
    except BranchPlacementError as e:
        raise StageError(f"params.yaml: {prefix}.branches: {e}") from None
    if ordered != [str(b) for b in branches]:
        raise StageError(f"params.yaml: {prefix}.branches = {branches}; list them in trunk order: {ordered}")
    weights = _get(s, prefix, "exit_weights", list, f"a list of {len(ordered) + 1} numbers > 0")
    if len(weights) != len(ordered) + 1 or not all(
        isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0 for w in weights
    ):
        raise StageError(
            f"params.yaml: {prefix}.exit_weights = {weights}; allowed: {len(ordered) + 1} numbers > 0 "
            f"(one per side branch, then the final exit)"
        )
    return VariantParams(name=name, branches=ordered, exit_weights=[float(w) for w in weights])


DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TrainParams:
    device: str
    seed: int
    trunk_epochs: int
    joint_epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    augment: bool
    num_threads: int


def train_params(params: dict[str, Any]) -> TrainParams:
    s = _section(params, "train")
    lr = _get(s, "train", "lr", float, "a number > 0")
    if lr <= 0:
        raise StageError(f"params.yaml: train.lr = {lr!r}; allowed: a number > 0")
    wd = _get(s, "train", "weight_decay", float, "a number >= 0")
    if wd < 0:
        raise StageError(f"params.yaml: train.weight_decay = {wd!r}; allowed: a number >= 0")
    trunk = _positive_int(s, "train", "trunk_epochs", 0)
    joint = _positive_int(s, "train", "joint_epochs", 0)
    if trunk + joint == 0:
        raise StageError("params.yaml: train.trunk_epochs + train.joint_epochs = 0; allowed: at least one epoch")
    return TrainParams(
        device=_choice(s, "train", "device", DEVICES),
        seed=_positive_int(s, "train", "seed", 0),
        trunk_epochs=trunk,
        joint_epochs=joint,
        batch_size=_positive_int(s, "train", "batch_size"),
        lr=lr,
        weight_decay=wd,
        augment=_get(s, "train", "augment", bool, "true | false"),
        num_threads=_positive_int(s, "train", "num_threads", 0),
    )


def torch_device(name: str) -> str:
    """Resolve ``auto`` to cuda when present, else cpu; refuse ``cuda`` without a GPU."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise StageError("params.yaml: train.device = 'cuda' but no CUDA device is available; allowed here: auto | cpu")
    return name
