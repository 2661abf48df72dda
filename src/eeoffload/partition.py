"""The device part and the cloud part of a trained branched AlexNet (any architecture of
:func:`eeoffload.model.build_model`), run as two separate programs.

Paper section III: the device runs the trunk up to the partition layer (the last branch point)
and the side branches; a sample leaves at the first side branch whose confidence
max softmax(z_k / T_k) (eq. 2) reaches p_tar; otherwise the partition layer's output is sent to
the cloud, which runs the remaining trunk layers and classifies it at the final exit. The layers
run as defined (:meth:`eeoffload.model.BAlexNet.reference_forward`), one sample at a time, in
eval mode, as the latency model times them (docs/latency.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from eeoffload import offload
from eeoffload.model import BAlexNet


@dataclass(frozen=True)
class EdgeResult:
    exit: int  # 1-based exit; n (= number of exits) means offloaded
    predicted: int  # the side branch's class, or -1 when offloaded
    partition: torch.Tensor | None  # the partition layer's output (1, ...) when offloaded


class EdgePart:
    """The device program: trunk segments up to each branch point, each followed by its branch."""

    def __init__(self, model: BAlexNet) -> None:
        model.eval()
        names = [name for name, _ in model.trunk.named_children()]
        layers = dict(model.trunk.named_children())
        self.segments: list[tuple[nn.Sequential, nn.Module]] = []
        start = 0
        for point in model.branch_points:
            stop = names.index(point) + 1
            self.segments.append((nn.Sequential(*[layers[n] for n in names[start:stop]]), model.branches[point]))
            start = stop
        self.n_exits = model.num_exits

    @torch.no_grad()
    def run(self, image: torch.Tensor, temperatures: Sequence[float], p_tar: float) -> EdgeResult:
        """Decide one sample (image (1, 3, 32, 32), normalised: ``model.input_shape`` for every
        architecture) with exit temperatures 1..n-1."""
        x = image
        for k, (trunk, branch) in enumerate(self.segments):
            x = trunk(x)
            logits = branch(x)
            probs = torch.softmax(logits / temperatures[k], dim=1)
            confidence, predicted = probs.max(dim=1)
            if offload.is_confident(float(confidence), p_tar):  # section III's rule, one sample
                return EdgeResult(k + 1, int(predicted), None)
        return EdgeResult(self.n_exits, -1, x)


class CloudPart:
    """The cloud program: the trunk layers after the partition layer, up to the final exit."""

    def __init__(self, model: BAlexNet) -> None:
        model.eval()
        names = [name for name, _ in model.trunk.named_children()]
        layers = dict(model.trunk.named_children())
        self.rest = nn.Sequential(*[layers[n] for n in names[names.index(model.partition_layer) + 1:]])

    @torch.no_grad()
    def run(self, partition: torch.Tensor) -> torch.Tensor:
        """Final-exit logits (B, 10) of partition tensors (B, ...)."""
        return self.rest(partition)
