"""The prepared splits, the trained model and the logits table: what the torch-side stages share.

``load_split(name)`` reads data/prepared/<name>.npz (written by the prepare stage) and checks it;
``logits_table`` builds the logits schema (README, "The logits file"): one row per (sample, exit),
used by the logits stage for data/logits/<variant>.parquet and by the train stage for its
snapshots data/snapshots/<variant>/epoch_NNN.parquet; ``load_model`` reads data/models/<variant>.pt
(the logits and measure_link stages, the edge and cloud processes).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from eeoffload.layout import ModelSpec
from eeoffload.model import NUM_CLASSES, BAlexNet, build_model
from eeoffload.training import images_to_tensor, predict_exits
from pipeline.core import registry
from pipeline.core.io import StageError, load_weights

PREPARED = registry.PREPARED  # train reads its meta.json (registry.PREPARED_META)
LOGIT_COLUMNS = [f"logit_{c}" for c in range(NUM_CLASSES)]
BATCH = 1000  # images per forward pass when computing logits


def logits_table(split: str, sample_id: np.ndarray, labels: np.ndarray, exits: list[torch.Tensor]) -> pa.Table:
    """Rows (sample, exit) of one split, ordered by exit then sample (schema: README, data/logits).
    Built with pyarrow, not pandas: the stage starts 0.3 s faster."""
    n, k = len(sample_id), len(exits)
    logits = torch.cat(exits).numpy().astype(np.float32)  # (k * n, 10), exit-major
    columns = {
        "sample_id": pa.array(np.tile(sample_id.astype(np.int64), k)),
        "split": pa.array([split] * (n * k), type=pa.large_string()),  # as pandas writes str
        "label": pa.array(np.tile(labels.astype(np.int64), k)),
        "exit": pa.array(np.repeat(np.arange(1, k + 1, dtype=np.int64), n)),
    }
    columns.update({name: pa.array(logits[:, c]) for c, name in enumerate(LOGIT_COLUMNS)})
    return pa.table(columns)



def load_split(name: str) -> dict[str, np.ndarray]:
    """A prepared split (images, labels, sample_id), checked for keys, shapes, dtypes and label range."""
    path = registry.prepared_split(name)
    if not path.is_file():
        raise StageError(f"{path}: not found; run the prepare stage first")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in ("images", "labels", "sample_id") if k in f}
    except Exception as e:  # noqa: BLE001 - truncated zip, object arrays (no unpickling), ...
        raise StageError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    missing = [k for k in ("images", "labels", "sample_id") if k not in arrays]
    if missing:
        raise StageError(f"{path}: missing array(s) {', '.join(missing)}")
    images, labels, ids = arrays["images"], arrays["labels"], arrays["sample_id"]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3) \
            or labels.dtype != np.int64 or ids.dtype != np.int64 \
            or labels.shape != (len(images),) or ids.shape != (len(images),):
        raise StageError(f"{path}: expected images uint8 (N,32,32,3), labels and sample_id int64 (N,); got "
                         f"images {images.dtype} {images.shape}, labels {labels.dtype} {labels.shape}, "
                         f"sample_id {ids.dtype} {ids.shape}")
    if len(labels) == 0 or labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise StageError(f"{path}: labels must be 0..{NUM_CLASSES - 1} and the split non-empty")
    return arrays


def model_logits(model: torch.nn.Module, splits: dict[str, dict[str, np.ndarray]], device: str,
                 report: str | None = None) -> pa.Table:
    """The logits table of ``model`` (eval mode) on each split of ``splits`` (name -> load_split()).
    With ``report``, prints one line per split: '<report> <split>: N samples, accuracy exit1 ...'."""
    tables = []
    for split, arrays in splits.items():
        exits = predict_exits(model, images_to_tensor(arrays["images"], device), BATCH)
        tables.append(logits_table(split, arrays["sample_id"], arrays["labels"], exits))
        if report is not None:
            accs = " ".join(f"exit{k + 1} {float((z.argmax(1).numpy() == arrays['labels']).mean()):.4f}"
                            for k, z in enumerate(exits))
            print(f"{report} {split}: {len(arrays['labels'])} samples, accuracy {accs}", flush=True)
    return pa.concat_tables(tables)


def load_model(path: Path, branches: list[str], spec: ModelSpec | None = None) -> BAlexNet:
    """The trained weights at ``path`` (weights_only=True: no arbitrary unpickling), checked to be a
    state dict for ``branches`` of the network the file names (its ``model``: a ModelSpec dict;
    absent in files from before architectures were selectable: today's B-AlexNet). With ``spec``
    (params ``model``), the file's network must be that one (``init_weights`` aside: the trained
    weights replace them and the file is not read). StageError naming the file otherwise."""
    saved = load_weights(path, "train")
    if not isinstance(saved, dict) or not isinstance(saved.get("state_dict"), dict) \
            or not all(isinstance(v, torch.Tensor) for v in saved["state_dict"].values()):
        raise StageError(f"{path}: expected {{'state_dict': {{name: tensor}}, 'branches': [...], 'model': {{...}}}} "
                         f"as written by the train stage")
    if saved.get("branches") != branches:
        raise StageError(f"{path}: trained with branches {saved.get('branches')}, params say {branches}")
    try:
        saved_spec = ModelSpec.from_dict(saved.get("model") or {})
    except (TypeError, ValueError) as e:
        raise StageError(f"{path}: unreadable 'model' entry {saved.get('model')!r}: {e}") from None
    if spec is not None and replace(spec, init_weights="") != replace(saved_spec, init_weights=""):
        raise StageError(f"{path}: trained as model {saved_spec.as_dict()}, params say {spec.as_dict()}")
    try:
        model = build_model(saved_spec, branches, load_init_weights=False)
    except ValueError as e:
        raise StageError(f"{path}: cannot build its model {saved_spec.as_dict()}: {e}") from None
    try:
        model.load_state_dict(saved["state_dict"])
    except (KeyError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0]
        raise StageError(f"{path}: not a {saved_spec.arch} state dict for {branches}: {first}") from None
    return model
