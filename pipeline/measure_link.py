"""Stage measure_link: a real edge process and cloud process over a shaped link, against the model.

    python -m pipeline measure_link <variant>

Reads params ``link``, ``network.uplink_mbps``, ``network.rtt_ms``, ``evaluate`` (batch size,
order and seed, the deadline grid of Fig. 5) and ``variants.<variant>.branches``; the trained
model, the temperatures, the prepared test split and the latency profile (:func:`paths`). Runs
the first ``link.n_samples`` test samples (in evaluate's batch order) through the real pair for
both calibrations (:mod:`pipeline.link.runner`), plus one pass while the uplink follows
``link.uplink_trace``; compares the measured latencies with the model of paper section IV-E.
Writes (docs/link.md): samples.parquet (one row per sample and pass), deadline.parquet (Fig. 5,
modelled and measured), encodings.parquet (bytes and final-exit accuracy per encoding) and
summary.json (headline numbers, the method label, the claim's verdict).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core import params as P
from pipeline.core import registry
from pipeline.core.atomic import atomic_write_json, atomic_write_parquet
from pipeline.core.io import StageError, read_params

CALIBRATIONS = ("conventional", "calibrated")


@dataclass(frozen=True)
class LinkPaths:
    model: Path
    calibration: Path
    profile: Path
    out: Path  # folder of this stage's outputs


def paths(variant: str, seed: int) -> LinkPaths:
    """Every path the stage reads or writes: the run of training seed ``seed`` (the first of
    ``train.seeds``) of ``variant`` (:mod:`pipeline.core.registry`)."""
    return LinkPaths(model=registry.model_path(variant, seed),
                     calibration=registry.calibration_path(variant, seed),
                     profile=registry.profile_path(variant),
                     out=registry.link_dir(variant))


def read_trace(path: str) -> Any:
    from eeoffload.link_model import TraceError, parse_trace

    if not path:
        return None
    try:
        frame = pd.read_csv(path, comment="#", skipinitialspace=True)
    except FileNotFoundError:
        raise StageError(f"link.uplink_trace: {path}: file not found") from None
    except (OSError, ValueError) as e:
        raise StageError(f"link.uplink_trace: {path}: not a readable CSV: {e}") from None
    try:
        return parse_trace(frame)
    except TraceError as e:
        raise StageError(f"link.uplink_trace: {path}: {e}") from None


@dataclass(frozen=True)
class Inputs:
    link: P.LinkParams
    network: P.NetworkParams
    evaluate: P.EvaluateParams
    branches: list[str]
    trace: Any


def read_inputs(variant: str) -> Inputs:
    """Params first (fail in a second, before torch loads), then the trace file."""
    params = read_params()
    inputs = Inputs(P.link_params(params), P.network_params(params), P.evaluate_params(params),
                    P.variant_branches(params, variant), None)
    return Inputs(**{**inputs.__dict__, "trace": read_trace(inputs.link.uplink_trace)})


def full_test_exits(model: Any, test: dict[str, np.ndarray]) -> list[Any]:
    from eeoffload.training import images_to_tensor, predict_exits

    return predict_exits(model, images_to_tensor(test["images"]), 500)


def encoding_table(model: Any, images: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """Per encoding and compressor: mean payload bytes and the final-exit accuracy when the cloud
    runs on the decoded tensor (each sample's tensor encoded alone, as on the wire)."""
    import torch

    from eeoffload import wire
    from eeoffload.partition import CloudPart, EdgePart
    from eeoffload.training import images_to_tensor

    edge, cloud = EdgePart(model), CloudPart(model)
    rows, reference = [], None
    for encoding in wire.ENCODINGS:
        predicted, sizes = [], {c: [] for c in wire.COMPRESSORS}
        for start in range(0, len(images), 250):
            x = images_to_tensor(images[start:start + 250])
            with torch.no_grad():
                for trunk, _ in edge.segments:
                    x = trunk(x)
            decoded = []
            for tensor in x.numpy():
                for compressor in wire.COMPRESSORS:
                    sizes[compressor].append(len(wire.encode(tensor[None], encoding, compressor)))
                decoded.append(wire.roundtrip(tensor[None], encoding)[0])
            predicted.append(cloud.run(torch.from_numpy(np.concatenate(decoded))).argmax(dim=1).numpy())
        classes = np.concatenate(predicted)
        reference = classes if reference is None else reference
        for compressor in wire.COMPRESSORS:
            rows.append({"encoding": encoding, "compressor": compressor,
                         "payload_bytes": float(np.mean(sizes[compressor])),
                         "final_exit_accuracy": float((classes == labels).mean()),
                         "agreement_with_fp32": float((classes == reference).mean())})
    table = pd.DataFrame(rows)
    fp32 = table.loc[table["encoding"] == "fp32", "final_exit_accuracy"].iloc[0]
    table["accuracy_change_points"] = (table["final_exit_accuracy"] - fp32) * 100
    plain = table.loc[(table["encoding"] == "fp32") & (table["compressor"] == "none"), "payload_bytes"].iloc[0]
    table["bytes_vs_fp32"] = table["payload_bytes"] / plain
    return table


def main(variant: str) -> None:
    inputs = read_inputs(variant)
    where = paths(variant, P.train_seeds(read_params()).first)
    from pipeline.core.artifacts import read_temperatures
    from pipeline.core.run_inputs import read_profile
    from pipeline.link import analysis
    from pipeline.link.runner import Job, LinkConfig, LinkError, run_pair
    from pipeline.core.splits import load_model
    from pipeline.core.splits import load_split

    model = load_model(where.model, inputs.branches)
    n_exits = len(inputs.branches) + 1
    temperatures = read_temperatures(where.calibration, n_exits)
    profile = asdict(read_profile(where.profile, n_exits))  # the profile stage's latency-model inputs
    test = load_split("test")
    ev = inputs.evaluate
    order = analysis.order(len(test["labels"]), ev)
    sample = {k: test[k][order[:inputs.link.n_samples]] for k in ("images", "labels", "sample_id")}
    job = Job(model_path=where.model.resolve(), branches=inputs.branches, images=sample,
              temperatures={"conventional": [1.0] * n_exits, "calibrated": temperatures}, p_tar=inputs.link.p_tar,
              encoding=inputs.link.encoding, compressor=inputs.link.compressor,
              edge_threads=inputs.link.edge_threads, cloud_threads=inputs.link.cloud_threads, trace=inputs.trace)
    config = LinkConfig(method=inputs.link.method, uplink_mbps=inputs.network.uplink_mbps, rtt_ms=inputs.network.rtt_ms,
                        loss_pct=inputs.link.loss_pct, max_seconds=inputs.link.max_seconds)
    print(f"measure_link {variant}: {len(sample['labels'])} samples x {len(CALIBRATIONS)} calibrations"
          f"{' + trace pass' if inputs.trace is not None else ''} at {config.uplink_mbps:g} Mbps", flush=True)
    try:
        result = run_pair(job, config)
    except LinkError as e:
        raise StageError(f"measure_link {variant}: {e}") from None
    exits = full_test_exits(model, test)
    outputs = analysis.analyse(result, profile, exits, test["labels"], order, inputs, temperatures)
    outputs["encodings"] = encoding_table(model, sample["images"], sample["labels"])
    atomic_write_parquet(where.out / "samples.parquet", outputs["samples"])
    atomic_write_parquet(where.out / "deadline.parquet", outputs["deadline"])
    atomic_write_parquet(where.out / "encodings.parquet", outputs["encodings"])
    atomic_write_json(where.out / "summary.json", outputs["summary"])
    print(analysis.describe(outputs["summary"]), flush=True)
