"""Stage profile: per-layer edge and cloud latency of one variant and the latency model's inputs.

    python -m pipeline profile <variant>

Reads params ``latency``, ``model`` and ``variants.<variant>.branches`` only. The edge device is the host
CPU with ``latency.edge_threads`` threads, every time multiplied by ``latency.edge_slowdown``,
unless ``latency.edge_profile`` names a CSV (``layer,ms``) measured on a real device; the cloud is
CUDA when present (``cloud_device: auto``) else the host CPU with all its threads, every time
divided by ``latency.cloud_speedup``. Weights do not matter for timing: the model is randomly
initialised (seeded; ``model.init_weights`` is not read). The network is params ``model``'s
architecture: its trunk layers, output sizes and upload size follow it.

Every measurement is checked (eeoffload.latency_checks: quantised timings, too much spread between the
timed calls, the cloud slower than the edge on the same CPU); one that fails a check is measured
again, up to ``latency.remeasure`` more times, and the least disturbed one is kept (the policy:
eeoffload.latency_profile). What still
fails goes to the JSON's ``warnings`` (one plain-English line each; empty when clean) and to
stdout. Writes ``data/profile/<variant>.json`` and ``data/profile/<variant>_layers.parquet``
(see docs/latency.md, paper section IV-E).
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from pipeline.core import registry
from pipeline.core.atomic import atomic_write_json, atomic_write_parquet
from pipeline.core.io import StageError, read_params
from pipeline.core.params import latency_params, model_spec, variant_branches

SEED = 0
LAYER_COLUMNS = ["layer", "part", "location", "ms", "output_elements", "p10_ms", "p90_ms", "spread"]


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
    spec = model_spec(params)
    if cfg["edge_profile"] and not Path(cfg["edge_profile"]).is_file():
        raise StageError(f"latency.edge_profile: {cfg['edge_profile']}: file not found")

    # Imported only once the params are valid, so that a bad param fails without loading torch.
    import pandas as pd
    import torch

    from eeoffload.latency_profile import MeasureSetup, checks_record, measure_once, measure_until_clean
    from eeoffload.latency import ProfileError, edge_profile_from_csv, latency_model
    from eeoffload.model import BranchPlacementError, build_model

    try:
        torch.manual_seed(SEED)
        model = build_model(spec, branches, load_init_weights=False)
    except BranchPlacementError as e:
        raise StageError(f"params.yaml: variants.{variant}.branches: {e}") from None
    except ValueError as e:
        raise StageError(f"params.yaml: model: {e}") from None

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

    def log(line: str) -> None:
        print(f"profile {variant}: {line}", flush=True)

    if cloud_cuda:
        cloud_device, cloud_threads = "cuda", None
        cloud_name = f"cuda: {torch.cuda.get_device_name(0)}"
    else:
        cloud_device, cloud_threads = "cpu", _host_threads()
        cloud_name = f"cpu: {_cpu_name()}"
    measure_edge = csv_table is None
    # Check (c) needs the edge and the cloud on the same CPU, the cloud with at least the edge's threads.
    compare = measure_edge and not cloud_cuda and cloud_threads >= cfg["edge_threads"]
    if measure_edge:
        log(f"edge = host cpu, {cfg['edge_threads']} thread(s)")
    log(f"cloud = {cloud_name}, threads {cloud_threads or 'default'}")

    setup = MeasureSetup(cfg["edge_threads"], cfg["warmup"], cfg["repeats"], measure_edge, cloud_device,
                         cloud_threads, compare)
    result = measure_until_clean(lambda: measure_once(model, setup, log), cfg["remeasure"], log)
    best, warnings = result.best, result.warnings

    if csv_table is not None:
        edge_layers = csv_table
        edge_info = {"source": "csv", "csv": str(cfg["edge_profile"])}
    else:
        edge_layers = best.edge.table(scale=cfg["edge_slowdown"])
        edge_info = {
            "source": "measured",
            "device": f"cpu: {_cpu_name()}",
            "threads": cfg["edge_threads"],
            "slowdown": cfg["edge_slowdown"],
            "warmup": cfg["warmup"],
            "repeats": cfg["repeats"],
        }
    cloud_layers = best.cloud.table(scale=1.0 / cfg["cloud_speedup"])
    cloud_info = {
        "source": "measured",
        "device": cloud_name,
        "threads": cloud_threads,
        "speedup": cfg["cloud_speedup"],
        "warmup": cfg["warmup"],
        "repeats": cfg["repeats"],
    }

    try:
        summary = latency_model(edge_layers, cloud_layers, model, cfg["bytes_per_element"])
    except ProfileError as e:  # cannot happen with the tables built above; kept as one line
        raise StageError(str(e)) from None
    summary["partition_layer"] = model.partition_layer
    summary["edge"] = edge_info
    summary["cloud"] = {**cloud_info, "bytes_per_element": cfg["bytes_per_element"]}
    summary["spread"] = best.spread
    summary["checks"] = checks_record(result, cfg["remeasure"], compare)
    summary["warnings"] = warnings

    layers = pd.concat(
        [edge_layers.assign(location="edge"), cloud_layers.assign(location="cloud")],
        ignore_index=True,
    )[LAYER_COLUMNS]
    layers = layers.astype(
        {"layer": str, "part": str, "location": str, "ms": "float64", "output_elements": "int64",
         "p10_ms": "float64", "p90_ms": "float64", "spread": "float64"}
    )

    atomic_write_parquet(registry.profile_layers_path(variant), layers)
    atomic_write_json(registry.profile_path(variant), summary)
    spreads = ", ".join(f"{k} {v:.2f}" for k, v in best.spread.items() if v is not None)
    log(
        f"device_ms_to_exit {summary['device_ms_to_exit']}, "
        f"offload_edge_ms {summary['offload_edge_ms']:.4f}, upload_bytes {summary['upload_bytes']}, "
        f"cloud_ms {summary['cloud_ms']:.4f}; spread {spreads}; "
        f"{len(warnings)} warning(s)" + (f" (measured {len(result.attempts)} times)" if len(result.attempts) > 1 else "")
    )
