"""B-AlexNet: an AlexNet trunk with side branches placed by layer name, built from a
:class:`~eeoffload.layout.ModelSpec` (params section ``model``).

Read top to bottom: the trunk is a list of named layers (paper Fig. 1; BranchyNet [5]); a side
branch is a small classifier head attached after one trunk layer; the device runs every trunk
layer up to the last branch point plus the branches, the cloud runs the remaining trunk layers.
Every model takes normalised 3x32x32 CIFAR tensors (``model.input_shape``).

Architectures (``spec.arch``):

* ``balexnet32`` (default): BranchyNet's CIFAR-10 B-AlexNet (kunglab/branchynet,
  networks/alex_cifar10.py), shapes for one 3x32x32 image:

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

  Labelled deviations (docs/fidelity.md): ``batch_norm`` adds ``bnK`` (BatchNorm2d) after every
  ``convK`` and after the head convolutions; ``width=k`` multiplies every trunk convolution's
  output channels by k (fc1's input follows).
* ``alexnet224``: torchvision's AlexNet on the input resized to 224x224 inside the network
  (:mod:`eeoffload.model_alexnet224`), optionally starting from torchvision AlexNet weights
  (``spec.init_weights``).

Side branch heads (``spec.head``), sized by the CxHxW shape of the tensor they read; after a
vector layer (relu6, relu7) both are one linear layer to 10:

* ``ours`` (:func:`branch_head`): pool 3/2 (only if H > 4), LRN, conv 3x3 32 pad 1, ReLU, pool 3/2
  (only if the map is still larger than 4x4), flatten, FC 10.
* ``branchynet_b1`` (:func:`branchynet_b1_head`): BranchyNet's branch 1 as the paper's authors
  attach it: ReLU, pool 3/2, LRN, conv 32 + ReLU, conv 32 + ReLU, pool 3, flatten, FC 10.

``BAlexNet.reference_forward`` is the definition, layer by layer; ``BAlexNet.forward`` computes the
same values and gradients faster (:func:`forward_plan`; the fast LRN and flatten are in
:mod:`eeoffload.layers`), as tests/test_perf_equivalence.py proves.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from eeoffload import model_alexnet224
from eeoffload.layers import _LRN, Flatten, LocalResponseNorm  # noqa: F401 (re-exported)
from eeoffload.layout import (  # noqa: F401 (re-exported)
    ARCHS, BRANCHABLE_LAYERS, HEADS, BranchPlacementError, ModelSpec, validate_branches,
)

NUM_CLASSES = 10
INPUT_SHAPE = (3, 32, 32)  # every architecture's input: a normalised CIFAR image


def _pool() -> nn.MaxPool2d:
    """Max pooling 3/2 that rounds up like Chainer (ceil_mode, no padding): 32->16->8->4."""
    return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)


def _conv(name: str, cin: int, cout: int, kernel: int, batch_norm: bool) -> list[tuple[str, nn.Module]]:
    """``convK`` (padding keeps the size), then ``bnK`` when ``batch_norm``."""
    layers: list[tuple[str, nn.Module]] = [(name, nn.Conv2d(cin, cout, kernel, padding=kernel // 2))]
    if batch_norm:
        layers.append(("bn" + name[4:], nn.BatchNorm2d(cout)))
    return layers


def trunk_layers(num_classes: int = NUM_CLASSES, batch_norm: bool = False,
                 width: int = 1) -> list[tuple[str, nn.Module]]:
    """The named layers of the balexnet32 trunk, in execution order (BranchyNet's B-AlexNet;
    ``batch_norm`` and ``width`` are the labelled deviations, off by default)."""
    c1, c2, c3, c4, c5 = (c * width for c in (32, 64, 96, 96, 64))
    bn = batch_norm
    return [
        *_conv("conv1", 3, c1, 5, bn),
        ("relu1", nn.ReLU(inplace=True)),
        ("pool1", _pool()),
        ("lrn1", LocalResponseNorm(**_LRN)),
        *_conv("conv2", c1, c2, 5, bn),
        ("relu2", nn.ReLU(inplace=True)),
        ("pool2", _pool()),
        ("lrn2", LocalResponseNorm(**_LRN)),
        *_conv("conv3", c2, c3, 3, bn),
        ("relu3", nn.ReLU(inplace=True)),
        *_conv("conv4", c3, c4, 3, bn),
        ("relu4", nn.ReLU(inplace=True)),
        *_conv("conv5", c4, c5, 3, bn),
        ("relu5", nn.ReLU(inplace=True)),
        ("pool5", _pool()),
        ("flatten", Flatten()),
        ("fc1", nn.Linear(c5 * 4 * 4, 256)),
        ("relu6", nn.ReLU(inplace=True)),
        ("drop6", nn.Dropout(0.5)),
        ("fc2", nn.Linear(256, 128)),
        ("relu7", nn.ReLU(inplace=True)),
        ("drop7", nn.Dropout(0.5)),
        ("fc3", nn.Linear(128, num_classes)),
    ]


def check_spec(spec: ModelSpec) -> None:
    """ValueError naming the field if ``spec`` cannot be built."""
    if spec.arch not in ARCHS:
        raise ValueError(f"model arch {spec.arch!r} unknown; known: {', '.join(ARCHS)}")
    if spec.head not in HEADS:
        raise ValueError(f"model head {spec.head!r} unknown; known: {', '.join(HEADS)}")
    if not isinstance(spec.width, int) or isinstance(spec.width, bool) or spec.width < 1:
        raise ValueError(f"model width must be an integer >= 1, got {spec.width!r}")
    if not isinstance(spec.batch_norm, bool):
        raise ValueError(f"model batch_norm must be true or false, got {spec.batch_norm!r}")
    if spec.arch == "alexnet224" and (spec.batch_norm or spec.width != 1):
        raise ValueError("model batch_norm / width: not supported for alexnet224 (deviations of balexnet32)")
    if spec.init_weights and spec.arch != "alexnet224":
        raise ValueError(f"model init_weights: torchvision AlexNet weights load into alexnet224 only, "
                         f"not {spec.arch}")


def trunk_layers_for(spec: ModelSpec, num_classes: int = NUM_CLASSES) -> list[tuple[str, nn.Module]]:
    """The named trunk layers of ``spec``'s architecture (names: eeoffload.layout.trunk_layers_of)."""
    check_spec(spec)
    if spec.arch == "alexnet224":
        return model_alexnet224.trunk_layers(num_classes)
    return trunk_layers(num_classes, spec.batch_norm, spec.width)


