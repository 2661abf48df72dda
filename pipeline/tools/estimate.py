"""What ``make run`` will cost: the device and an estimate of the training time, from timed steps.

    python -m pipeline estimate

Reads params ``train`` and ``variants`` (and ``data.n_train``), builds each variant's model on the
device the train stage will use, times a few training steps at ``train.batch_size`` on random
input (after two untimed ones), and multiplies by the steps of the schedule. It only informs: it
never refuses. On a CPU it names the faster ways to a result.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from eeoffload.layout import ModelSpec
from eeoffload.model import build_model
from eeoffload.training import weighted_exit_loss
from pipeline.core import params as P
from pipeline.core.io import read_params, run_stage
from pipeline.core.runtime import keep_freed_memory

TIMED_STEPS = 3


def step_seconds(branches: list[str], weights: list[float], batch_size: int, device: str,
                 spec: ModelSpec | None = None) -> float:
    """Mean wall time of one training step (forward, backward, Adam) of this variant on ``device``
    (network ``spec``, params ``model``; initial weights do not matter for timing)."""
    spec = spec or ModelSpec()
    model = build_model(spec, branches, load_init_weights=False).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch_size, *model.input_shape, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch_size,), device=device)

    def step() -> None:
        loss = weighted_exit_loss(model(x), y, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(TIMED_STEPS):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / TIMED_STEPS


def print_estimate() -> None:
    params = read_params()
    tp, n_train = P.train_params(params), P.data_params(params).n_train
    device = P.torch_device(tp.device)
    torch.set_num_threads(tp.num_threads or os.cpu_count() or 1)
    keep_freed_memory()
    name = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    epochs = tp.trunk_epochs + tp.joint_epochs
    steps = -(-n_train // tp.batch_size) * epochs
    total = 0.0
    model = P.model_spec(params)
    for variant, spec in P.variants_params(params).items():
        seconds = step_seconds(list(spec.branches), list(spec.exit_weights), tp.batch_size, device, model) * steps
        total += seconds * len(tp.seeds)
        print(f"estimate: train@{variant}: {epochs} epochs x {steps // epochs} steps ~ {seconds / 60:.0f} min "
              f"per seed on {device} ({name}), x {len(tp.seeds)} seeds", flush=True)
    print(f"estimate: training all variants and seeds ~ {total / 60:.0f} min ({total / 3600:.1f} h) on {name}; "
          f"the other stages add a few minutes (fewer seeds: -S 'train.seeds=[0]')", flush=True)
    if device == "cpu" and total > 3600:
        print("estimate: faster ways to a result on this machine:\n"
              "  make paper   the shipped paper-length results (results/paper/), analysed in under a minute\n"
              "  make quick   the CPU quick recipe (configs/quick.yaml), over-confident exits in about half an hour\n"
              "  (continuing with the full recipe: interrupt with Ctrl-C; training resumes from its last epoch)",
              flush=True)


def main(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="python -m pipeline estimate", description=__doc__.splitlines()[0]).parse_args(argv)
    run_stage("estimate", print_estimate, record_timing=False)
    return 0
