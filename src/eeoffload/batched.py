"""K copies of one network (K seeds, same variant and recipe) trained as ONE batched model.

The K models' parameters are stacked along a new leading dimension
(``torch.func.stack_module_state``), one forward of a parameter-free skeleton runs every model on
its own batch (``torch.func.functional_call`` under ``torch.vmap``; PyTorch docs, "Model
ensembling", https://pytorch.org/tutorials/intermediate/ensembling.html), and ONE ordinary
optimizer steps the stacked leaf tensors on the loss sum_k loss_k. Adam and SGD (momentum, weight
decay) are element-wise and model k's parameters receive only d loss_k, so this is K separate
optimizers; the batched step only fuses the K models' small kernels into larger ones.

What each model k sees is what ``python -m pipeline train <variant> <seed_k>`` gives it
(:func:`seeded_models`): initial weights from ``torch.manual_seed(seed_k)``, the data order
``torch.randperm`` and the augmentation draws from its own ``torch.Generator().manual_seed(seed_k)``
in the order :func:`eeoffload.training.train_epoch` draws them, and its own dropout masks.

Differences from the separately trained model and how they are handled:

* The fast LRN and flatten of :mod:`eeoffload.layers` are old-style autograd Functions, which
  vmap rejects; the batched skeleton uses the plain ops (``F.local_response_norm`` with the same
  size/alpha/beta/k, forced to fp32 under autocast like the fast one; ``nn.Flatten``): equal
  within float tolerance (tests/test_perf_equivalence.py).
* Dropout: ``vmap(randomness="different")`` would draw the K masks from the global RNG in one
  call, so model k's masks would differ from a separate run's (same distribution, other draws, and
  they would depend on K). Instead the masks are drawn explicitly, outside vmap, from a per-model
  generator that continues the global CPU RNG stream of the separate run after its model was built
  (the same ``bernoulli_(1 - p)`` / ``(1 - p)`` that torch's CPU dropout draws), and enter the
  skeleton as buffers; vmap runs with ``randomness="error"``, so nothing random happens inside.
  On CPU the masks are those of separate runs; on CUDA the separate runs' fused dropout kernel
  draws from the CUDA generator, so the masks differ from them (same distribution).
* BatchNorm's running statistics are in-place buffer updates: ``batch_norm`` models are refused.
  Early stopping (a per-model stop) is not supported either.

:meth:`BatchedTrainer.state_dicts` unstacks the trained weights into K ordinary state dicts that
:func:`eeoffload.model.build_model` loads (the train stage's files per run);
:func:`fit_batched` mirrors :func:`eeoffload.training.fit` and yields, per epoch, one
:class:`~eeoffload.training.EpochResult` per model. tests/test_batched_training.py checks the K
models against K separate trainings.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state

from eeoffload.layers import Flatten, LocalResponseNorm
from eeoffload.layout import ModelSpec
from eeoffload.model import build_model
from eeoffload.temperature import fit_temperature
from eeoffload.training import (
    EpochResult, Recipe, augment_batch, exit_metrics, learning_rate, phase_weights, predict_exits,
    weighted_exit_loss,
)
from eeoffload.training_options import AUGMENTATIONS, PRECISIONS


class PlainLRN(LocalResponseNorm):
    """The LRN through ``F.local_response_norm`` (vmap-able; fp32 under autocast as the fast one)."""

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)


class MaskedDropout(nn.Module):
    """Dropout that multiplies by the mask buffer (already scaled by 1 / (1 - p)) in training."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.register_buffer("mask", torch.empty(0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask if self.training and self.p > 0 else x


def plain_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with the plain LRN and flatten and :class:`MaskedDropout` (same names)."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, LocalResponseNorm):
                setattr(parent, name, PlainLRN(child.size, child.alpha, child.beta, child.k))
            elif isinstance(child, Flatten):
                setattr(parent, name, nn.Flatten(child.start_dim, child.end_dim))
            elif isinstance(child, nn.Dropout):
                setattr(parent, name, MaskedDropout(child.p))
            elif isinstance(child, nn.modules.batchnorm._BatchNorm):
                raise ValueError("batched training: batch_norm models are not supported (running statistics)")
    return model


