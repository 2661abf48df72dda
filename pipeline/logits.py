"""Stage logits: every exit's logits on the validation and test splits, as one Parquet file.

``python -m pipeline logits <variant> <seed>``. Reads params ``variants.<variant>.branches``,
``train.device`` and ``train.num_threads``, and data/models/<variant>/seed<k>.pt. Writes
data/logits/<variant>/seed<k>.parquet (:mod:`pipeline.core.registry`), one row per
(sample, exit): sample_id int64, split (val|test), label int64, exit int64 (1 = first side branch,
..., n = final exit), logit_0 ... logit_9 float32.
"""

from __future__ import annotations

import os

import torch

from pipeline.core import registry
from pipeline.core.atomic import atomic_write_parquet
from pipeline.core.io import read_params
from pipeline.core.params import runtime_params, torch_device, variant_branches
from pipeline.core.runtime import keep_freed_memory
from pipeline.core.splits import load_model, load_split, model_logits


def main(variant: str, seed: int) -> None:
    params = read_params()
    branches = variant_branches(params, variant)
    runtime = runtime_params(params)
    device = torch_device(runtime.device)
    torch.set_num_threads(runtime.num_threads or os.cpu_count() or 1)
    keep_freed_memory()  # large activations stay in the heap between steps (pipeline.core.runtime)
    model = load_model(registry.model_path(variant, seed), branches)
    model = model.to(device).to(memory_format=torch.channels_last)
    table = model_logits(model, {split: load_split(split) for split in ("val", "test")}, device,
                         report=registry.run_dir(variant, seed))
    atomic_write_parquet(registry.logits_path(variant, seed), table)
