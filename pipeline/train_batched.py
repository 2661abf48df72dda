"""Stage train, batched: several seeds of one variant trained as ONE vmapped model (eeoffload.batched).

``python -m pipeline train-batched <variant> [SEED ...]`` (default: every seed of ``train.seeds``).
Reads params ``train``, ``model`` and ``variants.<variant>``, as ``pipeline.train`` does, and writes
exactly what K separate runs ``python -m pipeline train <variant> <seed_k>`` write, per seed: the
model file, the history CSV, the snapshots, and after every epoch the run's own checkpoint (its
slice of the stacked weights and optimiser state, its data generator, and its dropout generator as
the run's global RNG state). So a batched training cut after epoch k resumes batched (all seeds'
checkpoints at the same epoch) or seed by seed with ``pipeline train``, and the outputs are those
of separate runs within float tolerance (the batched model sums K losses and uses vmap-able LRN and
flatten: tests/test_batched_training.py, tests/test_train_batched_stage.py).

For a GPU that one small model leaves idle (issue 23): ``python -m pipeline plain-run
--batched-train`` runs it in place of the train instances. DVC does not know this command: after it,
``dvc commit`` records the outputs (as after ``plain_run``). Not supported, with one error line:
early stopping (a per-run stop) and ``model.batch_norm`` (running statistics).
"""

from __future__ import annotations

import os
import shutil
import time

import torch

from eeoffload.batched import BatchedTrainer, fit_batched, seeded_models
from eeoffload.training import Recipe, make_optimizer, training_schedule
from pipeline.core import registry
from pipeline.core.atomic import atomic_write_parquet
from pipeline.core.io import StageError, read_params
from pipeline.core.params import model_spec, torch_device, train_params, variant_params
from pipeline.core.runtime import keep_freed_memory
from pipeline.core.splits import BATCH, model_logits
from pipeline.train import (
    epoch_line,
    fingerprint,
    history_row,
    read_checkpoint,
    save_checkpoint,
    training_data,
    write_run_outputs,
)


def unstack_optimizer(state: dict, k: int) -> dict:
    """Run ``k``'s optimiser state dict out of the stacked one: every per-parameter tensor with a
    leading model dimension sliced (Adam's moments, SGD's momentum), scalars (Adam's step) kept.
    Parameter indices are the same: the stacked parameters follow the model's own order."""
    per = {i: {name: (v[k].clone() if torch.is_tensor(v) and v.dim() >= 1 else v) for name, v in s.items()}
           for i, s in state["state"].items()}
    return {"state": per, "param_groups": state["param_groups"]}


def stack_optimizer(states: list[dict]) -> dict:
    """The stacked optimiser state dict of K runs' (the inverse of :func:`unstack_optimizer`)."""
    first = states[0]
    stacked = {i: {name: (torch.stack([s["state"][i][name] for s in states]) if torch.is_tensor(v) and v.dim() >= 1
                          else v) for name, v in entry.items()} for i, entry in first["state"].items()}
    return {"state": stacked, "param_groups": first["param_groups"]}


