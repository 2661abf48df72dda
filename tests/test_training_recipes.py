"""The training recipe's knobs (eeoffload.training): augmentation modes, optimisers, the learning
rate per epoch, early stopping (restores the best epoch, resumes exactly) and bf16 autocast, on a
real B-AlexNet at tiny size."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from eeoffload.model import BAlexNet
from eeoffload.recipe_search import early_stopping_epochs
from eeoffload.training import (EarlyStopping, Recipe, augment_batch, fit, learning_rate, make_optimizer,
                                train_epoch, training_schedule)
from eeoffload.training_options import AUGMENTATIONS, OPTIMIZERS, PRECISIONS, SCHEDULES


def _batch() -> torch.Tensor:
    return torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("mode", AUGMENTATIONS)
def test_augmentation_is_deterministic_under_a_seed(mode: str) -> None:
    x = _batch()
    a = augment_batch(x, torch.Generator().manual_seed(1), mode)
    b = augment_batch(x, torch.Generator().manual_seed(1), mode)
    assert a.shape == x.shape and torch.equal(a, b)
    c = augment_batch(x, torch.Generator().manual_seed(2), mode)
    assert torch.equal(c, x) if mode == "none" else not torch.equal(c, a)


def test_authors_augmentation_flips_and_rotates() -> None:
    x = _batch()
    # rotation by 0 and no flip is the identity (up to bilinear resampling at the same points)
    from eeoffload.training import flip_rotate_batch

    same = flip_rotate_batch(x, torch.Generator().manual_seed(0), flip_p=0.0, max_degrees=0.0)
    assert torch.allclose(same, x, atol=1e-5)
    flipped = flip_rotate_batch(x, torch.Generator().manual_seed(0), flip_p=1.0, max_degrees=0.0)
    assert torch.allclose(flipped, x.flip(3), atol=1e-5)
    rotated = flip_rotate_batch(x, torch.Generator().manual_seed(0), flip_p=0.0, max_degrees=25.0)
    assert not torch.allclose(rotated, x, atol=1e-3)
    with pytest.raises(ValueError, match="allowed: none, crop_flip, authors"):
        augment_batch(x, torch.Generator(), "mixup")


def test_learning_rate_per_epoch() -> None:
    assert [learning_rate("constant", 0.1, e, 4) for e in (1, 4)] == [0.1, 0.1]
    cos = [learning_rate("cosine", 0.1, e, 4) for e in (1, 2, 3, 4)]
    assert cos[0] == 0.1 and cos[2] == pytest.approx(0.05) and cos[3] == pytest.approx(0.1 * (1 + math.cos(0.75 * math.pi)) / 2)
    # as torch's CosineAnnealingLR with T_max = total epochs, stepped once per epoch
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    seen = []
    for _ in range(4):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx(cos)
    with pytest.raises(ValueError, match="allowed: constant, cosine"):
        learning_rate("step", 0.1, 1, 4)


def test_optimizers() -> None:
    w = [torch.zeros(2, requires_grad=True)]
    sgd = make_optimizer(w, "sgd", 0.05, 5e-4, 0.9, True)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    assert isinstance(make_optimizer(w, "adam", 1e-3), torch.optim.Adam)
    with pytest.raises(ValueError, match="allowed: adam, sgd"):
        make_optimizer(w, "rmsprop", 1e-3)
    assert set(OPTIMIZERS) == {"adam", "sgd"} and set(SCHEDULES) == {"constant", "cosine"}
    assert set(PRECISIONS) == {"fp32", "bf16"}


def test_early_stopping_rule_matches_its_pure_form() -> None:
    nll = [2.0, 1.5, 1.6, 1.4, 1.45, 1.5, 1.41, 1.42, 1.43]
    stopper, stopped_at = EarlyStopping(3), None
    model = torch.nn.Linear(1, 1)
    for epoch, value in enumerate(nll, start=1):
        if stopper.update(epoch, value, model):
            stopped_at = epoch
            break
    assert (stopper.best_epoch, stopped_at) == (4, 7) == early_stopping_epochs(nll, 3)
    assert early_stopping_epochs([3.0, 2.0, 1.0], 2) == (3, 3)  # never stops


def _tiny_run(first: int, state: dict | None, epochs: int = 6):
    torch.manual_seed(0)
    model = BAlexNet(["relu1"])
    x = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(2))
    optimizer = make_optimizer(model.parameters(), "sgd", 0.05, 5e-4, 0.9, True)
    generator = torch.Generator().manual_seed(0)
    stopper = EarlyStopping(2)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        stopper = EarlyStopping.from_state(state["early_stopping"])
    recipe = Recipe(lr=0.05, schedule="cosine", augment="authors", early_stopping_patience=2)
    results, states = [], {}
    # the validation split is the training data: the NLL falls, then rises once it over-fits at lr 0.05
    for r in fit(model, optimizer, x, y, x[:32], y[:32], training_schedule(0, epochs), [1.0, 0.3], 16, generator,
                 recipe, first_epoch=first, early_stopping=stopper):
        results.append(r)
        states[r.epoch] = {"model": {k: v.clone() for k, v in model.state_dict().items()},
                           "optimizer": copy.deepcopy(optimizer.state_dict()), "generator": generator.get_state(),
                           "torch_rng": torch.get_rng_state(), "early_stopping": stopper.state()}
    return model, stopper, results, states


def test_early_stopping_restores_the_best_epoch_and_resumes_exactly() -> None:
    _, stopper, results, states = _tiny_run(1, None)
    assert [r.epoch for r in results] == list(range(1, len(results) + 1))
    assert results[-1].lr < results[0].lr  # cosine
    best = stopper.best_epoch
    assert best == min(results, key=lambda r: r.val_nll_final).epoch
    assert all(torch.equal(stopper.best_state[k], states[best]["model"][k]) for k in stopper.best_state)
    if results[-1].stop:
        assert results[-1].epoch - best == 2
    # resumed after epoch 2 from a checkpoint: the same epochs, the same weights, the same best epoch
    cut = 2
    ckpt = states[cut]
    _, resumed_stopper, resumed, _ = _tiny_run(cut + 1, ckpt)
    assert [r.epoch for r in resumed] == [r.epoch for r in results[cut:]]
    assert [r.val_nll_final for r in resumed] == [r.val_nll_final for r in results[cut:]]
    assert resumed_stopper.best_epoch == best
    assert all(torch.equal(resumed_stopper.best_state[k], stopper.best_state[k]) for k in stopper.best_state)


def test_bf16_trains_with_fp32_weights_and_loss() -> None:
    torch.manual_seed(0)
    model = BAlexNet(["relu1"])
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    opt = make_optimizer(model.parameters(), "adam", 1e-3)
    loss = train_epoch(model, opt, x, y, [1.0, 0.3], 16, torch.Generator().manual_seed(0), "crop_flip",
                       precision="bf16")
    assert math.isfinite(loss) and loss > 0
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(s["exp_avg"].dtype == torch.float32 for s in opt.state.values())
    with pytest.raises(ValueError, match="allowed: fp32, bf16"):
        train_epoch(model, opt, x, y, [1.0, 0.3], 16, torch.Generator(), "none", precision="fp16")
