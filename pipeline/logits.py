"""Stage logits: every exit's logits on the validation and test splits, as one Parquet file.

``python -m pipeline.logits <variant>``. Reads params ``variants.<variant>.branches``,
``train.device`` and ``train.num_threads``. Writes data/logits/<variant>.parquet, one row per
(sample, exit): sample_id int64, split (val|test), label int64, exit int64 (1 = first side branch,
..., n = final exit), logit_0 ... logit_9 float32.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from pipeline.io import atomic_write_parquet, read_params, run_stage
from pipeline.params import runtime_params, torch_device, variant_branches
from pipeline.runtime import keep_freed_memory
from pipeline.splits import load_model, load_split, model_logits


def main(variant: str) -> None:
    params = read_params()
    branches = variant_branches(params, variant)
    runtime = runtime_params(params)
    device = torch_device(runtime.device)
    torch.set_num_threads(runtime.num_threads or os.cpu_count() or 1)
    keep_freed_memory()  # large activations stay in the heap between steps (pipeline.runtime)
    model = load_model(Path("data/models") / f"{variant}.pt", branches)
    model = model.to(device).to(memory_format=torch.channels_last)
    table = model_logits(model, {split: load_split(split) for split in ("val", "test")}, device, report=variant)
    atomic_write_parquet(Path("data/logits") / f"{variant}.parquet", table)

if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m pipeline.logits <variant>")
    run_stage("logits", main, sys.argv[1])
