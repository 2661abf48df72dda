"""Names of the B-AlexNet trunk layers and branch placement rules, without importing torch.

Kept apart from :mod:`eeoffload.model` so that params validation (every stage) stays light;
``tests/test_model.py`` checks that these names match the model's layers.
"""

from __future__ import annotations

from collections.abc import Sequence

#: The trunk layers in execution order (see eeoffload.model for the ops and shapes).
TRUNK_LAYERS = (
    "conv1", "relu1", "pool1", "lrn1", "conv2", "relu2", "pool2", "lrn2", "conv3", "relu3",
    "conv4", "relu4", "conv5", "relu5", "pool5", "flatten", "fc1", "relu6", "drop6", "fc2",
    "relu7", "drop7", "fc3",
)
#: The layers a side branch may follow: every ReLU and pooling layer of the trunk.
BRANCHABLE_LAYERS = tuple(n for n in TRUNK_LAYERS if n.startswith(("relu", "pool")))


class BranchPlacementError(ValueError):
    """A branch placement names a layer that does not exist or cannot carry a branch."""


def validate_branches(branches: Sequence[str]) -> list[str]:
    """Check branch placements and return them in trunk order.

    Raises:
        BranchPlacementError: unknown or non-branchable layer name, a duplicate, or no branch.
    """
    allowed = list(BRANCHABLE_LAYERS)
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
