"""Figure 1: achieved GFLOP/s of the default model's training step on the CPU, next to this
machine's fp32 matmul rate measured in the same run (goal: at least 70% of it).

    python -m benchmarks.training_cpu [--variant one_branch] [--steps 2] [--rounds 3] [--compile]

The step is the pipeline's own ``eeoffload.training.train_epoch`` at batch 512 (index, batched
augmentation, forward, weighted loss, backward, Adam) on synthetic in-memory images. FLOPs are
counted once with ``torch.utils.flop_counter.FlopCounterMode`` on the forward + backward of the
ORIGINAL model (torch's LocalResponseNorm: no FLOPs for elementwise ops), so every configuration
is credited with the same useful work and a faster LRN cannot inflate its own count. Configurations
(the levers) are timed in interleaved rounds, each with the matmul rate at its own thread count;
the best round of each is kept.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import figure, note
from eeoffload.model import BAlexNet, LocalResponseNorm
from eeoffload.training import train_epoch, weighted_exit_loss

BENCH = "training_cpu"
GOAL = ">= 70% of the fp32 matmul rate"
BATCH = 512
VARIANTS = {"one_branch": (["relu1"], [1.0, 0.3]), "two_branch": (["relu1", "relu2"], [1.0, 0.65, 0.3])}


def with_torch_lrn(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with torch's LocalResponseNorm in place of eeoffload's (the original model)."""
    model = copy.deepcopy(model)
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, LocalResponseNorm):
                setattr(parent, name, nn.LocalResponseNorm(child.size, child.alpha, child.beta, child.k))
    return model


class Contiguous(nn.Module):
    """Feeds the model NCHW-contiguous input (the 'no channels-last' configuration)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model(x.contiguous())


def step_flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor, weights: Sequence[float]) -> int:
    """FLOPs of one forward + backward (FlopCounterMode; Adam's elementwise update counts 0)."""
    with FlopCounterMode(display=False) as counter:
        weighted_exit_loss(model(x), y, weights).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def matmul_gflops(threads: int, n: int = 1024, reps: int = 8) -> float:
    """fp32 torch.mm rate (GFLOP/s) at ``threads`` threads, best of 3 bursts."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    c = torch.empty(n, n)
    torch.mm(a, b, out=c)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b, out=c)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 * reps / best / 1e9


@dataclass
class Config:
    name: str
    model: nn.Module
    threads: int
    optimizer: torch.optim.Optimizer | None = None
    best_step_s: float = float("inf")


def make_config(name: str, base: nn.Module, threads: int, torch_lrn: bool = False, channels_last: bool = True,
                compiled: bool = False, inplace_relu: bool = False) -> Config:
    model = with_torch_lrn(base) if torch_lrn else copy.deepcopy(base)
    if inplace_relu:
        for module in model.modules():
            if isinstance(module, nn.ReLU):
                module.inplace = True
    if not channels_last:
        model = Contiguous(model.to(memory_format=torch.contiguous_format))
    if compiled:
        model = torch.compile(model)
    return Config(name, model, threads, torch.optim.Adam(model.parameters(), lr=1e-3))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="one_branch")
    ap.add_argument("--steps", type=int, default=2, help="training steps per timed epoch")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (1-3 min to compile)")
    ap.add_argument("--threads", type=int, default=0, help="threads of the main configurations (0: all cores)")
    ap.add_argument("--levers", action=argparse.BooleanOptionalAction, default=True,
                    help="time the lever configurations (NCHW, 1 thread) beside baseline and current")
    args = ap.parse_args(argv)

    cores = args.threads or os.cpu_count() or 1
    branches, weights = VARIANTS[args.variant]
    torch.manual_seed(0)
    base = BAlexNet(branches).to(memory_format=torch.channels_last)
    n = BATCH * args.steps
    x = torch.randn(n, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (n,))
    torch.set_num_threads(cores)
    flops = step_flops(with_torch_lrn(base), x[:BATCH], y[:BATCH], weights)

    configs = [
        make_config(f"original (torch LRN), channels-last, {cores} threads", base, cores, torch_lrn=True),
        make_config(f"current (fast LRN), channels-last, {cores} threads", base, cores),
    ]
    if args.levers:
        configs.append(make_config(f"fast LRN, NCHW (no channels-last), {cores} threads", base, cores,
                                   channels_last=False))
        configs.append(make_config(f"fast LRN + in-place ReLU, channels-last, {cores} threads", base, cores,
                                   inplace_relu=True))
        if cores > 1:
            configs.append(make_config("fast LRN, channels-last, 1 thread", base, 1))
    if args.compile:
        configs.append(make_config(f"fast LRN + torch.compile(model), {cores} threads", base, cores, compiled=True))
    gen = torch.Generator().manual_seed(0)
    for cfg in configs:  # warm-up (and compilation) outside the timed rounds
        torch.set_num_threads(cfg.threads)
        start = time.perf_counter()
        train_epoch(cfg.model, cfg.optimizer, x[:BATCH], y[:BATCH], weights, BATCH, gen, augment=True)
        if "compile" in cfg.name:
            note(BENCH, f"torch.compile warm-up (compilation) {time.perf_counter() - start:.0f} s")

    thread_counts = sorted({c.threads for c in configs})
    matmul = {t: 0.0 for t in thread_counts}
    for _ in range(args.rounds):
        for t in thread_counts:
            matmul[t] = max(matmul[t], matmul_gflops(t))
        for cfg in configs:
            torch.set_num_threads(cfg.threads)
            start = time.perf_counter()
            train_epoch(cfg.model, cfg.optimizer, x, y, weights, BATCH, gen, augment=True)
            cfg.best_step_s = min(cfg.best_step_s, (time.perf_counter() - start) / args.steps)
    torch.set_num_threads(cores)

    note(BENCH, f"model {args.variant}, batch {BATCH}: {flops / 1e9:.2f} GFLOP per training step "
                f"(FlopCounterMode, forward + backward); fp32 matmul (1024^3, best of {args.rounds} rounds): "
                + ", ".join(f"{matmul[t]:.1f} GFLOP/s at {t} thread(s)" for t in thread_counts))
    baseline = configs[0].best_step_s
    for cfg in configs:
        rate = flops / cfg.best_step_s / 1e9
        note(BENCH, f"{cfg.name}: {cfg.best_step_s:.3f} s/step, {rate:.1f} GFLOP/s = "
                    f"{100 * rate / matmul[cfg.threads]:.0f}% of matmul at {cfg.threads} thread(s), "
                    f"{baseline / cfg.best_step_s:.2f}x the original step rate")
    best = max(configs, key=lambda c: flops / c.best_step_s / matmul[c.threads])
    current = configs[1]
    for label, cfg in (("current", current), ("best configuration", best)):
        rate = flops / cfg.best_step_s / 1e9
        ratio = rate / matmul[cfg.threads]
        figure(BENCH, f"{label}: {rate:.1f} GFLOP/s = {100 * ratio:.0f}% of fp32 matmul "
                      f"({matmul[cfg.threads]:.1f} GFLOP/s) [{cfg.name}]", GOAL, ratio >= 0.70)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
