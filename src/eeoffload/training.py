"""Joint training of all exits of an early-exit network (BranchyNet [5], paper Section IV-A).

Loss = sum_k w_k * CE(z_k, y) over the exits k (side branches, then the final exit). No label
smoothing or mixup: those change calibration by themselves, and calibration is what we study.
The recipe's knobs (their allowed values in :mod:`eeoffload.training_options`): augmentation on
whole tensor batches on the training device (``none``, ``crop_flip``, the authors' flip and
rotation), Adam or SGD, a constant or cosine learning rate per epoch, early stopping on the final
exit's validation NLL, and bf16 autocast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eeoffload.temperature import fit_temperature
from eeoffload.training_options import AUGMENTATIONS, OPTIMIZERS, PRECISIONS, SCHEDULES

# CIFAR-10 training-set channel statistics.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
CROP_PAD = 4


def images_to_tensor(images: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 (N, 32, 32, 3) -> normalised float32 (N, 3, 32, 32) in channels-last memory."""
    x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float().div_(255.0)  # (N, 3, 32, 32)
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def augment_batch(x: torch.Tensor, generator: torch.Generator, mode: str = "crop_flip") -> torch.Tensor:
    """The batch augmented by ``mode`` (:data:`AUGMENTATIONS`), one draw per image from ``generator``."""
    if mode == "none":
        return x
    if mode == "crop_flip":
        return crop_flip_batch(x, generator)
    if mode == "authors":
        return flip_rotate_batch(x, generator)
    raise ValueError(f"unknown augmentation {mode!r}; allowed: {', '.join(AUGMENTATIONS)}")


#: The authors' training transforms (pachecobeto95, early_exit_calibration/extra/
#: training_b_alexnet_cifar.py): RandomHorizontalFlip(p=0.25), RandomRotation(25).
AUTHORS_FLIP_P = 0.25
AUTHORS_MAX_DEGREES = 25.0


def flip_rotate_batch(x: torch.Tensor, generator: torch.Generator, flip_p: float = AUTHORS_FLIP_P,
                      max_degrees: float = AUTHORS_MAX_DEGREES) -> torch.Tensor:
    """Horizontal flip with probability ``flip_p``, then rotation about the centre by an angle drawn
    uniformly from [-max_degrees, max_degrees] (bilinear, zeros outside, like torchvision's
    RandomRotation with its defaults but bilinear), one draw per image."""
    b = x.shape[0]
    dev = x.device
    flip = (torch.rand(b, generator=generator, device="cpu") < flip_p).to(dev)
    angle = ((torch.rand(b, generator=generator, device="cpu") * 2 - 1) * max_degrees).to(dev)
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    rad = angle.float() * (math.pi / 180.0)
    cos, sin = torch.cos(rad), torch.sin(rad)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.contiguous(memory_format=torch.channels_last)


