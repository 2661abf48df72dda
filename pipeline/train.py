"""Stage train: joint training of one variant's exits on the prepared training split.

``python -m pipeline train <variant> <seed>``. Reads params ``train`` and ``variants.<variant>``.
Writes data/models/<variant>/seed<k>.pt (state_dict + branches; load with weights_only=True), the
per-epoch history reports/training/<variant>/seed<k>.csv (seed 0's declared as DVC plots; with each exit's
validation accuracy and the temperature fitted on the validation logits at that epoch) and, for
every epoch in ``train.snapshot_epochs``, the exits' logits on val and test at that epoch:
data/snapshots/<variant>/epoch_NNN.parquet (the logits schema, one file per snapshot).
A checkpoint (model, optimizer, RNG states, history) is written to data/checkpoints/<variant>.pt
after every epoch, and the snapshots so far beside it in data/checkpoints/<variant>_snapshots/;
a re-run with the same params resumes from them, and they are removed (the snapshots moved to
data/snapshots/<variant>/) at the end.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from eeoffload.layout import ModelSpec
from eeoffload.model import build_model
from eeoffload.training import (
    EarlyStopping,
    EpochResult,
    Recipe,
    fit,
    images_to_tensor,
    make_optimizer,
    training_schedule,
)
from pipeline.core import registry
from pipeline.core.atomic import atomic_dir, atomic_path, atomic_write_parquet, atomic_write_text
from pipeline.core.io import StageError, read_params
from pipeline.core.params import TrainParams, VariantParams, model_spec, torch_device, train_params, variant_params
from pipeline.core.runtime import keep_freed_memory
from pipeline.core.splits import BATCH, PREPARED, load_split, model_logits


def fingerprint(tp: TrainParams, vp: VariantParams, seed: int, spec: object = None) -> str:
    """What a checkpoint must match to be resumed: the params, the seed and the prepared data."""
    meta = (PREPARED / "meta.json").read_text() if (PREPARED / "meta.json").is_file() else ""
    # snapshot_epochs does not change the training; the snapshots already written are kept.
    # nor does the list of other seeds.
    trained = {k: v for k, v in tp.__dict__.items() if k not in ("snapshot_epochs", "seeds")} | {"seed": seed}
    blob = json.dumps([trained, vp.__dict__, meta] + ([spec.as_dict()] if spec is not None else []),  # type: ignore[attr-defined]
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def read_checkpoint(path: Path, fp: str) -> dict | None:
    """The checkpoint at ``path`` if it is readable, complete and made with fingerprint ``fp``; else
    None (with a line saying why), and training starts from scratch. Loaded with weights_only=True."""
    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a damaged checkpoint costs the epochs, not the run
        print(f"ignoring {path}: unreadable ({type(e).__name__})", flush=True)
        return None
    keys = {"fingerprint", "model", "optimizer", "generator", "torch_rng", "history"}
    if not isinstance(ckpt, dict) or not keys <= set(ckpt):
        print(f"ignoring {path}: not a checkpoint of this stage", flush=True)
        return None
    if ckpt["fingerprint"] != fp:
        print(f"ignoring {path}: made with other params or data", flush=True)
        return None
    return ckpt


def history_csv(history: list[dict[str, float | int | str]]) -> str:
    """The per-epoch history as CSV text, one row per epoch (the csv module: no pandas import)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(history[0]) if history else [], lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return out.getvalue()


def history_row(r: EpochResult, recipe: Recipe, lr: float) -> dict[str, float | int | str]:
    """One epoch's row of reports/training/<variant>/seed<k>.csv (the recipe columns only for a
    recipe beyond BranchyNet's: ``Recipe(lr)``)."""
    row: dict[str, float | int | str] = {"epoch": r.epoch, "phase": r.phase,
                                         "train_loss": round(r.train_loss, 6), "val_loss": round(r.val_loss, 6)}
    row.update({f"val_acc_exit{k + 1}": round(a, 6) for k, a in enumerate(r.val_accuracy)})
    row.update({f"val_temperature_exit{k + 1}": round(t, 4) for k, t in enumerate(r.val_temperature)})
    if recipe != Recipe(lr):  # a recipe beyond BranchyNet's: the columns that say how it went
        row.update({"lr": round(r.lr, 8), "val_nll_final": round(r.val_nll_final, 6),
                    "best_epoch": r.best_epoch, "stopped": int(r.stop)})
    return row