def seeded_models(spec: ModelSpec, branches: Sequence[str], seeds: Sequence[int]
                  ) -> tuple[list[nn.Module], list[torch.Generator], list[torch.Generator]]:
    """Per seed, as the train stage starts: ``torch.manual_seed(seed)``, ``build_model``; returns the
    models, the data generators (``Generator().manual_seed(seed)``) and the dropout generators (the
    global CPU RNG's state right after the model was built: what a separate run's dropout draws
    from). The global RNG is left as the last seed's run would leave it."""
    models, data, dropout = [], [], []
    for seed in seeds:
        torch.manual_seed(seed)
        models.append(build_model(spec, branches))
        data.append(torch.Generator().manual_seed(seed))
        dropout.append(torch.Generator())
        dropout[-1].set_state(torch.get_rng_state())
    return models, data, dropout


class BatchedTrainer:
    """K models of the same architecture as one stacked model. ``parameters()`` are the stacked
    leaf tensors (K, ...) for one ordinary optimizer; ``dropout_generators[k]`` draws model k's
    dropout masks, ``data_generators[k]`` its data order and augmentation."""

    def __init__(self, models: Sequence[nn.Module], data_generators: Sequence[torch.Generator],
                 dropout_generators: Sequence[torch.Generator]) -> None:
        if not (len(models) == len(data_generators) == len(dropout_generators) >= 1):
            raise ValueError("need one data and one dropout generator per model, and at least one model")
        self.models = list(models)  # the originals: their state_dict keys, and validation copies
        self.state_keys = list(models[0].state_dict())
        self.data_generators, self.dropout_generators = list(data_generators), list(dropout_generators)
        plain = [plain_copy(m) for m in models]
        self.params, self.buffers = stack_module_state(plain)  # {name: (K, ...)}
        self.skeleton = copy.deepcopy(plain[0]).to("meta")
        self.dropouts = self._dropout_shapes(plain[0])
        self.dtype = next(iter(self.params.values())).dtype

    @property
    def k(self) -> int:
        return len(self.models)

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    @staticmethod
    def _dropout_shapes(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
        """(buffer name, feature shape) of every dropout layer, in the order the forward runs them."""
        found: list[tuple[str, tuple[int, ...]]] = []
        names = {m: n for n, m in model.named_modules() if isinstance(m, MaskedDropout)}
        hooks = [m.register_forward_hook(lambda m, i, o: found.append((names[m] + ".mask", tuple(i[0].shape[1:]))))
                 for m in names]
        p = next(model.parameters())
        try:
            with torch.no_grad():
                model.eval()(torch.zeros(1, *getattr(model, "input_shape", (3, 32, 32)), dtype=p.dtype,
                                         device=p.device))
        finally:
            for h in hooks:
                h.remove()
        return found

    def _masks(self, batch: int, dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
        """Every dropout layer's (K, batch, ...) masks, model k's from its own generator, drawn in
        the order a separate run's forward draws them (layer by layer per model)."""
        per_model = []
        for gen in self.dropout_generators:
            drawn = {}
            for name, shape in self.dropouts:
                p = self.skeleton.get_submodule(name[: -len(".mask")]).p
                drawn[name] = torch.empty((batch, *shape), dtype=dtype).bernoulli_(1 - p, generator=gen).div_(1 - p)
            per_model.append(drawn)
        return {name: torch.stack([d[name] for d in per_model]).to(device) for name, _ in self.dropouts}

    def train_epoch(self, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                    weights: Sequence[float], batch_size: int, augment: bool | str = "none",
                    precision: str = "fp32") -> list[float]:
        """One pass of every model over (x, y), each in its own seeded order (as
        :func:`eeoffload.training.train_epoch` per model); returns each model's mean training loss."""
        mode = ("crop_flip" if augment else "none") if isinstance(augment, bool) else augment
        if mode not in AUGMENTATIONS or precision not in PRECISIONS:
            raise ValueError(f"augment {mode!r} / precision {precision!r}: allowed {AUGMENTATIONS} / {PRECISIONS}")
        bf16 = precision == "bf16"
        device = x.device
        self.skeleton.train()
        orders = [torch.randperm(len(x), generator=g).to(device) for g in self.data_generators]
        total = torch.zeros(self.k, dtype=torch.float64, device=device)

        def one_loss(params, buffers, xb, yb):  # one model's loss on its own batch
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                exits = functional_call(self.skeleton, (params, buffers), (xb,))
            return weighted_exit_loss([z.float() for z in exits] if bf16 else exits, yb, weights)

        batched_loss = torch.vmap(one_loss, randomness="error")
        for start in range(0, len(x), batch_size):
            xbs, ybs = [], []
            for order, gen in zip(orders, self.data_generators):
                idx = order[start : start + batch_size]
                xb = x[idx]
                xbs.append(augment_batch(xb, gen, mode) if mode != "none" else xb)
                ybs.append(y[idx])
            xb, yb = torch.stack(xbs), torch.stack(ybs)  # (K, B, 3, 32, 32), (K, B)
            buffers = dict(self.buffers)
            buffers.update(self._masks(yb.shape[1], torch.bfloat16 if bf16 else self.dtype, device))
            losses = batched_loss(self.params, buffers, xb, yb)  # (K,)
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            optimizer.step()
            total += losses.detach().double() * yb.shape[1]
        return [float(t) / len(x) for t in total]

    def state_dicts(self) -> list[dict[str, torch.Tensor]]:
        """The K models' weights as ordinary state dicts (keys of ``build_model``'s), on the CPU."""
        stacked = {**self.buffers, **self.params}
        return [{key: stacked[key][k].detach().to("cpu", copy=True) for key in self.state_keys}
                for k in range(self.k)]

    def unstacked_models(self) -> list[nn.Module]:
        """The original K models (fast LRN and flatten) holding the trained weights."""
        for model, state in zip(self.models, self.state_dicts()):
            model.load_state_dict(state)
        return self.models


def fit_batched(trainer: BatchedTrainer, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                x_val: torch.Tensor, y_val: torch.Tensor, schedule: Sequence[str], exit_weights: Sequence[float],
                batch_size: int, recipe: Recipe, first_epoch: int = 1,
                val_batch_size: int = 1000) -> Iterator[list[EpochResult]]:
    """:func:`eeoffload.training.fit` for K models at once: after each epoch, one
    :class:`EpochResult` per model (training loss; validation loss, accuracy and temperature per
    exit from the unstacked model, through the same helpers as ``fit``). No early stopping."""
    if recipe.early_stopping_patience:
        raise ValueError("fit_batched: early stopping is not supported (train those runs separately)")
    for epoch in range(first_epoch, len(schedule) + 1):
        phase = schedule[epoch - 1]
        lr = learning_rate(recipe.schedule, recipe.lr, epoch, len(schedule))
        for group in optimizer.param_groups:
            group["lr"] = lr
        losses = trainer.train_epoch(optimizer, x, y, phase_weights(phase, exit_weights), batch_size,
                                     recipe.augment, recipe.precision)
        rows = []
        for model, loss in zip(trainer.unstacked_models(), losses):
            model.to(x_val.device)
            val_logits = predict_exits(model, x_val, val_batch_size)
            val_loss, val_acc = exit_metrics(val_logits, y_val, exit_weights)
            nll = float(F.cross_entropy(val_logits[-1], y_val.cpu()))
            rows.append(EpochResult(epoch, phase, loss, val_loss, val_acc,
                                    [fit_temperature(z, y_val) for z in val_logits], lr, nll))
        yield rows


__all__ = ["BatchedTrainer", "MaskedDropout", "PlainLRN", "fit_batched", "plain_copy", "seeded_models"]
