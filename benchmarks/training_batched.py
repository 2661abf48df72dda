"""Batched trainer (eeoffload.batched, K models as one vmapped model) vs K sequential trainings.

    python -m benchmarks.training_batched [--k 4] [--batch 64] [--steps 2]

Images per second (K x images of one epoch / wall time) of one epoch of the batched trainer and of
K ``train_epoch`` runs one after another (the pipeline's fast model), after one warm-up epoch
each, in one process; the figure is their ratio (INFO: no goal).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence

import torch

from benchmarks import figure
from eeoffload.batched import BatchedTrainer, seeded_models
from eeoffload.layout import ModelSpec
from eeoffload.training import make_optimizer, train_epoch

BENCH = "training_batched"
BRANCHES, WEIGHTS = ["relu1"], [1.0, 0.3]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    n = args.batch * args.steps
    x = torch.randn(n, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (n,))
    seeds = list(range(args.k))

    models, data_gens, dropout_gens = seeded_models(ModelSpec(), BRANCHES, seeds)
    trainer = BatchedTrainer(models, data_gens, dropout_gens)
    opt = make_optimizer(trainer.parameters(), "adam", 1e-3)
    trainer.train_epoch(opt, x[: args.batch], y[: args.batch], WEIGHTS, args.batch)  # warm-up
    start = time.perf_counter()
    trainer.train_epoch(opt, x, y, WEIGHTS, args.batch)
    batched = args.k * n / (time.perf_counter() - start)

    runs = []
    for seed in seeds:
        model = seeded_models(ModelSpec(), BRANCHES, [seed])[0][0].to(memory_format=torch.channels_last)
        runs.append((model, make_optimizer(model.parameters(), "adam", 1e-3), torch.Generator().manual_seed(seed)))
    for model, o, gen in runs:  # warm-up
        train_epoch(model, o, x[: args.batch], y[: args.batch], WEIGHTS, args.batch, gen, "none")
    start = time.perf_counter()
    for model, o, gen in runs:
        train_epoch(model, o, x, y, WEIGHTS, args.batch, gen, "none")
    sequential = args.k * n / (time.perf_counter() - start)
    figure(BENCH, f"K={args.k} one_branch models, batch {args.batch}, {args.steps} steps, fp32: batched "
                  f"{batched:.0f} images/s vs {args.k} sequential trainings {sequential:.0f} images/s = "
                  f"{batched / sequential:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
