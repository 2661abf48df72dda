"""Figure 1: achieved GFLOP/s of the default model's training step on the CPU, next to this
machine's fp32 matmul rate measured in the same run (goal: at least 70% of it).

    python -m benchmarks.training_cpu [--variant one_branch] [--steps 3] [--rounds 3] [--alternations 3]
                                      [--no-levers] [--compile]

The step is the pipeline's own ``eeoffload.training.train_epoch`` at batch 512 (index, batched
augmentation, forward, weighted loss, backward, Adam) on synthetic in-memory images. FLOPs are
counted once with ``torch.utils.flop_counter.FlopCounterMode`` on the forward + backward of the
ORIGINAL model (torch's LocalResponseNorm: no FLOPs for elementwise ops), so every configuration
is credited with the same useful work and a faster LRN cannot inflate its own count. Configurations
(the current model, the original one, and the current one with one lever switched off) are timed
in interleaved rounds, each with the matmul rate at its own thread count; the best round of each
is kept. The headline figure comes from fresh worker processes set up like the train stage (one
model, ``pipeline.core.runtime.keep_freed_memory``), alternated with workers on glibc's default
allocator (a process-wide setting): the best step rate over the best fp32 matmul rate measured
between the rounds of all those processes (peak against peak, so a disturbed matmul burst cannot
flatter the ratio).
The lever table runs every configuration in one process, for the ratios between them.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import ROOT, figure, note, run_python
from tests.model_oracles import with_torch_flatten, with_torch_lrn
from eeoffload.model import BAlexNet
from eeoffload.training import train_epoch, weighted_exit_loss
from pipeline.core.runtime import keep_freed_memory

BENCH = "training_cpu"
GOAL = ">= 70% of the fp32 matmul rate"
BATCH = 512
VARIANTS = {"one_branch": (["relu1"], [1.0, 0.3]), "two_branch": (["relu1", "relu2"], [1.0, 0.65, 0.3])}


class Contiguous(nn.Module):
    """Feeds the model NCHW-contiguous input (the 'no channels-last' configuration)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model(x.contiguous())


