"""Names of the trunk layers of each architecture and branch placement rules, without importing torch.

Kept apart from :mod:`eeoffload.model` so that params validation (every stage) stays light;
``tests/test_model.py`` checks that these names match the models' layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: The balexnet32 trunk layers in execution order (see eeoffload.model for the ops and shapes).
TRUNK_LAYERS = (
    "conv1", "relu1", "pool1", "lrn1", "conv2", "relu2", "pool2", "lrn2", "conv3", "relu3",
    "conv4", "relu4", "conv5", "relu5", "pool5", "flatten", "fc1", "relu6", "drop6", "fc2",
    "relu7", "drop7", "fc3",
)
#: The layers a side branch may follow: every ReLU and pooling layer of the trunk.
BRANCHABLE_LAYERS = tuple(n for n in TRUNK_LAYERS if n.startswith(("relu", "pool")))
#: The alexnet224 trunk layers (torchvision's AlexNet layout after an in-network resize to 224x224;
#: see eeoffload.model_alexnet224).
ALEXNET224_TRUNK_LAYERS = (
    "resize", "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3", "conv4",
    "relu4", "conv5", "relu5", "pool5", "avgpool", "flatten", "drop6", "fc1", "relu6", "drop7",
    "fc2", "relu7", "fc3",
)


#: Architectures of the trunk (params ``model.arch``): BranchyNet's 32x32 B-AlexNet, and
#: torchvision's AlexNet layer layout on inputs resized to 224x224 inside the network.
ARCHS = ("balexnet32", "alexnet224")
#: Side-branch heads (params ``model.head``): ``ours`` (pool, LRN, conv 32, pool, FC; README) and
#: BranchyNet's branch 1 as the authors attach it (ReLU, pool 3/2, LRN, conv 32 + ReLU, conv 32 +
#: ReLU, pool 3, FC).
HEADS = ("ours", "branchynet_b1")


@dataclass(frozen=True)
class ModelSpec:
    """What a network is built from, besides its branch placement (params section ``model``).

    The defaults are today's B-AlexNet: ``build_model(ModelSpec(), branches)`` draws the same
    initial weights as ``BAlexNet(branches)`` under the same seed. ``batch_norm`` and ``width``
    are deviations from the paper's network (labelled so in docs/fidelity.md)."""

    arch: str = "balexnet32"
    head: str = "ours"
    init_weights: str = ""  # a torchvision-format AlexNet state dict (alexnet224), "" = none
    batch_norm: bool = False  # BatchNorm after every trunk and head convolution
    width: int = 1  # multiplier of every trunk convolution's channels

    def as_dict(self) -> dict[str, object]:
        return {"arch": self.arch, "head": self.head, "init_weights": self.init_weights,
                "batch_norm": self.batch_norm, "width": self.width}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> ModelSpec:
        """The inverse of :meth:`as_dict` (missing keys take the defaults); ValueError naming an
        unknown key."""
        unknown = sorted(set(d) - set(cls().as_dict()))
        if unknown:
            raise ValueError(f"unknown model spec key(s) {unknown}; known: {', '.join(cls().as_dict())}")
        return cls(**d)  # type: ignore[arg-type]


class BranchPlacementError(ValueError):
    """A branch placement names a layer that does not exist or cannot carry a branch."""


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")


def trunk_layers_of(arch: str, batch_norm: bool = False) -> tuple[str, ...]:
    """The trunk layer names of ``arch`` in execution order. ``batch_norm`` (balexnet32 only) adds
    ``bnK`` right after every ``convK``."""
    _check_arch(arch)
    if arch == "alexnet224":
        return ALEXNET224_TRUNK_LAYERS
    if not batch_norm:
        return TRUNK_LAYERS
    return tuple(x for n in TRUNK_LAYERS for x in ((n, "bn" + n[4:]) if n.startswith("conv") else (n,)))


def branchable_layers(arch: str) -> tuple[str, ...]:
    """The layers of ``arch`` a side branch may follow: every ReLU and max-pooling layer."""
    return tuple(n for n in trunk_layers_of(arch) if n.startswith(("relu", "pool")))


def validate_branches(branches: Sequence[str], arch: str = "balexnet32") -> list[str]:
    """Check branch placements on the trunk of ``arch`` and return them in trunk order.

    Raises:
        BranchPlacementError: unknown or non-branchable layer name, a duplicate, or no branch
            (the message lists the placements ``arch`` allows).
        ValueError: unknown ``arch``.
    """
    allowed = list(branchable_layers(arch))
    if len(branches) == 0:
        raise BranchPlacementError(f"no side branch given; allowed placements: {', '.join(allowed)}")
    for name in branches:
        if name not in allowed:
            raise BranchPlacementError(
                f"unknown branch placement {name!r}; allowed placements: {', '.join(allowed)}"
            )
    if len(set(branches)) != len(branches):
        raise BranchPlacementError(f"duplicate branch placement in {list(branches)}")
    return sorted(branches, key=allowed.index)


def branch_name(k: int) -> str:
    """Row name of the k-th side branch (1-based, trunk order) in per-layer tables and edge CSVs."""
    return f"branch{k}"
