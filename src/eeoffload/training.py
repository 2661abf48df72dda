"""Joint training of all exits of an early-exit network (BranchyNet [5], paper Section IV-A).

Loss = sum_k w_k * CE(z_k, y) over the exits k (side branches, then the final exit). No label
smoothing or mixup: those change calibration by themselves, and calibration is what we study.
Augmentation (random crop with 4-pixel padding, horizontal flip) runs on whole tensor batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eeoffload.temperature import fit_temperature

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


def augment_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
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
    augment: bool,
    on_batch: Callable[[float], None] | None = None,
) -> float:
    """One pass over (x, y) in a seeded random order; returns the mean training loss.

    The loss is summed on the device and read once per epoch, so a GPU never waits for the host,
    unless ``on_batch`` asks for every batch's loss (a progress bar)."""
    model.train()
    order = torch.randperm(len(x), generator=generator).to(x.device)
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for start in range(0, len(x), batch_size):
        idx = order[start : start + batch_size]
        xb, yb = x[idx], y[idx]
        if augment:
            xb = augment_batch(xb, generator)
        loss = weighted_exit_loss(model(xb), yb, weights)
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


@dataclass(frozen=True)
class EpochResult:
    """One finished epoch of :func:`fit`: the training loss and the exits on the validation split."""

    epoch: int  # 1-based
    phase: str
    train_loss: float
    val_loss: float
    val_accuracy: list[float]  # per exit
    val_temperature: list[float]  # per exit, fitted on val (eq. 2): > 1 over-confident


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, x_val: torch.Tensor,
        y_val: torch.Tensor, schedule: Sequence[str], exit_weights: Sequence[float], batch_size: int,
        generator: torch.Generator, augment: bool, first_epoch: int = 1, val_batch_size: int = 1000,
        on_batch: Callable[[float], None] | None = None) -> Iterator[EpochResult]:
    """Train ``model`` through ``schedule`` (:func:`training_schedule`) from epoch ``first_epoch``
    (a resumed run: model, optimiser and generator restored by the caller), yielding after each
    epoch, before the next starts: the caller checkpoints, writes snapshots or stops there. The
    validation loss uses the joint ``exit_weights`` in both phases, and every exit's temperature is
    fitted on the validation logits (miscalibration along training at the cost of one 1-D fit)."""
    for epoch in range(first_epoch, len(schedule) + 1):
        phase = schedule[epoch - 1]
        loss = train_epoch(model, optimizer, x, y, phase_weights(phase, exit_weights), batch_size, generator,
                           augment, on_batch=on_batch)
        val_logits = predict_exits(model, x_val, val_batch_size)
        val_loss, val_acc = exit_metrics(val_logits, y_val, exit_weights)
        yield EpochResult(epoch, phase, loss, val_loss, val_acc, [fit_temperature(z, y_val) for z in val_logits])
