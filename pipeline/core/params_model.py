"""The sections that define the network: ``model`` (an :class:`eeoffload.layout.ModelSpec`) and
``variants`` (where the side branches go, checked against the architecture's layers, and the loss
weight of each exit). Re-exported by :mod:`pipeline.core.params`, which declares the other sections.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eeoffload.layout import ARCHS, HEADS, BranchPlacementError, ModelSpec, validate_branches
from pipeline.core.io import StageError
from pipeline.core.params_schema import Bool, Choice, Custom, Int, PathText, bad, is_number, known, read, read_section, section

#: Variant names become file names (data/models/<v>.pt): letters, digits, _ and - only.
VARIANT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")

# --------------------------------------------------------------------------- model

_M = ModelSpec()
#: Section ``model`` (optional; a missing key takes today's B-AlexNet): key -> (rule, default).
MODEL_RULES = {"arch": (Choice(ARCHS), _M.arch), "head": (Choice(HEADS), _M.head),
               "init_weights": (PathText('a path to a torchvision AlexNet state dict (.pth), or ""'), ""),
               "batch_norm": (Bool(), _M.batch_norm), "width": (Int(1), _M.width)}


def model_spec(params: dict[str, Any]) -> ModelSpec:
    """Section ``model``: the architecture, the side-branch head, optional initial weights and the
    deviations (batch_norm, width); an :class:`eeoffload.layout.ModelSpec`."""
    spec = ModelSpec(**read_section(section(params, "model", optional=True), "model", MODEL_RULES))
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
    s = params.get("model") or {}
    return read(s, "model", "arch", *MODEL_RULES["arch"]) if isinstance(s, dict) else _M.arch


# --------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class VariantParams:
    name: str
    branches: list[str]
    exit_weights: list[float]


def _variants(params: dict[str, Any]) -> dict[str, Any]:
    variants = section(params, "variants")
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
    known(s, f"variants.{name}", ("branches", "exit_weights"))
    return s


def variant_branches(params: dict[str, Any], name: str) -> list[str]:
    """``variants.<name>.branches`` only (stages logits and profile read nothing else of it)."""
    key = f"variants.{name}.branches"
    allowed = "a list of layer names such as [relu1, relu2]"
    branches = read(_variant_section(params, name), f"variants.{name}", "branches", Custom(lambda v, k: v, allowed))
    if not isinstance(branches, list) or not all(isinstance(b, str) for b in branches):
        raise bad(key, branches, allowed)
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
    n = len(branches) + 1
    allowed = f"{n} numbers > 0 (one per side branch, then the final exit)"
    weights = read(_variant_section(params, name), f"variants.{name}", "exit_weights", Custom(lambda v, k: v, allowed))
    if not isinstance(weights, list) or len(weights) != n or not all(is_number(w) and w > 0 for w in weights):
        raise bad(f"variants.{name}.exit_weights", weights, allowed)
    return VariantParams(name=name, branches=branches, exit_weights=[float(w) for w in weights])


def variants_params(params: dict[str, Any]) -> dict[str, VariantParams]:
    """Every variant, validated (stages evaluate, plots, report)."""
    return {name: variant_params(params, name) for name in variant_names(params)}
