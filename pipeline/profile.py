"""Stage profile: per-layer edge and cloud latency of one variant and the latency model's inputs.

    python -m pipeline.profile <variant>

Reads params ``latency`` and ``variants.<variant>.branches`` only. The edge device is the host
CPU with ``latency.edge_threads`` threads, every time multiplied by ``latency.edge_slowdown``,
unless ``latency.edge_profile`` names a CSV (``layer,ms``) measured on a real device; the cloud is
CUDA when present (``cloud_device: auto``) else the host CPU with all its threads, every time
divided by ``latency.cloud_speedup``. Weights do not matter for timing: the model is randomly
initialised (seeded). Writes ``data/profile/<variant>.json`` and
``data/profile/<variant>_layers.parquet`` (see docs/latency.md, paper section IV-E).
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from pathlib import Path

from pipeline.io import StageError, atomic_write_json, atomic_write_parquet, read_params, run_stage
from pipeline.params import latency_params, variant_branches

OUT_DIR = Path("data/profile")
SEED = 0


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "cpu"


def _host_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def main(variant: str) -> None:
    params = read_params()
    cfg = asdict(latency_params(params))
    branches = variant_branches(params, variant)
    if cfg["edge_profile"] and not Path(cfg["edge_profile"]).is_file():
        raise StageError(f"latency.edge_profile: {cfg['edge_profile']}: file not found")

    # Imported only once the params are valid, so that a bad param fails without loading torch.
    import pandas as pd
    import torch

    from eeoffload.latency import (
        ProfileError,
        cloud_layer_names,
        edge_layer_names,
        edge_profile_from_csv,
        latency_model,
        time_layers,
    )
    from eeoffload.model import BAlexNet, BranchPlacementError

    try:
        torch.manual_seed(SEED)
        model = BAlexNet(branches)
    except BranchPlacementError as e:
        raise StageError(f"params.yaml: variants.{variant}.branches: {e}") from None

    if cfg["cloud_device"] == "cuda" and not torch.cuda.is_available():
        raise StageError(
            "params.yaml: latency.cloud_device = 'cuda' but no CUDA device is available;"
            " allowed here: auto | cpu"
        )
    cloud_cuda = cfg["cloud_device"] == "cuda" or (
        cfg["cloud_device"] == "auto" and torch.cuda.is_available()
    )

    csv_table = None
    if cfg["edge_profile"]:
        path = Path(cfg["edge_profile"])
        try:
            table = pd.read_csv(path, skipinitialspace=True)
        except FileNotFoundError:
            raise StageError(f"latency.edge_profile: {path}: file not found") from None
        except (OSError, ValueError) as e:  # pandas' parser errors are ValueErrors
            raise StageError(f"latency.edge_profile: {path}: not a readable CSV: {e}") from None
        try:
            csv_table = edge_profile_from_csv(table, model)
        except ProfileError as e:
            raise StageError(f"latency.edge_profile: {path}: {e}") from None

    old_threads = torch.get_num_threads()
    try:
        if csv_table is not None:
            edge_layers = csv_table
            edge_info = {"source": "csv", "csv": str(cfg["edge_profile"])}
        else:
            print(f"profile {variant}: edge = host cpu, {cfg['edge_threads']} thread(s)")
            edge_layers = time_layers(
                model, "cpu", cfg["edge_threads"], cfg["warmup"], cfg["repeats"], progress=True,
                only=set(edge_layer_names(model)),
            )
            edge_layers = edge_layers.assign(ms=edge_layers["ms"] * cfg["edge_slowdown"])
            edge_info = {
                "source": "measured",
                "device": f"cpu: {_cpu_name()}",
                "threads": cfg["edge_threads"],
                "slowdown": cfg["edge_slowdown"],
                "warmup": cfg["warmup"],
                "repeats": cfg["repeats"],
            }

        if cloud_cuda:
            cloud_device, cloud_threads = "cuda", None
            cloud_name = f"cuda: {torch.cuda.get_device_name(0)}"
        else:
            cloud_device, cloud_threads = "cpu", _host_threads()
            cloud_name = f"cpu: {_cpu_name()}"
        print(f"profile {variant}: cloud = {cloud_name}, threads {cloud_threads or 'default'}")
        cloud_layers = time_layers(
            model, cloud_device, cloud_threads, cfg["warmup"], cfg["repeats"], progress=True,
            only=set(cloud_layer_names(model)),
        )
        cloud_layers = cloud_layers.assign(ms=cloud_layers["ms"] / cfg["cloud_speedup"])
        cloud_info = {
            "source": "measured",
            "device": cloud_name,
            "threads": cloud_threads,
            "speedup": cfg["cloud_speedup"],
            "warmup": cfg["warmup"],
            "repeats": cfg["repeats"],
        }
    finally:
        torch.set_num_threads(old_threads)

    try:
        summary = latency_model(edge_layers, cloud_layers, model, cfg["bytes_per_element"])
    except ProfileError as e:  # cannot happen with the tables built above; kept as one line
        raise StageError(str(e)) from None
    summary["partition_layer"] = model.partition_layer
    summary["edge"] = edge_info
    summary["cloud"] = {**cloud_info, "bytes_per_element": cfg["bytes_per_element"]}

    layers = pd.concat(
        [edge_layers.assign(location="edge"), cloud_layers.assign(location="cloud")],
        ignore_index=True,
    )[["layer", "part", "location", "ms", "output_elements"]]
    layers = layers.astype(
        {"layer": str, "part": str, "location": str, "ms": "float64", "output_elements": "int64"}
    )

    atomic_write_parquet(OUT_DIR / f"{variant}_layers.parquet", layers)
    atomic_write_json(OUT_DIR / f"{variant}.json", summary)
    print(
        f"profile {variant}: device_ms_to_exit {summary['device_ms_to_exit']}, "
        f"offload_edge_ms {summary['offload_edge_ms']:.4f}, upload_bytes {summary['upload_bytes']}, "
        f"cloud_ms {summary['cloud_ms']:.4f}"
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m pipeline.profile <variant>", file=sys.stderr)
        raise SystemExit(2)
    run_stage("profile", main, sys.argv[1])
