"""Reference versions of B-AlexNet's fast paths, for the equivalence tests and the training benchmark:
torch's own LocalResponseNorm and Flatten in place of eeoffload's (the oracle the fast ones must match)."""

from __future__ import annotations

import copy
from collections.abc import Callable

from torch import nn

from eeoffload.model import Flatten, LocalResponseNorm


def replace_modules(model: nn.Module, kind: type[nn.Module], make: Callable[[nn.Module], nn.Module]) -> nn.Module:
    """A copy of ``model`` with every ``kind`` submodule ``m`` replaced by ``make(m)``."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, kind):
                setattr(parent, name, make(child))
    return model


def with_torch_lrn(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with torch's LocalResponseNorm in place of eeoffload's (the original model)."""
    return replace_modules(model, LocalResponseNorm, lambda m: nn.LocalResponseNorm(m.size, m.alpha, m.beta, m.k))


def with_torch_flatten(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with ``nn.Flatten`` in place of eeoffload's layout-keeping Flatten."""
    return replace_modules(model, Flatten, lambda m: nn.Flatten())