class DefinitionOrder(nn.Module):
    """Runs ``BAlexNet.reference_forward`` (every layer in definition order, whole branch heads)."""

    def __init__(self, model: BAlexNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model.reference_forward(x)


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


def make_config(name: str, base: BAlexNet, threads: int, torch_lrn: bool = False, channels_last: bool = True,
                compiled: bool = False, inplace_relu: bool = True, planned: bool = True,
                torch_flatten: bool = False) -> Config:
    """``base`` as the pipeline trains it, minus the levers switched off here."""
    model: nn.Module = with_torch_lrn(base) if torch_lrn else copy.deepcopy(base)
    if torch_flatten:
        model = with_torch_flatten(model)
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = inplace_relu
    if not planned:
        model = DefinitionOrder(model)
    if not channels_last:
        model = Contiguous(model.to(memory_format=torch.contiguous_format))
    if compiled:
        model = torch.compile(model)
    return Config(name, model, threads, torch.optim.Adam(model.parameters(), lr=1e-3))


def synthetic_batch(steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = BATCH * steps
    return torch.randn(n, 3, 32, 32).contiguous(memory_format=torch.channels_last), torch.randint(0, 10, (n,))


def time_configs(configs: list[Config], x: torch.Tensor, y: torch.Tensor, weights: Sequence[float],
                 rounds: int) -> dict[int, float]:
    """Warm every configuration up, then time them in interleaved rounds (best round kept in
    ``best_step_s``); returns the best fp32 matmul rate per thread count, measured between them."""
    gen = torch.Generator().manual_seed(0)
    for cfg in configs:  # warm-up (and compilation) outside the timed rounds
        torch.set_num_threads(cfg.threads)
        start = time.perf_counter()
        train_epoch(cfg.model, cfg.optimizer, x[:BATCH], y[:BATCH], weights, BATCH, gen, augment=True)
        if "compile" in cfg.name:
            note(BENCH, f"torch.compile warm-up (compilation) {time.perf_counter() - start:.0f} s")
    steps = len(x) // BATCH
    matmul = {t: 0.0 for t in sorted({c.threads for c in configs})}
    for _ in range(rounds):
        for t in matmul:
            matmul[t] = max(matmul[t], matmul_gflops(t))
        for cfg in configs:
            torch.set_num_threads(cfg.threads)
            start = time.perf_counter()
            train_epoch(cfg.model, cfg.optimizer, x, y, weights, BATCH, gen, augment=True)
            cfg.best_step_s = min(cfg.best_step_s, (time.perf_counter() - start) / steps)
    return matmul


def stage_worker(keep: bool, variant: str, steps: int, rounds: int, threads: int) -> int:
    """One process set up like the train stage (one model; allocator setting ``keep``): prints the
    model's best step time and the best matmul rate, measured between its rounds, as JSON."""
    applied = keep_freed_memory() if keep else False
    branches, weights = VARIANTS[variant]
    torch.manual_seed(0)
    base = BAlexNet(branches).to(memory_format=torch.channels_last)
    x, y = synthetic_batch(steps)
    cfg = make_config("current", base, threads)
    matmul = time_configs([cfg], x, y, weights, rounds)
    print(json.dumps({"step_s": cfg.best_step_s, "matmul": matmul[threads], "applied": applied}))
    return 0


def stage_processes(variant: str, steps: int, rounds: int, threads: int,
                    alternations: int) -> tuple[dict[str, float], float]:
    """The current model in fresh processes set up like the train stage's, glibc's default
    allocator and ``keep_freed_memory`` (process-wide, hence one process per setting) alternated.
    Returns the best step time per setting and the best fp32 matmul rate over all the processes."""
    best: dict[str, float] = {}
    matmul = 0.0
    for _ in range(alternations):
        for setting in ("default", "keep"):
            proc = run_python(["-m", "benchmarks.training_cpu", "--stage-worker", setting, "--variant", variant,
                               "--steps", str(steps), "--rounds", str(rounds), "--threads", str(threads)], ROOT)
            if proc.returncode != 0:
                raise RuntimeError(f"training_cpu worker ({setting}) failed:\n{proc.stderr[-2000:]}")
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            if setting == "keep" and not out["applied"]:
                setting = "keep (unavailable: not glibc)"
            best[setting] = min(best.get(setting, float("inf")), out["step_s"])
            matmul = max(matmul, out["matmul"])
    return best, matmul


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="one_branch")
    ap.add_argument("--steps", type=int, default=3, help="training steps per timed epoch")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (1-3 min to compile)")
    ap.add_argument("--threads", type=int, default=0, help="threads of the main configurations (0: all cores)")
    ap.add_argument("--levers", action=argparse.BooleanOptionalAction, default=True,
                    help="also time each lever switched off, side by side in one process")
    ap.add_argument("--alternations", type=int, default=3,
                    help="fresh train-stage-like processes per allocator setting, alternated")
    ap.add_argument("--stage-worker", choices=["default", "keep"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    cores = args.threads or os.cpu_count() or 1
    if args.stage_worker:
        return stage_worker(args.stage_worker == "keep", args.variant, args.steps, args.rounds, cores)
    branches, weights = VARIANTS[args.variant]
    torch.manual_seed(0)
    base = BAlexNet(branches).to(memory_format=torch.channels_last)
    x, y = synthetic_batch(args.steps)
    torch.set_num_threads(cores)
    flops = step_flops(DefinitionOrder(with_torch_lrn(base)), x[:BATCH], y[:BATCH], weights)
    note(BENCH, f"model {args.variant}, batch {BATCH}: {flops / 1e9:.2f} GFLOP per training step "
                f"(FlopCounterMode, forward + backward of the original model)")

    stage, peak = stage_processes(args.variant, args.steps, args.rounds, cores, args.alternations)
    for setting, step_s in stage.items():
        note(BENCH, f"fresh process like the train stage, allocator {setting}: {step_s:.3f} s/step, "
                    f"{flops / step_s / 1e9:.1f} GFLOP/s = {100 * flops / step_s / 1e9 / peak:.0f}% of fp32 matmul")
    if "default" in stage and "keep" in stage:
        note(BENCH, f"allocator lever (keep_freed_memory vs glibc default): "
                    f"{stage['default'] / stage['keep']:.2f}x the step rate")

    if args.levers:
        keep_freed_memory()  # as the train stage does
        original = dict(torch_lrn=True, inplace_relu=False, planned=False, torch_flatten=True)
        configs = [
            make_config("original (torch LRN and Flatten, definition order, ReLU out of place)", base, cores,
                        **original),
            make_config("current (fast LRN, planned forward, in-place ReLU, channels-last)", base, cores),
            make_config("current but definition order (no shared head layers, ReLU before pool)", base, cores,
                        planned=False),
            make_config("current but ReLU out of place", base, cores, inplace_relu=False),
            make_config("current but nn.Flatten (NCHW gradient)", base, cores, torch_flatten=True),
            make_config("current but NCHW (no channels-last)", base, cores, channels_last=False),
        ]
        if cores > 1:
            configs.append(make_config("current at 1 thread", base, 1))
        if args.compile:
            configs.append(make_config("current + torch.compile(model)", base, cores, compiled=True))
        matmul = time_configs(configs, x, y, weights, args.rounds)
        torch.set_num_threads(cores)
        note(BENCH, "levers, side by side in one process (interleaved rounds; fp32 matmul "
                    + ", ".join(f"{matmul[t]:.1f} GFLOP/s at {t} thread(s)" for t in matmul) + "):")
        baseline = configs[0].best_step_s
        for cfg in configs:
            rate = flops / cfg.best_step_s / 1e9
            note(BENCH, f"  {cfg.name}, {cfg.threads} thread(s): {cfg.best_step_s:.3f} s/step, {rate:.1f} GFLOP/s = "
                        f"{100 * rate / matmul[cfg.threads]:.0f}% of matmul, "
                        f"{baseline / cfg.best_step_s:.2f}x the original step rate")

    setting = "keep" if "keep" in stage else next(s for s in stage if s != "default")
    rate = flops / stage[setting] / 1e9
    figure(BENCH, f"current, fresh process like the train stage ({cores} threads, allocator {setting}): "
                  f"{rate:.1f} GFLOP/s = {100 * rate / peak:.0f}% of fp32 matmul ({peak:.1f} GFLOP/s, the best "
                  f"rate measured between the rounds of all the processes)", GOAL, rate / peak >= 0.70)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
