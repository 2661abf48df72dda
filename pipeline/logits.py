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

from eeoffload.model import BAlexNet
from pipeline.io import StageError, atomic_write_parquet, load_weights, read_params, run_stage
from pipeline.params import runtime_params, torch_device, variant_branches
from pipeline.runtime import keep_freed_memory
from pipeline.splits import load_split, model_logits


def load_model(path: Path, branches: list[str]) -> BAlexNet:
    """The trained weights at ``path`` (weights_only=True: no arbitrary unpickling), checked to be a
    B-AlexNet state dict for ``branches``; StageError naming the file otherwise."""
    saved = load_weights(path, "train")
    if not isinstance(saved, dict) or not isinstance(saved.get("state_dict"), dict) \
            or not all(isinstance(v, torch.Tensor) for v in saved["state_dict"].values()):
        raise StageError(f"{path}: expected {{'state_dict': {{name: tensor}}, 'branches': [...]}} "
                         f"as written by the train stage")
    if saved.get("branches") != branches:
        raise StageError(f"{path}: trained with branches {saved.get('branches')}, params say {branches}")
    model = BAlexNet(branches)
    try:
        model.load_state_dict(saved["state_dict"])
    except (KeyError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0]
        raise StageError(f"{path}: not a B-AlexNet state dict for {branches}: {first}") from None
    return model


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