def epoch_line(run: Path, r: EpochResult, row: dict, n_epochs: int, snapshot: bool, elapsed: float,
               eta: float) -> str:
    """The progress line of one epoch (printed after its checkpoint: once printed, it survives a kill)."""
    accs = " ".join(f"exit{k + 1} {a:.3f}" for k, a in enumerate(r.val_accuracy))
    temps = " ".join(f"{row[f'val_temperature_exit{k + 1}']:.2f}" for k in range(len(r.val_accuracy)))
    return (f"{run} epoch {r.epoch}/{n_epochs} {r.phase}: loss {r.train_loss:.4f} val_loss "
            f"{r.val_loss:.4f} val_acc {accs} T {temps}{' (snapshot)' if snapshot else ''} "
            f"({elapsed:.1f} s, eta {eta / 60:.1f} min)")


def save_checkpoint(path: Path, fp: str, model: dict, optimizer: dict, generator: torch.Tensor,
                    torch_rng: torch.Tensor, cuda_rng: list | None, history: list[dict], early_stopping: dict | None
                    ) -> None:
    """The epoch checkpoint of one run (what :func:`read_checkpoint` resumes), written atomically."""
    with atomic_path(path) as tmp:
        torch.save({"fingerprint": fp, "model": model, "optimizer": optimizer, "generator": generator,
                    "torch_rng": torch_rng, "cuda_rng": cuda_rng, "history": history,
                    "early_stopping": early_stopping}, tmp)


def write_run_outputs(variant: str, seed: int, state_dict: dict, branches: list[str], spec: ModelSpec,
                      history: list[dict], snapshot_epochs: list[int], extra: dict[str, object]) -> None:
    """One run's outputs: the model file, its history CSV, its snapshots (moved from beside the
    checkpoint); then the checkpoint and its snapshots are removed."""
    ckpt_path = registry.checkpoint_path(variant, seed)
    snapshot_dir = ckpt_path.with_name(ckpt_path.stem + "_snapshots")
    saved: dict[str, object] = {"state_dict": state_dict, "branches": branches}
    if spec != type(spec)():  # today's B-AlexNet files stay as they were
        saved["model"] = spec.as_dict()
    saved.update(extra)
    with atomic_path(registry.model_path(variant, seed)) as tmp:
        torch.save(saved, tmp)
    atomic_write_text(registry.training_csv(variant, seed), history_csv(history))
    with atomic_dir(registry.snapshots_dir(variant, seed)) as tmp:
        for epoch in snapshot_epochs:
            if epoch > len(history):  # past an early stop: that snapshot was never taken
                continue
            shutil.copy2(snapshot_dir / f"epoch_{epoch:03d}.parquet", tmp / f"epoch_{epoch:03d}.parquet")
    ckpt_path.unlink(missing_ok=True)
    shutil.rmtree(snapshot_dir, ignore_errors=True)