def main(variant: str, seeds: list[int] | None = None) -> None:
    params = read_params()
    tp, vp, spec = train_params(params), variant_params(params, variant), model_spec(params)
    seeds = list(seeds) if seeds else list(tp.seeds)
    unknown = [s for s in seeds if s not in tp.seeds]
    if unknown or len(set(seeds)) != len(seeds):
        raise StageError(f"train-batched seeds {seeds}: each once, from train.seeds = {list(tp.seeds)}; "
                         f"allowed: a subset of them")
    if tp.early_stopping_patience:
        raise StageError(f"params.yaml: train.early_stopping_patience = {tp.early_stopping_patience}: the batched "
                         f"trainer has no per-run stop; allowed: 0, or `python -m pipeline train` per seed")
    if spec.batch_norm:
        raise StageError("params.yaml: model.batch_norm = true: the batched trainer cannot keep running statistics; "
                         "allowed: false, or `python -m pipeline train` per seed")
    device = torch_device(tp.device)
    torch.set_num_threads(tp.num_threads or os.cpu_count() or 1)
    keep_freed_memory()
    x, y, x_val, y_val, snapshot_splits = training_data(device, bool(tp.snapshot_epochs))

    try:
        models, data_gens, dropout_gens = seeded_models(spec, vp.branches, seeds)
    except ValueError as e:
        raise StageError(f"params.yaml: model: {e}") from None
    trainer = BatchedTrainer([m.to(device) for m in models], data_gens, dropout_gens)
    optimizer = make_optimizer(trainer.parameters(), tp.optimizer, tp.lr, tp.weight_decay, tp.momentum, tp.nesterov)
    recipe = Recipe(tp.lr, tp.schedule, tp.augment, tp.precision, 0)
    schedule = training_schedule(tp.trunk_epochs, tp.joint_epochs)
    runs = [registry.run_dir(variant, s) for s in seeds]
    ckpt_paths = [registry.checkpoint_path(variant, s) for s in seeds]
    snapshot_dirs = [p.with_name(p.stem + "_snapshots") for p in ckpt_paths]
    fps = [fingerprint(tp, vp, s, spec) for s in seeds]
    histories: list[list[dict]] = [[] for _ in seeds]

    ckpts = [read_checkpoint(p, fp) for p, fp in zip(ckpt_paths, fps)]
    if all(c is not None for c in ckpts) and len({len(c["history"]) for c in ckpts}) == 1:  # type: ignore[index]
        with torch.no_grad():
            for name, value in trainer.params.items():
                value.copy_(torch.stack([c["model"][name] for c in ckpts]).to(value))  # type: ignore[index]
        optimizer.load_state_dict(stack_optimizer([c["optimizer"] for c in ckpts]))  # type: ignore[index]
        for c, data_gen, dropout_gen, i in zip(ckpts, data_gens, dropout_gens, range(len(seeds))):
            data_gen.set_state(c["generator"])  # type: ignore[index]
            dropout_gen.set_state(c["torch_rng"])  # type: ignore[index]
            histories[i] = list(c["history"])  # type: ignore[index]
        print(f"resuming {variant} seeds {seeds} after epoch {len(histories[0])}", flush=True)
    else:
        if any(c is not None for c in ckpts):
            print(f"ignoring the checkpoints of {variant}: not every seed of {seeds} has one at the same epoch "
                  f"(train those seeds separately to resume them)", flush=True)
        for d in snapshot_dirs:
            shutil.rmtree(d, ignore_errors=True)

    start_time = t0 = time.perf_counter()
    for rows in fit_batched(trainer, optimizer, x, y, x_val, y_val, schedule, vp.exit_weights, tp.batch_size,
                            recipe, first_epoch=len(histories[0]) + 1, val_batch_size=BATCH):
        epoch = rows[0].epoch
        elapsed = time.perf_counter() - t0
        state = optimizer.state_dict()
        weights = trainer.state_dicts()
        for i, r in enumerate(rows):
            row = history_row(r, recipe, tp.lr)
            histories[i].append(row)
            if epoch in tp.snapshot_epochs:  # fit_batched left the trained weights in trainer.models
                atomic_write_parquet(snapshot_dirs[i] / f"epoch_{epoch:03d}.parquet",
                                     model_logits(trainer.models[i], snapshot_splits, device))
            save_checkpoint(ckpt_paths[i], fps[i], weights[i], unstack_optimizer(state, i), data_gens[i].get_state(),
                            dropout_gens[i].get_state(), None, histories[i], None)
            print(epoch_line(runs[i], r, row, len(schedule), epoch in tp.snapshot_epochs, elapsed,
                             elapsed * (len(schedule) - epoch)), flush=True)
        t0 = time.perf_counter()

    for i, (seed, state_dict) in enumerate(zip(seeds, trainer.state_dicts())):
        write_run_outputs(variant, seed, state_dict, vp.branches, spec, histories[i], tp.snapshot_epochs, {})
    print(f"trained {variant} seeds {seeds} as one batched model ({len(histories[0])} epochs) in "
          f"{(time.perf_counter() - start_time) / 60:.1f} min on {device}", flush=True)
