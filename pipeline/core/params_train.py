"""The section that defines training: ``train`` (the recipe, the seeds, the device), and the
device a stage runs on. Re-exported by :mod:`pipeline.core.params`, which declares the other sections.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from eeoffload.training_options import AUGMENTATIONS, OPTIMIZERS, PRECISIONS, SCHEDULES
from pipeline.core.io import StageError
from pipeline.core.params_schema import (REQUIRED, Bool, Choice, Custom, Int, Number, Seeds, bad, is_int, read,
                                    read_section, rules, section)

DEVICES = ("auto", "cpu", "cuda")



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
    p = TrainParams(**read_section(section(params, "train"), "train", TrainParams))
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
    train = section(params, "train")
    return RuntimeParams(*(read(train, "train", key, *rules(TrainParams)[key]) for key in ("device", "num_threads")))


def torch_device(name: str) -> str:
    """Resolve ``auto`` to cuda when present, else cpu; refuse ``cuda`` without a GPU."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise StageError("params.yaml: train.device = 'cuda' but no CUDA device is available; allowed here: auto | cpu")
    return name
