"""Params overlays (configs/*.yaml): deep-merge into params, or turn into `dvc exp run -S` args
(``python -m pipeline overlay configs/quick.yaml`` prints ``-S train.joint_epochs=6 ...``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists are leaves."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with ``overlay``'s leaves written over it."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_overlay(path: str | Path) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise SystemExit(f"{path}: an overlay must be a mapping of params sections")
    return data


def set_args(overlay: dict[str, Any]) -> list[str]:
    """`dvc exp run` arguments that apply an overlay: -S key=value per leaf."""
    args = []
    for key, value in flatten(overlay).items():
        args += ["-S", f"{key}={yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix('...').strip()}"]
    return args


def set_args_overrides(items: list[str]) -> dict[str, Any]:
    """``["network.uplink_mbps=5", ...]`` (the ``-S`` syntax) as a nested overlay; values parsed as YAML."""
    overlay: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"-S {item!r}: expected KEY=VALUE, e.g. network.uplink_mbps=5")
        node = overlay
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return overlay
