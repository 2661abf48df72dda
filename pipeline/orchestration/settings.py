"""The settings of an experiment or sweep point: flat ``{dotted.key: value}`` overrides of
params.yaml, as ``dvc exp run -S`` arguments, checked by the typed schema (pipeline.core.params) before
any DVC command runs. No Prefect here: the flows, the sweeps and the sweep points share it.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from pipeline.core.overlay import set_args


class BadParams(ValueError):
    """params.yaml (or the settings of an experiment or sweep point) fails the typed schema."""




def check_params(params: dict[str, Any] | None, source: str) -> None:
    """The typed schema of pipeline.core.params on the whole file (``params``, or read from the path
    ``source`` if None), before any DVC command runs: a typo fails the flow in a second with one
    line ``<source>: <key> = <value>; allowed: ...`` (not an hour later in a stage)."""
    from pipeline.core.io import StageError, read_params
    from pipeline.core.params import validate_params

    try:
        validate_params(read_params(Path(source)) if params is None else params)
    except StageError as e:
        message = str(e)
        for prefix in (f"{source}: ", "params.yaml: "):  # pipeline.core.params names the file itself
            message = message.removeprefix(prefix)
        raise BadParams(f"{source}: {message}") from None


def with_settings(params: dict[str, Any], flat: dict[str, Any]) -> dict[str, Any]:
    """``params`` with the dotted ``flat`` settings written in (what `dvc exp run -S` will make)."""
    out = copy.deepcopy(params)
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for name in parents:
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise BadParams(f"-S {key}={value!r}: {name} is not a section of params.yaml")
        node[leaf] = value
    return out


def exp_set_args(flat: dict[str, Any]) -> list[str]:
    """``-S key=value`` arguments for `dvc exp run` (pipeline.core.overlay.set_args), each on one line:
    DVC's override grammar rejects the line breaks YAML puts into long lists."""
    return [re.sub(r"\n\s*", " ", arg) for arg in set_args(flat)]


def experiment_settings(uplink_mbps: float | None = None, rtt_ms: float | None = None,
                        p_tar: dict[str, float] | None = None, deadline_p_tar: list[float] | None = None,
                        branches: dict[str, list[str]] | None = None, trunk_epochs: int | None = None,
                        joint_epochs: int | None = None, extra: dict[str, Any] | None = None,
                        params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Flat {dotted.key: value} for `dvc exp run -S`; a branch list of a new length gets matching
    exit_weights (1.0 for the first branch down to 0.3 for the final exit)."""
    flat: dict[str, Any] = {}
    if uplink_mbps is not None:
        flat["network.uplink_mbps"] = float(uplink_mbps)
    if rtt_ms is not None:
        flat["network.rtt_ms"] = float(rtt_ms)
    if p_tar:
        for k, v in p_tar.items():
            flat[f"evaluate.p_tar.{k}"] = float(v)
    if deadline_p_tar:
        flat["evaluate.deadline_p_tar"] = [float(v) for v in deadline_p_tar]
    if trunk_epochs is not None:
        flat["train.trunk_epochs"] = int(trunk_epochs)
    if joint_epochs is not None:
        flat["train.joint_epochs"] = int(joint_epochs)
    for variant, names in (branches or {}).items():
        names = list(names)
        flat[f"variants.{variant}.branches"] = names
        current = ((params or {}).get("variants") or {}).get(variant) or {}
        if len(current.get("exit_weights") or []) != len(names) + 1:
            n = len(names) + 1
            flat[f"variants.{variant}.exit_weights"] = [round(1.0 - 0.7 * i / max(n - 1, 1), 3) for i in range(n)]
    flat.update(extra or {})
    return flat
