"""The input every trunk layer and side branch of a branched AlexNet sees, and its output size.

A zero image of the model's ``input_shape`` propagated through the trunk. Used by the timing code
(:mod:`eeoffload.latency_measure`) and by the latency model for the partition tensor's size
(:mod:`eeoffload.latency`), which imports it only when it needs the shapes; kept apart so that
neither of those two modules imports the other's half (latency_measure imports latency, not back).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from eeoffload.layout import branch_name

if TYPE_CHECKING:
    from eeoffload.model import BAlexNet


def layer_inputs(model: BAlexNet, device: torch.device | str) -> list[tuple[str, str, nn.Module, torch.Tensor]]:
    """(row name, part, module, the input tensor it sees) for every trunk layer and side branch, in
    execution order (each branch right after the trunk layer it follows): a zero image of the
    model's ``input_shape`` propagated through the trunk, so every module gets the real shape it sees
    in the network (alexnet224's first row is its resize of the 32x32 input to 224x224)."""
    x = torch.zeros(1, *model.input_shape, device=device)
    rows = []
    branch_k = {name: k for k, name in enumerate(model.branch_points, start=1)}
    with torch.no_grad():
        for name, layer in model.trunk.named_children():
            rows.append((name, "trunk", layer, x))
            x = layer(x)
            if name in branch_k:
                k = branch_k[name]
                rows.append((branch_name(k), branch_name(k), model.branches[name], x))
    return rows


def output_elements(model: BAlexNet) -> dict[str, int]:
    """Output elements per sample of every trunk layer and side branch (``branch<k>``)."""
    device = next(model.parameters()).device
    with torch.no_grad():
        return {name: int(module(x).numel()) for name, _, module, x in layer_inputs(model, device)}
