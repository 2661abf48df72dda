"""B-AlexNet: BranchyNet's CIFAR-10 AlexNet (32x32 input) with side branches placed by layer name.

Read top to bottom: the trunk is a list of named layers (paper Fig. 1; BranchyNet [5]); a side
branch is a small classifier head attached after one trunk layer; the device runs every trunk
layer up to the last branch point plus the branches, the cloud runs the remaining trunk layers.

Trunk (shapes for one 3x32x32 image):

    conv1  5x5, 32, pad 2    -> 32x32x32
    relu1
    pool1  max 3/2, ceil     -> 32x16x16
    lrn1
    conv2  5x5, 64, pad 2    -> 64x16x16
    relu2
    pool2  max 3/2, ceil     -> 64x8x8
    lrn2
    conv3  3x3, 96, pad 1    -> 96x8x8
    relu3
    conv4  3x3, 96, pad 1    -> 96x8x8
    relu4
    conv5  3x3, 64, pad 1    -> 64x8x8
    relu5
    pool5  max 3/2, ceil     -> 64x4x4
    flatten                  -> 1024
    fc1 256, relu6, drop6 0.5
    fc2 128, relu7, drop7 0.5
    fc3 10                   -> final exit

Side branch after a layer with a CxHxW output (see :func:`branch_head`): pool 3/2 (only if H > 4),
LRN, conv 3x3 32 pad 1, ReLU, pool 3/2 (only if the map is still larger than 4x4), flatten, FC 10.
After a vector layer (relu6, relu7): FC 10.

``BAlexNet.reference_forward`` is this definition, layer by layer. ``BAlexNet.forward`` computes
the same values and gradients with less memory traffic (see :func:`forward_plan`): a head shares
the trunk's pool and LRN when they are the same layers on the same tensor, a max-pool runs before
the ReLU that precedes it, and every ReLU works in place.

Length (about 305 lines): the plain definition first (``BAlexNet.reference_forward``), then the
fast paths (LRN, forward plan) that tests/test_perf_equivalence.py proves equal to it.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from eeoffload.layout import BRANCHABLE_LAYERS, BranchPlacementError, validate_branches  # noqa: F401

NUM_CLASSES = 10
INPUT_SHAPE = (3, 32, 32)

# BranchyNet's B-AlexNet LRN (Chainer: n=3, k=2, alpha=5e-5, beta=0.75; networks/alex_cifar10.py in
# kunglab/branchynet). Chainer uses alpha * sum over the window; torch uses alpha / n * sum.
_LRN = {"size": 3, "alpha": 5e-5 * 3, "beta": 0.75, "k": 2.0}


class _ChannelLRN(torch.autograd.Function):
    """LRN across channels with a hand-written backward (values as ``torch.nn.LocalResponseNorm``).

    y = x / d**beta with d = k + alpha / size * (sum of x**2 over the ``size`` neighbouring
    channels, window c - size//2 .. c + (size-1)//2, as torch pads it). The channel window sum is
    one small matmul with a banded 0/1 (C, C) matrix over the channels-last view (N, H, W, C), and
    the gradient is dx = g / d**beta - 2 alpha beta / size * x * band^T(g * y / d): a few
    elementwise passes, mostly in place, instead of torch's pad + avg_pool3d + pow graph (faster on
    CPU; measured in docs/performance.md). For beta = 3/4 (AlexNet's), d**-beta is rsqrt(d) * sqrt(rsqrt(d)), cheaper
    than pow.
    """

    @staticmethod
    def forward(ctx, x, size, alpha, beta, k):  # type: ignore[override]
        channels = x.shape[1]
        i = torch.arange(channels, device=x.device)
        offset = i[None, :] - i[:, None]  # band[i, j] = 1 if channel i is in output channel j's window
        band = ((offset >= -((size - 1) // 2)) & (offset <= size // 2)).to(x.dtype)
        v = x.permute(0, 2, 3, 1)  # (N, H, W, C): a view for channels-last input
        d = torch.matmul(v * v, band * (alpha / size)).add_(k)
        if beta == 0.75:
            inv = torch.rsqrt(d)
            inv.mul_(torch.sqrt(inv))  # d**-1/2 * d**-1/4
        else:
            inv = d.pow(-beta)
        y = v * inv
        ctx.save_for_backward(v, d, inv, y, band)
        ctx.scale = 2.0 * alpha * beta / size
        return y.permute(0, 3, 1, 2)  # (N, C, H, W), channels-last memory

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        v, d, inv, y, band = ctx.saved_tensors
        g = grad.permute(0, 2, 3, 1)  # (N, H, W, C)
        t = torch.matmul((g * y).div_(d), band.t()).mul_(v)  # x * band^T(g * y / d)
        dx = (g * inv).add_(t, alpha=-ctx.scale)
        return dx.permute(0, 3, 1, 2), None, None, None, None


class LocalResponseNorm(nn.Module):
    """Drop-in for ``torch.nn.LocalResponseNorm`` (same arguments, same values within float
    tolerance, no parameters) with a faster forward and backward for 4-D inputs (:class:`_ChannelLRN`)."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            return nn.functional.local_response_norm(x, self.size, self.alpha, self.beta, self.k)
        return _ChannelLRN.apply(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class _FlattenChannelsLast(torch.autograd.Function):
    """(N, C, H, W) channels-last -> (N, C*H*W) in torch's (C, H, W) order, whose gradient comes back
    channels-last (a plain flatten's comes back NCHW, and the pool and conv backward before it
    would each copy their tensors to match)."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        ctx.shape = x.shape
        return x.reshape(x.shape[0], -1)  # (N, C*H*W): a copy, as x is not NCHW-contiguous

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return grad.reshape(ctx.shape).contiguous(memory_format=torch.channels_last)


class Flatten(nn.Flatten):
    """``nn.Flatten()`` (same values) that keeps a channels-last input's layout in the gradient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and self.start_dim == 1 and self.end_dim == -1 and not x.is_contiguous() \
                and x.is_contiguous(memory_format=torch.channels_last):
            return _FlattenChannelsLast.apply(x)
        return super().forward(x)


def _pool() -> nn.MaxPool2d:
    """Max pooling 3/2 that rounds up like Chainer (ceil_mode, no padding): 32->16->8->4."""
    return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)


def trunk_layers(num_classes: int = NUM_CLASSES) -> list[tuple[str, nn.Module]]:
    """The named layers of the B-AlexNet trunk, in execution order."""
    return [
        ("conv1", nn.Conv2d(3, 32, 5, padding=2)),
        ("relu1", nn.ReLU(inplace=True)),
        ("pool1", _pool()),
        ("lrn1", LocalResponseNorm(**_LRN)),
        ("conv2", nn.Conv2d(32, 64, 5, padding=2)),
        ("relu2", nn.ReLU(inplace=True)),
        ("pool2", _pool()),
        ("lrn2", LocalResponseNorm(**_LRN)),
        ("conv3", nn.Conv2d(64, 96, 3, padding=1)),
        ("relu3", nn.ReLU(inplace=True)),
        ("conv4", nn.Conv2d(96, 96, 3, padding=1)),
        ("relu4", nn.ReLU(inplace=True)),
        ("conv5", nn.Conv2d(96, 64, 3, padding=1)),
        ("relu5", nn.ReLU(inplace=True)),
        ("pool5", _pool()),
        ("flatten", Flatten()),
        ("fc1", nn.Linear(64 * 4 * 4, 256)),
        ("relu6", nn.ReLU(inplace=True)),
        ("drop6", nn.Dropout(0.5)),
        ("fc2", nn.Linear(256, 128)),
        ("relu7", nn.ReLU(inplace=True)),
        ("drop7", nn.Dropout(0.5)),
        ("fc3", nn.Linear(128, num_classes)),
    ]


def trunk_output_shapes() -> dict[str, tuple[int, ...]]:
    """Output shape (without the batch dimension) of every trunk layer for a 3x32x32 input."""
    shapes: dict[str, tuple[int, ...]] = {}
    x = torch.zeros(1, *INPUT_SHAPE)
    with torch.no_grad():
        for name, layer in trunk_layers():
            x = layer.eval()(x)
            shapes[name] = tuple(x.shape[1:])
    return shapes


def _pooled(size: int) -> int:
    return math.ceil((size - 3) / 2) + 1


def branch_head(in_shape: tuple[int, ...], num_classes: int = NUM_CLASSES) -> nn.Sequential:
    """A side-branch classifier sized to the shape of the trunk tensor it reads."""
    if len(in_shape) == 1:  # a vector layer (relu6, relu7): a linear classifier
        return nn.Sequential(OrderedDict(fc=nn.Linear(in_shape[0], num_classes)))
    channels, size, _ = in_shape
    layers: list[tuple[str, nn.Module]] = []
    if size > 4:
        layers.append(("pool_a", _pool()))
        size = _pooled(size)
    layers += [
        ("lrn", LocalResponseNorm(**_LRN)),
        ("conv", nn.Conv2d(channels, 32, 3, padding=1)),
        ("relu", nn.ReLU(inplace=True)),
    ]
    if size > 4:
        layers.append(("pool_b", _pool()))
        size = _pooled(size)
    layers += [("flatten", Flatten()), ("fc", nn.Linear(32 * size * size, num_classes))]
    return nn.Sequential(OrderedDict(layers))


@dataclass(frozen=True)
class ForwardStep:
    """One step of :meth:`BAlexNet.forward`: run these trunk layers in this order, then the tails
    of the side branches tapped here, as (branch point, index of the first head layer to run)."""

    layers: tuple[str, ...]
    taps: tuple[tuple[str, int], ...] = ()


def _same_parameter_free_layer(a: nn.Module, b: nn.Module) -> bool:
    return type(a) is type(b) and repr(a) == repr(b) and not any(True for _ in a.parameters())


def forward_plan(trunk: nn.Sequential, heads: dict[str, nn.Sequential]) -> list[ForwardStep]:
    """The order :meth:`BAlexNet.forward` runs the layers in: the plain definition
    (:meth:`BAlexNet.reference_forward`) with two rewrites that change no value and no gradient
    (tests/test_perf_equivalence.py) and make a CPU training step faster (measured in
    docs/performance.md):

    1. Shared head layers. A head that starts with the same parameter-free layers as the trunk
       after its branch point (after relu1: pool 3/2 and LRN in both) would recompute the same
       tensor from the same input; it reads the trunk's output of those layers instead.
    2. Pool before ReLU. max-pool(relu(x)) == relu(max-pool(x)) exactly (max commutes with any
       non-decreasing function; same windows). Where no branch reads a ReLU's output and a max-pool
       follows it, the pool runs first and the ReLU touches a 4x smaller tensor. The gradient is
       the same: both send it to the window's (first) maximum if that is positive, else nowhere.
    """
    names = [name for name, _ in trunk.named_children()]
    layers = dict(trunk.named_children())
    taps: dict[int, list[tuple[str, int]]] = {}
    for point, head in heads.items():
        at, shared = names.index(point), 0
        while (shared < len(head) - 1 and at + 1 + shared < len(names)
               and _same_parameter_free_layer(head[shared], layers[names[at + 1 + shared]])):
            shared += 1
        taps.setdefault(at + shared, []).append((point, shared))
    plan: list[ForwardStep] = []
    i = 0
    while i < len(names):
        if (isinstance(layers[names[i]], nn.ReLU) and i not in taps and i + 1 < len(names)
                and isinstance(layers[names[i + 1]], nn.MaxPool2d)):
            plan.append(ForwardStep((names[i + 1], names[i]), tuple(taps.get(i + 1, ()))))
            i += 2
        else:
            plan.append(ForwardStep((names[i],), tuple(taps.get(i, ()))))
            i += 1
    return plan


class BAlexNet(nn.Module):
    """B-AlexNet with side branches after the named trunk layers.

    ``forward`` returns one logits tensor per exit, shape (B, 10) each: the side branches in trunk
    order (exit 1, 2, ...), then the final exit (exit n).
    """

    def __init__(self, branches: Sequence[str], num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.branch_points = validate_branches(branches)
        self.trunk = nn.Sequential(OrderedDict(trunk_layers(num_classes)))
        shapes = trunk_output_shapes()
        self.branches = nn.ModuleDict(
            {name: branch_head(shapes[name], num_classes) for name in self.branch_points}
        )
        self.plan = forward_plan(self.trunk, dict(self.branches.items()))

    @property
    def num_exits(self) -> int:
        return len(self.branch_points) + 1

    @property
    def partition_layer(self) -> str:
        """The last trunk layer the device runs: the tensor after it is uploaded to the cloud."""
        return self.branch_points[-1]

    def reference_forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The definition: every trunk layer in order, each side branch's whole head on the output
        of its branch point. :meth:`forward` computes the same, faster."""
        # x: (B, 3, 32, 32) normalised images
        exits: list[torch.Tensor] = []
        for name, layer in self.trunk.named_children():
            x = layer(x)
            if name in self.branches:
                exits.append(self.branches[name](x))  # (B, 10)
        exits.append(x)  # final exit, (B, 10)
        return exits

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """:meth:`reference_forward` in the order of :func:`forward_plan` (same values)."""
        # x: (B, 3, 32, 32) normalised images
        side: dict[str, torch.Tensor] = {}
        for step in self.plan:
            for name in step.layers:
                x = getattr(self.trunk, name)(x)
            for point, start in step.taps:
                side[point] = self.branches[point][start:](x)  # (B, 10)
        return [side[point] for point in self.branch_points] + [x]  # exits 1..n-1, final exit (B, 10)