def crop_flip_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop (zero padding 4) and horizontal flip of a batch, one draw per image."""
    b, _, h, w = x.shape
    padded = F.pad(x, (CROP_PAD,) * 4)  # (B, C, H+8, W+8)
    dev = x.device
    dy = torch.randint(0, 2 * CROP_PAD + 1, (b,), generator=generator, device="cpu").to(dev)
    dx = torch.randint(0, 2 * CROP_PAD + 1, (b,), generator=generator, device="cpu").to(dev)
    flip = torch.rand(b, generator=generator, device="cpu").to(dev) < 0.5
    windows = padded.unfold(2, h, 1).unfold(3, w, 1)  # (B, C, 9, 9, H, W), a view of every crop
    out = windows[torch.arange(b, device=dev), :, dy, dx]  # (B, C, H, W)
    out = torch.where(flip[:, None, None, None], out.flip(3), out)
    return out.contiguous(memory_format=torch.channels_last)


def weighted_exit_loss(
    exits: Sequence[torch.Tensor], labels: torch.Tensor, weights: Sequence[float]
) -> torch.Tensor:
    """BranchyNet's joint loss: sum over exits of weight * cross-entropy; zero weights skipped."""
    terms = [w * F.cross_entropy(z, labels) for z, w in zip(exits, weights, strict=True) if w != 0]
    return torch.stack(terms).sum()


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    weights: Sequence[float],
    batch_size: int,
    generator: torch.Generator,
    augment: bool | str,
    on_batch: Callable[[float], None] | None = None,
    precision: str = "fp32",
) -> float:
    """One pass over (x, y) in a seeded random order; returns the mean training loss.

    ``augment``: a mode of :data:`AUGMENTATIONS` (True/False: crop_flip/none). ``precision``
    ``bf16`` runs the forward pass under bf16 autocast; the loss is computed in fp32 from the
    logits, the weights and the optimizer state stay fp32.
    The loss is summed on the device and read once per epoch, so a GPU never waits for the host,
    unless ``on_batch`` asks for every batch's loss (a progress bar)."""
    mode = ("crop_flip" if augment else "none") if isinstance(augment, bool) else augment
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    bf16 = precision == "bf16"
    model.train()
    order = torch.randperm(len(x), generator=generator).to(x.device)
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for start in range(0, len(x), batch_size):
        idx = order[start : start + batch_size]
        xb, yb = x[idx], y[idx]
        if mode != "none":
            xb = augment_batch(xb, generator, mode)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            exits = model(xb)
        loss = weighted_exit_loss([z.float() for z in exits] if bf16 else exits, yb, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach().double() * len(idx)
        if on_batch is not None:
            on_batch(float(loss.detach()))
    return float(total) / len(x)


@torch.no_grad()
def predict_exits(model: nn.Module, x: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Logits of every exit for every sample, in eval mode: a list of (N, 10) float32 CPU tensors."""
    model.eval()
    chunks: list[list[torch.Tensor]] = []
    for start in range(0, len(x), batch_size):
        chunks.append([z.float().cpu() for z in model(x[start : start + batch_size])])
    return [torch.cat([c[k] for c in chunks]) for k in range(len(chunks[0]))]


def exit_metrics(
    logits: Sequence[torch.Tensor], labels: torch.Tensor, weights: Sequence[float]
) -> tuple[float, list[float]]:
    """(weighted loss, accuracy per exit) of precomputed logits."""
    labels = labels.cpu()
    loss = float(weighted_exit_loss(logits, labels, weights))
    accs = [float((z.argmax(1) == labels).float().mean()) for z in logits]
    return loss, accs


# --------------------------------------------------------------------------- the schedule

TRUNK, JOINT = "trunk", "joint"


def training_schedule(trunk_epochs: int, joint_epochs: int) -> list[str]:
    """BranchyNet's two phases (paper Section IV-A): ``trunk_epochs`` epochs of the trunk alone
    (final exit only), then ``joint_epochs`` of all exits with the weighted loss; one phase name
    per epoch, epoch 1 first."""
    if trunk_epochs < 0 or joint_epochs < 0 or trunk_epochs + joint_epochs == 0:
        raise ValueError(f"need at least one epoch, got trunk {trunk_epochs}, joint {joint_epochs}")
    return [TRUNK] * trunk_epochs + [JOINT] * joint_epochs


def phase_weights(phase: str, exit_weights: Sequence[float]) -> list[float]:
    """The loss weight per exit in ``phase``: the final exit's alone in the trunk phase (the side
    branches get no gradient, so an optimiser leaves them as they are), ``exit_weights`` jointly."""
    if phase == TRUNK:
        return [0.0] * (len(exit_weights) - 1) + [1.0]
    if phase == JOINT:
        return [float(w) for w in exit_weights]
    raise ValueError(f"unknown phase {phase!r}; allowed: {TRUNK}, {JOINT}")


def make_optimizer(parameters, name: str, lr: float, weight_decay: float = 0.0, momentum: float = 0.9,
                   nesterov: bool = False) -> torch.optim.Optimizer:
    """Adam (BranchyNet; L2 ``weight_decay`` added to the gradient) or SGD with momentum (the
    authors' later scripts: momentum 0.9, weight decay 1e-4), optionally Nesterov."""
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}")


def learning_rate(schedule: str, base_lr: float, epoch: int, total_epochs: int) -> float:
    """The learning rate of 1-based ``epoch``: ``constant`` (``base_lr``) or ``cosine`` annealing,
    base_lr * (1 + cos(pi * (epoch - 1) / total_epochs)) / 2 (SGDR without restarts, stepped per
    epoch like torch's CosineAnnealingLR with T_max = total_epochs and eta_min = 0)."""
    if schedule == "constant":
        return base_lr
    if schedule == "cosine":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / total_epochs))
    raise ValueError(f"unknown schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}")


