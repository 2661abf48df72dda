"""Per-layer latency profile of B-AlexNet and the latency model of the missed-deadline metric.

Paper section IV-E ("Missed Deadline Probability"): a sample classified at the device costs only
the device's processing delay; an offloaded sample costs the device's processing delay, the
upload of the partition layer's output (its size divided by the uplink rate) and the cloud's
processing delay. The paper takes the edge delays per layer from an AlexNet measured on an Intel
i7 CPU [16] and the cloud delays from a Colab Tesla K80; here both are measured per layer on the
host (:func:`time_layers`), or the edge profile comes from a CSV measured on a real device
(:func:`edge_profile_from_csv`). :func:`latency_model` sums them into the four numbers the
evaluate stage needs.

Per-layer tables (DataFrames) have one row per trunk layer and one per side branch:

- ``layer``: the trunk layer's name (``conv1``, ``relu1``, ...) or ``branch<k>`` for the k-th side
  branch (k = 1, 2, ... in trunk order, the exit number), timed as a whole;
- ``part``: ``trunk`` or ``branch<k>``;
- ``ms``: forward time at batch size 1 in milliseconds;
- ``output_elements``: number of elements of the layer's output for one sample.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from collections.abc import Collection

import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from eeoffload.model import INPUT_SHAPE, BAlexNet

COLUMNS = ["layer", "part", "ms", "output_elements"]
_BRANCH_NAME = re.compile(r"branch([1-9][0-9]*)")


class ProfileError(ValueError):
    """A per-layer table (e.g. a user's edge CSV) that cannot feed the latency model."""


def branch_name(k: int) -> str:
    """Row name of the k-th side branch (1-based, trunk order), as in tables and edge CSVs."""
    return f"branch{k}"


def trunk_names(model: BAlexNet) -> list[str]:
    return [name for name, _ in model.trunk.named_children()]


def edge_layer_names(model: BAlexNet) -> list[str]:
    """What the device runs (section IV-E): the trunk up to and including the partition layer,
    then every side branch."""
    names = trunk_names(model)
    cut = names.index(model.partition_layer) + 1
    return names[:cut] + [branch_name(k) for k in range(1, len(model.branch_points) + 1)]


def cloud_layer_names(model: BAlexNet) -> list[str]:
    """What the cloud runs (section IV-E): the trunk layers after the partition layer."""
    names = trunk_names(model)
    return names[names.index(model.partition_layer) + 1 :]


def _inputs(model: BAlexNet, device: torch.device) -> list[tuple[str, str, nn.Module, torch.Tensor]]:
    """(row name, part, module, the input tensor it sees) for every trunk layer and branch."""
    x = torch.zeros(1, *INPUT_SHAPE, device=device)
    rows = []
    branch_k = {name: k for k, name in enumerate(model.branch_points, start=1)}
    with torch.no_grad():
        for name, layer in model.trunk.named_children():
            rows.append((name, "trunk", layer, x))
            x = layer(x)
            if name in branch_k:
                k = branch_k[name]
                rows.append((branch_name(k), branch_name(k), model.branches[name], x))
    return rows


def output_elements(model: BAlexNet) -> dict[str, int]:
    """Output elements per sample of every trunk layer and branch (``branch<k>``)."""
    device = next(model.parameters()).device
    with torch.no_grad():
        return {name: int(module(x).numel()) for name, _, module, x in _inputs(model, device)}


def _time_once(module: nn.Module, x: torch.Tensor, cuda: bool) -> float:
    if cuda:
        torch.cuda.synchronize(x.device)
    start = time.perf_counter()
    module(x)
    if cuda:
        torch.cuda.synchronize(x.device)
    return (time.perf_counter() - start) * 1e3


def time_layers(
    model: BAlexNet,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    warmup: int = 10,
    repeats: int = 50,
    progress: bool = True,
    only: Collection[str] | None = None,
) -> pd.DataFrame:
    """Measure each trunk layer's and each side branch's forward time at batch size 1.

    Section IV-E's computing delays, measured on this host: every module is fed the real tensor
    shape it sees in the network (a zero image propagated through the trunk), run ``warmup``
    times untimed, then ``repeats`` times timed one by one; the median is kept. Eval mode and
    ``torch.no_grad``; on CUDA the device is synchronised before and after each timed call.
    ``threads`` sets torch's intra-op thread count for the measurement (restored afterwards;
    None leaves it). The model is moved to ``device`` and left there (its train/eval mode is
    restored). ``only`` restricts the rows to these names (e.g. the cloud's layers).

    Progress (if ``progress``): a tqdm bar on a terminal; otherwise one printed line per part
    (trunk, branch<k>).

    Returns:
        DataFrame with columns ``layer``, ``part``, ``ms`` (float64), ``output_elements`` (int64),
        rows in execution order (each branch right after the trunk layer it follows).
    """
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    device = torch.device(device)
    cuda = device.type == "cuda"
    old_threads = torch.get_num_threads()
    was_training = model.training
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        model.to(device).eval()
        rows = [r for r in _inputs(model, device) if only is None or r[0] in only]
        records = []
        bar = tqdm(
            rows, desc=f"timing on {device}", unit="layer", leave=False,
            disable=None if progress else True,
        )
        per_part: dict[str, list[float]] = {}
        with torch.no_grad():
            for name, part, module, x in bar:
                for _ in range(warmup):
                    module(x)
                ms = statistics.median(_time_once(module, x, cuda) for _ in range(repeats))
                out = module(x)
                records.append((name, part, ms, int(out.numel())))
                per_part.setdefault(part, []).append(ms)
        bar.close()
        if progress and bar.disable:
            for part, times in per_part.items():
                print(f"timed {part} on {device}: {len(times)} layer(s), {sum(times):.4f} ms")
    finally:
        torch.set_num_threads(old_threads)
        model.train(was_training)
    df = pd.DataFrame.from_records(records, columns=COLUMNS)
    return df.astype({"layer": str, "part": str, "ms": "float64", "output_elements": "int64"})


def edge_profile_from_csv(table: pd.DataFrame, model: BAlexNet) -> pd.DataFrame:
    """Turn a user's per-layer edge measurements (``layer,ms`` rows) into a per-layer table.

    Section IV-E takes the edge device's per-layer delays from measurements on a real CPU [16];
    this lets such measurements replace the host-measured edge profile. Format: a header line
    ``layer,ms``, then one row per layer in milliseconds at batch size 1. Trunk layers use the
    trunk names (``conv1``, ``relu1``, ``pool1``, ...); side branch k (1-based, in trunk order,
    i.e. exit k of this variant) is one row named ``branch<k>`` for the whole branch. Every layer
    the device runs (:func:`edge_layer_names`) must be present; extra rows for other trunk layers
    or branches are allowed and ignored (so one CSV may serve several variants whose branches
    agree).

    Raises:
        ProfileError: missing column, unknown or duplicate layer name, non-numeric, negative or
            missing ``ms``, or a layer the device runs that has no row.

    Returns:
        The device's rows in execution order: ``layer``, ``part``, ``ms``, ``output_elements``
        (from the model's shapes).
    """
    missing_cols = [c for c in ("layer", "ms") if c not in table.columns]
    if missing_cols:
        raise ProfileError(
            f"missing column(s) {missing_cols}; expected a header 'layer,ms', got {list(table.columns)}"
        )
    layers = table["layer"].astype(str).str.strip()
    known = set(trunk_names(model))
    unknown = [n for n in layers if n not in known and not _BRANCH_NAME.fullmatch(n)]
    if unknown:
        raise ProfileError(
            f"unknown layer name(s) {unknown}; expected trunk layers ({', '.join(trunk_names(model))}) "
            "or branch<k>"
        )
    dup = sorted(set(layers[layers.duplicated()]))
    if dup:
        raise ProfileError(f"duplicate layer row(s) {dup}")
    ms = pd.to_numeric(table["ms"], errors="coerce")
    bad = [n for n, v in zip(layers, ms) if pd.isna(v) or not math.isfinite(v) or v < 0]
    if bad:
        raise ProfileError(f"ms must be a finite number >= 0; bad row(s) for {bad}")
    by_name = dict(zip(layers, ms.astype("float64")))
    needed = edge_layer_names(model)
    absent = [n for n in needed if n not in by_name]
    if absent:
        raise ProfileError(f"no row for layer(s) the device runs: {absent}")
    elements = output_elements(model)
    records = [
        (n, n if _BRANCH_NAME.fullmatch(n) else "trunk", by_name[n], elements[n]) for n in needed
    ]
    df = pd.DataFrame.from_records(records, columns=COLUMNS)
    return df.astype({"layer": str, "part": str, "ms": "float64", "output_elements": "int64"})


def _lookup(table: pd.DataFrame, names: list[str], which: str) -> dict[str, float]:
    by_name = dict(zip(table["layer"].astype(str), table["ms"].astype("float64")))
    absent = [n for n in names if n not in by_name]
    if absent:
        raise ProfileError(f"{which} profile has no row for layer(s) {absent}")
    return {n: float(by_name[n]) for n in names}


def latency_model(
    edge_layers: pd.DataFrame,
    cloud_layers: pd.DataFrame,
    model: BAlexNet,
    bytes_per_element: int = 4,
) -> dict:
    """The latency inputs of the missed-deadline metric (paper section IV-E).

    - ``device_ms_to_exit[k]`` (k = 1..n-1, string keys): edge time of every trunk layer up to and
      including branch point k plus side branches 1..k. A sample leaving at branch k also went
      through branches 1..k-1, which failed their confidence test.
    - ``offload_edge_ms``: edge time of everything the device runs when no branch is confident
      enough: the trunk up to and including the partition layer (the last branch point) plus all
      side branches.
    - ``upload_bytes``: the partition layer's output for one sample, ``output_elements *
      bytes_per_element`` (the paper's "size of data structures in Pytorch"; float32 = 4).
    - ``cloud_ms``: cloud time of the trunk layers after the partition layer.

    ``edge_layers`` / ``cloud_layers``: per-layer tables (``layer``, ``ms``; ``output_elements`` in
    ``edge_layers`` is used for the partition layer when present, else the model's shapes).
    Extra rows are ignored.

    Raises:
        ProfileError: a needed layer has no row.
    """
    names = trunk_names(model)
    edge = _lookup(edge_layers, edge_layer_names(model), "edge")
    cloud = _lookup(cloud_layers, cloud_layer_names(model), "cloud")
    device_ms_to_exit = {}
    for k, point in enumerate(model.branch_points, start=1):
        trunk_ms = sum(edge[n] for n in names[: names.index(point) + 1])
        branches_ms = sum(edge[branch_name(j)] for j in range(1, k + 1))
        device_ms_to_exit[str(k)] = trunk_ms + branches_ms
    offload_edge_ms = sum(edge.values())
    part = model.partition_layer
    elements = None
    if "output_elements" in edge_layers.columns:
        match = edge_layers.loc[edge_layers["layer"].astype(str) == part, "output_elements"]
        if len(match) and not pd.isna(match.iloc[0]):
            elements = int(match.iloc[0])
    if elements is None:
        elements = output_elements(model)[part]
    return {
        "device_ms_to_exit": device_ms_to_exit,
        "offload_edge_ms": offload_edge_ms,
        "upload_bytes": int(elements * bytes_per_element),
        "cloud_ms": sum(cloud.values()),
    }
