"""BranchyNet's two-phase schedule in the library (eeoffload.training: training_schedule,
phase_weights, fit), on a real B-AlexNet at tiny size: the trunk phase leaves the side branches
untouched, the joint phase trains them, and every epoch reports the exits on the validation split."""

from __future__ import annotations

import pytest
import torch

from eeoffload.model import BAlexNet
from eeoffload.training import JOINT, TRUNK, fit, phase_weights, training_schedule


def test_schedule_and_weights() -> None:
    assert training_schedule(2, 3) == [TRUNK, TRUNK, JOINT, JOINT, JOINT]
    assert training_schedule(0, 1) == [JOINT]
    with pytest.raises(ValueError, match="at least one epoch"):
        training_schedule(0, 0)
    assert phase_weights(TRUNK, [1.0, 0.65, 0.3]) == [0.0, 0.0, 1.0]
    assert phase_weights(JOINT, [1.0, 0.65, 0.3]) == [1.0, 0.65, 0.3]
    with pytest.raises(ValueError, match="unknown phase"):
        phase_weights("warmup", [1.0, 0.3])


def _branch_params(model: BAlexNet) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if not n.startswith("trunk.")}


def _trunk_params(model: BAlexNet) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("trunk.")}


def test_fit_trains_the_trunk_alone_then_every_exit() -> None:
    torch.manual_seed(0)
    model = BAlexNet(["relu1"])
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    x_val, y_val = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    epochs = fit(model, optimizer, x, y, x_val, y_val, training_schedule(1, 1), [1.0, 0.3], 32, generator, False)

    branch, trunk = _branch_params(model), _trunk_params(model)
    assert branch and trunk
    first = next(epochs)  # the trunk phase: the final exit's loss only
    assert (first.epoch, first.phase) == (1, TRUNK)
    assert all(torch.equal(branch[n], p) for n, p in _branch_params(model).items())
    assert any(not torch.equal(trunk[n], p) for n, p in _trunk_params(model).items())
    assert len(first.val_accuracy) == len(first.val_temperature) == 2 and first.train_loss > 0
    assert all(t > 0 for t in first.val_temperature)

    second = next(epochs)  # jointly: the side branch learns too
    assert (second.epoch, second.phase) == (2, JOINT)
    assert any(not torch.equal(branch[n], p) for n, p in _branch_params(model).items())
    with pytest.raises(StopIteration):
        next(epochs)


def test_fit_resumes_from_a_later_epoch() -> None:
    model = BAlexNet(["relu1"])
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    results = list(fit(model, torch.optim.Adam(model.parameters()), x, y, x[:8], y[:8], training_schedule(1, 2),
                       [1.0, 0.3], 16, torch.Generator().manual_seed(0), False, first_epoch=3))
    assert [(r.epoch, r.phase) for r in results] == [(3, JOINT)]