@dataclass
class EarlyStopping:
    """Early stopping on the final exit's validation NLL (the authors' scripts: patience 5 on the
    validation loss, here on the validation split, never the test set): the run stops once
    ``patience`` epochs of the joint phase have passed without a new lowest NLL, and the weights of
    the best epoch are restored. The trunk phase (if any) is a fixed warm-up that it does not cut.
    ``best_state`` (a CPU copy of the best weights) and the two numbers are what a checkpoint keeps
    to resume exactly."""

    patience: int
    best_epoch: int = 0
    best_nll: float = math.inf
    best_state: dict[str, torch.Tensor] | None = None

    def update(self, epoch: int, nll: float, model: nn.Module) -> bool:
        """Record ``epoch``'s NLL (copying the weights if it is the lowest yet); True: stop now."""
        if nll < self.best_nll:
            self.best_epoch, self.best_nll = epoch, nll
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        return epoch - self.best_epoch >= self.patience

    def state(self) -> dict[str, object]:
        return {"patience": self.patience, "best_epoch": self.best_epoch, "best_nll": self.best_nll,
                "best_state": self.best_state}

    @classmethod
    def from_state(cls, state: dict) -> EarlyStopping:
        return cls(int(state["patience"]), int(state["best_epoch"]), float(state["best_nll"]), state["best_state"])


@dataclass(frozen=True)
class Recipe:
    """How the weights are trained, besides the schedule of phases and the data: the optimiser's
    learning rate per epoch, the augmentation and the precision (params section ``train``)."""

    lr: float = 1e-3
    schedule: str = "constant"
    augment: str = "none"
    precision: str = "fp32"
    early_stopping_patience: int = 0  # 0 = off


@dataclass(frozen=True)
class EpochResult:
    """One finished epoch of :func:`fit`: the training loss and the exits on the validation split."""

    epoch: int  # 1-based
    phase: str
    train_loss: float
    val_loss: float
    val_accuracy: list[float]  # per exit
    val_temperature: list[float]  # per exit, fitted on val (eq. 2): > 1 over-confident
    lr: float = 0.0
    val_nll_final: float = math.nan  # the final exit's validation NLL (early stopping's criterion)
    best_epoch: int = 0  # early stopping's best epoch so far (0: off)
    stop: bool = False  # early stopping ends the run after this epoch


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, x_val: torch.Tensor,
        y_val: torch.Tensor, schedule: Sequence[str], exit_weights: Sequence[float], batch_size: int,
        generator: torch.Generator, augment: bool | str | Recipe, first_epoch: int = 1, val_batch_size: int = 1000,
        on_batch: Callable[[float], None] | None = None,
        early_stopping: EarlyStopping | None = None) -> Iterator[EpochResult]:
    """Train ``model`` through ``schedule`` (:func:`training_schedule`) from epoch ``first_epoch``
    (a resumed run: model, optimiser, generator and ``early_stopping`` restored by the caller),
    yielding after each epoch, before the next starts: the caller checkpoints, writes snapshots or
    stops there. ``augment`` is a :class:`Recipe` (or, as before recipes, the augmentation alone:
    the optimiser's own learning rate, fp32). The validation loss uses the joint ``exit_weights``
    in both phases, and every exit's temperature is fitted on the validation logits (miscalibration
    along training at the cost of one 1-D fit). With ``early_stopping`` the last result has
    ``stop=True`` when it ends the run early; restoring the best weights is the caller's (they are
    in ``early_stopping.best_state``)."""
    recipe = augment if isinstance(augment, Recipe) else None
    for epoch in range(first_epoch, len(schedule) + 1):
        phase = schedule[epoch - 1]
        if recipe is not None:
            lr = learning_rate(recipe.schedule, recipe.lr, epoch, len(schedule))
            for group in optimizer.param_groups:
                group["lr"] = lr
        else:
            lr = float(optimizer.param_groups[0]["lr"])
        loss = train_epoch(model, optimizer, x, y, phase_weights(phase, exit_weights), batch_size, generator,
                           recipe.augment if recipe else augment, on_batch=on_batch,  # type: ignore[arg-type]
                           precision=recipe.precision if recipe else "fp32")
        val_logits = predict_exits(model, x_val, val_batch_size)
        val_loss, val_acc = exit_metrics(val_logits, y_val, exit_weights)
        nll = float(F.cross_entropy(val_logits[-1], y_val.cpu()))
        stop = False
        if early_stopping is not None and phase == JOINT:
            stop = early_stopping.update(epoch, nll, model)
        yield EpochResult(epoch, phase, loss, val_loss, val_acc, [fit_temperature(z, y_val) for z in val_logits],
                          lr, nll, early_stopping.best_epoch if early_stopping else 0, stop)
        if stop:
            return