def training_data(device: str, snapshots: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """The prepared training split on ``device``, the validation split (labels on the CPU) and, when
    ``snapshots``, the val and test splits the snapshots are taken on."""
    train, val = load_split("train"), load_split("val")
    snapshot_splits = {"val": val, "test": load_split("test")} if snapshots else {}
    return (images_to_tensor(train["images"], device), torch.from_numpy(train["labels"]).to(device),
            images_to_tensor(val["images"], device), torch.from_numpy(val["labels"]), snapshot_splits)


def main(variant: str, seed: int) -> None:
    params = read_params()
    tp, vp, spec = train_params(params), variant_params(params, variant), model_spec(params)
    device = torch_device(tp.device)
    torch.set_num_threads(tp.num_threads or os.cpu_count() or 1)
    keep_freed_memory()  # large activations stay in the heap between steps (pipeline.core.runtime)
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels (GPU only)
    if seed not in tp.seeds:
        raise StageError(f"params.yaml: train.seeds = {list(tp.seeds)} has no seed {seed}; allowed: one of them")
    torch.manual_seed(seed)
    run = registry.run_dir(variant, seed)
    x, y, x_val, y_val, snapshot_splits = training_data(device, bool(tp.snapshot_epochs))

    try:
        model = build_model(spec, vp.branches)
    except ValueError as e:  # e.g. init_weights that do not fit the architecture
        raise StageError(f"params.yaml: model: {e}") from None
    model = model.to(device).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model.parameters(), tp.optimizer, tp.lr, tp.weight_decay, tp.momentum, tp.nesterov)
    recipe = Recipe(tp.lr, tp.schedule, tp.augment, tp.precision, tp.early_stopping_patience)
    stopper = EarlyStopping(tp.early_stopping_patience) if tp.early_stopping_patience else None
    generator = torch.Generator().manual_seed(seed)
    schedule = training_schedule(tp.trunk_epochs, tp.joint_epochs)
    history: list[dict[str, float | int | str]] = []

    ckpt_path = registry.checkpoint_path(variant, seed)
    snapshot_dir = ckpt_path.with_name(ckpt_path.stem + "_snapshots")
    fp = fingerprint(tp, vp, seed, spec)
    ckpt = read_checkpoint(ckpt_path, fp)
    if ckpt is None and snapshot_dir.exists():
        shutil.rmtree(snapshot_dir)  # snapshots of another run
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        generator.set_state(ckpt["generator"])
        torch.set_rng_state(ckpt["torch_rng"])
        if device == "cuda" and ckpt.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(list(ckpt["cuda_rng"]))
        history = list(ckpt["history"])
        if stopper is not None and ckpt.get("early_stopping") is not None:
            stopper = EarlyStopping.from_state(ckpt["early_stopping"])
        print(f"resuming {run} from {ckpt_path} after epoch {len(history)}", flush=True)
        missing = [e for e in tp.snapshot_epochs
                   if e <= len(history) and not (snapshot_dir / f"epoch_{e:03d}.parquet").is_file()]
        if missing:
            raise StageError(f"params.yaml: train.snapshot_epochs = {list(tp.snapshot_epochs)}; epochs {missing} "
                             f"are already past in the checkpoint {ckpt_path} (epoch {len(history)}); allowed: "
                             f"epochs after {len(history)}, or delete {ckpt_path} to train from scratch")

    steps = -(-len(x) // tp.batch_size)
    start_time = time.perf_counter()
    interactive = sys.stderr.isatty()
    stopped = bool(history) and bool(history[-1].get("stopped", False))
    remaining = 0 if stopped else len(schedule) - len(history)
    with tqdm(total=steps * remaining, desc=f"{run} training", disable=not interactive, leave=False,
              unit="batch") as bar:
        progress = (lambda v: (bar.update(1), bar.set_postfix(loss=f"{v:.3f}"))) if interactive else None
        t0 = time.perf_counter()
        first = len(schedule) + 1 if stopped else len(history) + 1
        for r in fit(model, optimizer, x, y, x_val, y_val, schedule, vp.exit_weights, tp.batch_size, generator,
                     recipe, first_epoch=first, val_batch_size=BATCH, on_batch=progress, early_stopping=stopper):
            row = history_row(r, recipe, tp.lr)
            history.append(row)
            if r.epoch in tp.snapshot_epochs:
                atomic_write_parquet(snapshot_dir / f"epoch_{r.epoch:03d}.parquet",
                                     model_logits(model, snapshot_splits, device))
            elapsed = time.perf_counter() - t0
            eta = elapsed * (len(schedule) - r.epoch)
            # The checkpoint first, then the line: once "epoch k/" is printed, epoch k survives a kill.
            save_checkpoint(ckpt_path, fp, model.state_dict(), optimizer.state_dict(), generator.get_state(),
                            torch.get_rng_state(), torch.cuda.get_rng_state_all() if device == "cuda" else None,
                            history, stopper.state() if stopper else None)
            if r.stop:
                print(f"{run}: early stopping after epoch {r.epoch} (no lower final-exit val NLL for "
                      f"{tp.early_stopping_patience} epochs); the weights of epoch {r.best_epoch} are kept", flush=True)
            print(epoch_line(run, r, row, len(schedule), r.epoch in tp.snapshot_epochs, elapsed, eta), flush=True)
            t0 = time.perf_counter()

    state = {k: v.cpu() for k, v in model.state_dict().items()}
    extra: dict[str, object] = {}
    if stopper is not None:
        if stopper.best_state is not None:
            state = stopper.best_state
            model.load_state_dict(stopper.best_state)
        extra = {"best_epoch": stopper.best_epoch, "epochs_run": len(history)}
    write_run_outputs(variant, seed, state, vp.branches, spec, history, tp.snapshot_epochs, extra)
    print(f"trained {run} ({len(history)} epochs{f', weights of epoch {stopper.best_epoch}' if stopper else ''}) in {(time.perf_counter() - start_time) / 60:.1f} min "
          f"on {device}", flush=True)