def _output_shapes(trunk: nn.Sequential, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    was_training = trunk.training
    x = torch.zeros(1, *input_shape, device=next(trunk.parameters()).device)
    shapes: dict[str, tuple[int, ...]] = {}
    try:
        with torch.no_grad():
            for name, layer in trunk.eval().named_children():
                x = layer(x)
                shapes[name] = tuple(x.shape[1:])
    finally:
        trunk.train(was_training)
    return shapes


def trunk_output_shapes(spec: ModelSpec | None = None) -> dict[str, tuple[int, ...]]:
    """Output shape (without the batch dimension) of every trunk layer for a 3x32x32 input, from a
    freshly built trunk (it draws weights from torch's generator)."""
    trunk = nn.Sequential(OrderedDict(trunk_layers_for(spec or ModelSpec())))
    return _output_shapes(trunk, INPUT_SHAPE)


def _pooled(size: int) -> int:
    return math.ceil((size - 3) / 2) + 1


def _conv_bn_relu(suffix: str, cin: int, batch_norm: bool) -> list[tuple[str, nn.Module]]:
    layers: list[tuple[str, nn.Module]] = [(f"conv{suffix}", nn.Conv2d(cin, 32, 3, padding=1))]
    if batch_norm:
        layers.append((f"bn{suffix}", nn.BatchNorm2d(32)))
    return layers + [(f"relu{suffix}", nn.ReLU(inplace=True))]


def branch_head(in_shape: tuple[int, ...], num_classes: int = NUM_CLASSES, batch_norm: bool = False) -> nn.Sequential:
    """Head ``ours``: a side-branch classifier sized to the shape of the trunk tensor it reads
    (README, "Model"); ``batch_norm`` adds BatchNorm2d after its convolution."""
    if len(in_shape) == 1:  # a vector layer (relu6, relu7): a linear classifier
        return nn.Sequential(OrderedDict(fc=nn.Linear(in_shape[0], num_classes)))
    channels, size, _ = in_shape
    layers: list[tuple[str, nn.Module]] = []
    if size > 4:
        layers.append(("pool_a", _pool()))
        size = _pooled(size)
    layers += [("lrn", LocalResponseNorm(**_LRN)), *_conv_bn_relu("", channels, batch_norm)]
    if size > 4:
        layers.append(("pool_b", _pool()))
        size = _pooled(size)
    layers += [("flatten", Flatten()), ("fc", nn.Linear(32 * size * size, num_classes))]
    return nn.Sequential(OrderedDict(layers))


def branchynet_b1_head(in_shape: tuple[int, ...], num_classes: int = NUM_CLASSES,
                       batch_norm: bool = False) -> nn.Sequential:
    """Head ``branchynet_b1``: BranchyNet's branch 1 as the paper's authors attach it to AlexNet
    (pachecobeto95/early_exit_calibration, extra/training_b_alexnet_cifar.py: ``norm() + conv(64) +
    conv(32) + cap(512)``): ReLU, max-pool 3/2 (floor), LRN, conv 32 3x3 pad 1 + ReLU, conv 32 3x3
    pad 1 + ReLU, max-pool 3 (stride 3, floor), flatten, linear to 10; sized from ``in_shape``.
    After alexnet224's pool1 (64x27x27): 13x13, 32x13x13, 4x4, FC 512 -> 10 (the authors' 512).

    The LRN is the authors' own, ``nn.LocalResponseNorm(3, alpha=5e-5, beta=0.75)`` (torch's
    convention: alpha divided by the size, k = 1; the trunk's BranchyNet LRN has k = 2). A pool whose window does not fit the map (fewer
    than 3 pixels, e.g. after balexnet32's pool5) is left out; after a vector layer: FC 10.
    ``batch_norm`` adds BatchNorm2d after each convolution."""
    if len(in_shape) == 1:
        return nn.Sequential(OrderedDict(fc=nn.Linear(in_shape[0], num_classes)))
    channels, size, _ = in_shape
    layers: list[tuple[str, nn.Module]] = [("relu_a", nn.ReLU())]  # not in place: it reads the trunk's tensor
    if size >= 3:
        layers.append(("pool_a", nn.MaxPool2d(kernel_size=3, stride=2)))
        size = (size - 3) // 2 + 1
    layers += [("lrn", LocalResponseNorm(size=3, alpha=5e-5, beta=0.75, k=1.0)), *_conv_bn_relu("1", channels, batch_norm),
               *_conv_bn_relu("2", 32, batch_norm)]
    if size >= 3:
        layers.append(("pool_b", nn.MaxPool2d(kernel_size=3)))
        size = size // 3
    layers += [("flatten", Flatten()), ("fc", nn.Linear(32 * size * size, num_classes))]
    return nn.Sequential(OrderedDict(layers))


HEAD_BUILDERS = {"ours": branch_head, "branchynet_b1": branchynet_b1_head}


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
    """An AlexNet (``spec``, default balexnet32) with side branches after the named trunk layers.

    ``forward`` returns one logits tensor per exit, shape (B, 10) each: the side branches in trunk
    order (exit 1, 2, ...), then the final exit (exit n). Input: (B, 3, 32, 32) normalised images
    (``input_shape``), for every architecture. ``init_weights`` is not read here (see
    :func:`build_model`).
    """

    def __init__(self, branches: Sequence[str], num_classes: int = NUM_CLASSES, *,
                 spec: ModelSpec | None = None) -> None:
        super().__init__()
        spec = ModelSpec() if spec is None else spec
        check_spec(spec)
        self.spec = spec
        self.input_shape: tuple[int, int, int] = INPUT_SHAPE
        self.branch_points = validate_branches(branches, spec.arch)
        self.trunk = nn.Sequential(OrderedDict(trunk_layers_for(spec, num_classes)))
        if spec.arch == "balexnet32":
            # From a second, throwaway trunk, as the original construction did: its draws from the
            # generator keep the heads' initial weights (and results) the same for a given seed.
            shapes = trunk_output_shapes(spec)
        else:
            shapes = _output_shapes(self.trunk, self.input_shape)
        head = HEAD_BUILDERS[spec.head]
        self.branches = nn.ModuleDict(
            {name: head(shapes[name], num_classes, spec.batch_norm) for name in self.branch_points}
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
        # x: (B, 3, 32, 32) normalised images (alexnet224 resizes them in its first layer)
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


def build_model(spec: ModelSpec, branches: Sequence[str], *, load_init_weights: bool = True) -> BAlexNet:
    """The network ``spec`` describes, with side branches after ``branches``. ``ModelSpec()``
    gives ``BAlexNet(branches)`` with the same initial weights under the same seed. With
    ``spec.init_weights`` (alexnet224) the trunk then loads that torchvision AlexNet state dict
    (:func:`eeoffload.model_alexnet224.load_torchvision_alexnet`; ImageNet's 1000-class head is
    skipped); ``load_init_weights=False`` skips the file (a trained state dict follows anyway).
    Raises ValueError for a spec that cannot be built or weights that do not fit."""
    model = BAlexNet(branches, spec=spec)
    if spec.init_weights and load_init_weights:
        state = model_alexnet224.read_state_dict(spec.init_weights)
        model_alexnet224.load_torchvision_alexnet(model, state)
    return model
