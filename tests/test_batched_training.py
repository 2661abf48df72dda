"""eeoffload.batched: K seeds trained as one vmapped model equal K separate trainings.

Tolerances (fixed before the first run):

* float64, Adam with weight decay, crop_flip augmentation, dropout on, one trunk and one joint
  epoch: every weight of model k within 1e-9 (max abs difference) of the separately trained
  model k; per-epoch rows within 1e-9 (training loss) and 1e-5 (validation loss, accuracy,
  temperature, computed from float32 logits as ``fit`` does). float64 because Adam's update
  lr * m / (sqrt(v) + eps) turns a last-bit difference in a near-zero gradient (the vmapped grouped
  convolution sums in another order than the plain one) into a weight difference up to ~lr: in
  float32 that makes an elementwise weight tolerance meaningless, in float64 it does not happen.
* float32, SGD with momentum (linear in the gradient, no such amplification), dropout on: every
  weight within 1e-5 of separate runs of the model with torch's LocalResponseNorm (the plain
  reference, tests/model_oracles.py). Disclosure: this tolerance was first checked against separate
  runs of the pipeline's own model (fast LRN) and failed there at 1.75e-5 (branch conv weight,
  moved 1.7e-3). The cause is on the separate side: in float32 the fast LRN's gradient path gives
  conv1 and branch-conv weight gradients ~1e-3 (relative to their largest entry) off the float64
  value on a random batch, where torch's LRN and the vmapped plain path are within ~1e-6; in
  float64 both paths agree (the test above). Against the fast model the check is therefore the
  looser 1e-4, set after that measurement.
* the unstacked state dicts load into ``build_model`` and give the separately trained models'
  logits within 1e-5 (float32).
* bf16 autocast: the batched step runs, losses are finite, weights move and stay float32.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eeoffload.batched import BatchedTrainer, fit_batched, seeded_models
from eeoffload.layout import ModelSpec
from eeoffload.model import build_model
from tests.model_oracles import with_torch_lrn
from eeoffload.training import Recipe, fit, make_optimizer, predict_exits, train_epoch, training_schedule

BRANCHES, WEIGHTS, SEEDS = ["relu1"], [1.0, 0.3], [0, 1, 2]
N, BATCH = 16, 8  # 2 batches per epoch (tiny: the vmapped grouped conv backward is slow on CPU)


def _data(dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(123)
    x = torch.randn(N + 8, 3, 32, 32, generator=gen, dtype=dtype).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (N + 8,), generator=gen)
    return x[:N], y[:N], x[N:], y[N:]


def _separate(seed: int, dtype: torch.dtype, optimizer: str, lr: float, recipe: Recipe, schedule: list[str],
              data: tuple[torch.Tensor, ...]):
    """One run as the train stage does it: manual_seed, build_model, channels-last, fit."""
    x, y, xv, yv = data
    torch.manual_seed(seed)
    model = build_model(ModelSpec(), BRANCHES).to(dtype).to(memory_format=torch.channels_last)
    opt = make_optimizer(model.parameters(), optimizer, lr, weight_decay=1e-4)
    rows = list(fit(model, opt, x, y, xv, yv, schedule, WEIGHTS, BATCH, torch.Generator().manual_seed(seed), recipe))
    return model, rows


def _batched(dtype: torch.dtype, optimizer: str, lr: float, recipe: Recipe, schedule: list[str],
             data: tuple[torch.Tensor, ...]):
    x, y, xv, yv = data
    models, data_gens, dropout_gens = seeded_models(ModelSpec(), BRANCHES, SEEDS)
    trainer = BatchedTrainer([m.to(dtype) for m in models], data_gens, dropout_gens)
    opt = make_optimizer(trainer.parameters(), optimizer, lr, weight_decay=1e-4)
    rows = list(fit_batched(trainer, opt, x, y, xv, yv, schedule, WEIGHTS, BATCH, recipe))
    return trainer, rows


def _max_weight_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def test_batched_adam_float64_equals_separate_runs() -> None:
    data = _data(torch.float64)
    recipe, schedule = Recipe(lr=1e-3, augment="crop_flip"), training_schedule(1, 1)
    trainer, batched_rows = _batched(torch.float64, "adam", 1e-3, recipe, schedule, data)
    states = trainer.state_dicts()
    for k, seed in enumerate(SEEDS):
        model, rows = _separate(seed, torch.float64, "adam", 1e-3, recipe, schedule, data)
        assert _max_weight_diff(states[k], model.state_dict()) <= 1e-9
        for mine, theirs in zip((r[k] for r in batched_rows), rows, strict=True):
            assert (mine.epoch, mine.phase) == (theirs.epoch, theirs.phase)
            assert abs(mine.train_loss - theirs.train_loss) <= 1e-9
            assert abs(mine.val_loss - theirs.val_loss) <= 1e-5
            np.testing.assert_allclose(mine.val_accuracy, theirs.val_accuracy, rtol=0, atol=1e-5)
            np.testing.assert_allclose(mine.val_temperature, theirs.val_temperature, rtol=0, atol=1e-5)
        # the per-run file layout: the unstacked weights load into build_model, same logits
        loaded, reference = build_model(ModelSpec(), BRANCHES), build_model(ModelSpec(), BRANCHES)
        loaded.load_state_dict(states[k])
        reference.load_state_dict(model.state_dict())
        xv = data[2].float()
        for a, b in zip(predict_exits(loaded, xv, 16), predict_exits(reference, xv, 16), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    # the models really differ from each other (own seeds, orders, masks)
    assert _max_weight_diff(states[0], states[1]) > 1e-3


def test_batched_sgd_float32_equals_separate_runs() -> None:
    data = _data(torch.float32)
    x, y = data[0], data[1]
    models, data_gens, dropout_gens = seeded_models(ModelSpec(), BRANCHES, SEEDS)
    trainer = BatchedTrainer(models, data_gens, dropout_gens)
    opt = make_optimizer(trainer.parameters(), "sgd", 0.01, weight_decay=1e-4)
    for _ in range(2):
        trainer.train_epoch(opt, x, y, WEIGHTS, BATCH, "none")
    for plain, tolerance in ((True, 1e-5), (False, 1e-4)):
        for k, seed in enumerate(SEEDS):
            torch.manual_seed(seed)
            model = build_model(ModelSpec(), BRANCHES)
            model = (with_torch_lrn(model) if plain else model).to(memory_format=torch.channels_last)
            sep_opt = make_optimizer(model.parameters(), "sgd", 0.01, weight_decay=1e-4)
            gen = torch.Generator().manual_seed(seed)
            for _ in range(2):
                train_epoch(model, sep_opt, x, y, WEIGHTS, BATCH, gen, "none")
            assert _max_weight_diff(trainer.state_dicts()[k], model.state_dict()) <= tolerance, (plain, seed)


def test_batched_runs_under_bf16_autocast() -> None:
    x, y, _, _ = _data(torch.float32)
    models, data_gens, dropout_gens = seeded_models(ModelSpec(), BRANCHES, SEEDS[:2])
    trainer = BatchedTrainer(models, data_gens, dropout_gens)
    before = trainer.state_dicts()
    opt = make_optimizer(trainer.parameters(), "adam", 1e-3)
    losses = trainer.train_epoch(opt, x, y, WEIGHTS, BATCH, "crop_flip", precision="bf16")
    assert len(losses) == 2 and all(np.isfinite(losses))
    after = trainer.state_dicts()
    assert all(t.dtype == torch.float32 for t in after[0].values())
    assert _max_weight_diff(before[0], after[0]) > 0
    build_model(ModelSpec(), BRANCHES).load_state_dict(after[1])


def test_batch_norm_is_refused() -> None:
    models, data_gens, dropout_gens = seeded_models(ModelSpec(batch_norm=True), BRANCHES, SEEDS[:1])
    with pytest.raises(ValueError, match="batch_norm"):
        BatchedTrainer(models, data_gens, dropout_gens)
