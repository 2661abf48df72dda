"""Stage shift: every exit's logits on the val and test images, clean and corrupted (distribution shift).

``python -m pipeline shift <variant> <seed>`` (``<seed>`` of ``shift.seeds``). Reads params
``shift.corruptions``, ``shift.severities``, ``shift.max_images``, ``shift.seed`` (and
``shift.seeds``), ``variants.<variant>.branches``, ``train.device``, ``train.num_threads``; the
prepared val and test images and data/models/<variant>/seed<k>.pt. Corrupts at most
``shift.max_images`` images of each split (the first of a seeded shuffle, then in sample_id order;
0 = all) with every corruption at every severity (eeoffload.corruptions: CIFAR-10-C's definitions,
seeded per split, corruption and severity) and writes data/shift/<variant>/seed<k>.parquet
(:mod:`pipeline.core.registry`): the logits schema (sample_id, split, label, exit, logit_0..9) plus
``corruption`` (string; ``none`` for the clean images), ``severity`` (int64; 0 clean) and the image
statistics ``stat_<name>`` (float64, eeoffload.severity.STATISTICS) of the image the row's logits
come from. Without the trained weights (a results bundle that ships logits only) it stops with one
line saying so (exit status 2).
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import torch

from eeoffload.corruptions import CLEAN, corrupt
from eeoffload.severity import STATISTICS, image_statistics
from eeoffload.training import images_to_tensor, predict_exits
from pipeline.core import registry
from pipeline.core.atomic import atomic_write_parquet
from pipeline.core.io import StageError, read_params
from pipeline.core.params import runtime_params, torch_device, variant_branches
from pipeline.core.params_shift import ShiftParams, shift_params
from pipeline.core.splits import BATCH, load_model, load_split, logits_table

SPLITS = ("val", "test")


def subsample(arrays: dict[str, np.ndarray], max_images: int, seed: int, split_index: int) -> dict[str, np.ndarray]:
    """At most ``max_images`` samples of a split (0: all): the first of a seeded shuffle, kept in
    the split's own (sample_id) order."""
    n = len(arrays["labels"])
    if max_images == 0 or max_images >= n:
        return arrays
    keep = np.sort(np.random.default_rng([seed, split_index]).permutation(n)[:max_images])
    return {k: v[keep] for k, v in arrays.items()}


def settings(p: ShiftParams) -> list[tuple[str, int]]:
    """The clean images first, then every corruption at every severity."""
    return [CLEAN] + [(c, s) for c in p.corruptions for s in p.severities]


def setting_table(model: torch.nn.Module, split: str, arrays: dict[str, np.ndarray], corruption: str, severity: int,
                  seed: tuple[int, int], device: str) -> pa.Table:
    images = corrupt(arrays["images"], corruption, severity, seed)
    exits = predict_exits(model, images_to_tensor(images, device), BATCH)
    table = logits_table(split, arrays["sample_id"], arrays["labels"], exits)
    n_rows = table.num_rows
    table = table.append_column("corruption", pa.array([corruption] * n_rows, type=pa.large_string()))
    table = table.append_column("severity", pa.array(np.full(n_rows, severity, dtype=np.int64)))
    stats = np.tile(image_statistics(images), (len(exits), 1))  # rows are exit-major, as the logits
    for j, name in enumerate(STATISTICS):
        table = table.append_column(f"stat_{name}", pa.array(stats[:, j]))
    return table


def main(variant: str, seed: int) -> None:
    params = read_params()
    p = shift_params(params, check_seeds=False)  # validate checks shift.seeds against train.seeds
    if seed not in p.seeds:
        raise StageError(f"params.yaml: shift.seeds = {list(p.seeds)}; seed {seed} is not among them")
    branches = variant_branches(params, variant)
    runtime = runtime_params(params)
    path = registry.model_path(variant, seed)
    if not path.is_file():
        raise StageError(f"{path}: no trained weights, so no logits under shift (a results bundle with logits only "
                         f"cannot run stage shift; train the run, or use a bundle that ships its weights)")
    device = torch_device(runtime.device)
    torch.set_num_threads(runtime.num_threads or os.cpu_count() or 1)
    model = load_model(path, branches).to(device).to(memory_format=torch.channels_last)
    tables = []
    for i, split in enumerate(SPLITS):
        arrays = subsample(load_split(split), p.max_images, p.seed, i)
        for corruption, severity in settings(p):
            tables.append(setting_table(model, split, arrays, corruption, severity, (p.seed, i), device))
            print(f"{variant}/seed{seed} {split} {corruption} {severity}: {len(arrays['labels'])} images", flush=True)
    atomic_write_parquet(registry.shift_logits_path(variant, seed), pa.concat_tables(tables))

