"""Section ``shift`` of params.yaml (stages shift and shift_eval; docs/shift.md), declared like the
others (:mod:`pipeline.core.params_schema`): one line naming the key and the allowed values on a bad one.

Its own module, so that only the shift stages (and validate) import the corruptions' vocabulary
(dvc.yaml's code deps follow the imports: tests/test_dvc_contract.py). Every key has a default and
the section may be left out (params files from before it existed: the defaults below).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eeoffload.corruptions import CORRUPTIONS, SEVERITIES
from pipeline.core.params import train_seeds
from pipeline.core.params_schema import Choices, Custom, Fraction, Int, Number, Seeds, bad, is_int, read_section, section

DEFAULT_CORRUPTIONS = CORRUPTIONS
DEFAULT_SEVERITIES = (1, 3, 5)
SEVERITIES_ALLOWED = f"a non-empty list of distinct integers in {SEVERITIES[0]}..{SEVERITIES[-1]}, e.g. [1, 3, 5]"


def _severities(value: Any, key: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value or len(set(value)) != len(value) \
            or not all(is_int(s) and s in SEVERITIES for s in value):
        raise bad(key, value, SEVERITIES_ALLOWED)
    return tuple(sorted(value))


def _seeds(value: Any, key: str) -> Seeds:
    if not isinstance(value, list) or not value or not all(is_int(k) and k >= 0 for k in value) \
            or len(set(value)) != len(value):
        raise bad(key, value, "a non-empty list of distinct seeds of train.seeds, e.g. [0]")
    return Seeds(value)


@dataclass(frozen=True)
class ShiftParams:
    # stage shift: which models, which corrupted images
    seeds: Seeds = Custom(_seeds, "a non-empty list of distinct seeds of train.seeds").field(Seeds([0]))  # noqa: RUF009
    corruptions: tuple[str, ...] = Choices(CORRUPTIONS).field(DEFAULT_CORRUPTIONS)
    severities: tuple[int, ...] = Custom(_severities, SEVERITIES_ALLOWED).field(DEFAULT_SEVERITIES)
    max_images: int = Int(0).field(1000)  # per split, 0 = all
    seed: int = Int(0).field(0)
    # stage shift_eval: the rules, the certified rule, the monitor
    p_tar: float = Number(0.0, strict=True, below=1.0).field(0.875)
    target_accuracy: float = Fraction().field(0.85)
    delta: float = Fraction().field(0.1)
    splits: int = Int(1).field(100)
    fit_fraction: float = Fraction().field(0.5)
    batch_size: int = Int(1).field(512)
    resamples: int = Int(1).field(100)
    monitor_alpha: float = Fraction().field(0.01)
    monitor_jump: float = Fraction().field(0.01)
    monitor_streams: int = Int(1).field(20)


def shift_params(params: dict[str, Any], check_seeds: bool = True) -> ShiftParams:
    """Section ``shift`` (optional: the defaults). With ``check_seeds`` (stage validate), also the
    rule that spans sections: ``shift.seeds`` must be seeds of ``train.seeds``. The shift stages
    leave it to validate, so that adding a training seed does not re-run them (their dvc.yaml
    params do not list train.seeds)."""
    p = ShiftParams(**read_section(section(params, "shift", optional=True), "shift", ShiftParams))
    if not check_seeds:
        return p
    trained = train_seeds(params)
    if not set(p.seeds) <= set(trained):
        raise bad("shift.seeds", list(p.seeds), f"seeds of train.seeds = {list(trained)}")
    return p
