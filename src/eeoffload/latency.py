"""The latency model of the missed-deadline metric (paper section IV-E), and its per-layer tables.

Paper section IV-E ("Missed Deadline Probability"): a sample classified at the device costs only
the device's processing delay; an offloaded sample costs the device's processing delay, the
upload of the partition layer's output (its size divided by the uplink rate) and the cloud's
processing delay. :func:`exit_latency_ms` is that formula, the one used by the whole pipeline
(:meth:`LatencyProfile.exit_ms`); the link model, stage measure_link and the latency figure call
its parts (:func:`upload_ms`, :func:`offload_path_ms`, :func:`exit_breakdown_ms`), so the upload
formula is written once (``tests/test_decision_rule_once.py``). The paper takes the edge delays
per layer from an AlexNet measured on an Intel i7 CPU [16] and the cloud delays from a Colab Tesla
K80; here both are measured per layer on the host (:mod:`eeoffload.latency_measure`, which does all
the timing and imports this module, not the other way; the partition tensor's size comes from
:mod:`eeoffload.model_shapes`), or the edge profile comes from a CSV measured on a real device
(:func:`edge_profile_from_csv`). :func:`latency_model` sums the per-layer times into the four
numbers the evaluate stage needs.

The checks that tell a disturbed measurement from a clean one (quantised timings, too much spread,
a cloud slower than the edge) are in :mod:`eeoffload.latency_checks` (docs/latency.md,
"Trustworthy profiles").

Per-layer tables (DataFrames, :data:`COLUMNS`) have one row per trunk layer and one per side branch:

- ``layer``: the trunk layer's name (``conv1``, ``relu1``, ...; the model's own trunk, e.g.
  alexnet224 starts with ``resize``) or ``branch<k>`` for the k-th side
  branch (k = 1, 2, ... in trunk order, the exit number), timed as a whole;
- ``part``: ``trunk`` or ``branch<k>``;
- ``ms``: median forward time at batch size 1 in milliseconds;
- ``output_elements``: number of elements of the layer's output for one sample;
- ``p10_ms``, ``p90_ms``: 10th and 90th percentiles of the timed calls (NaN for a CSV value);
- ``spread``: ``(p90_ms - p10_ms) / ms``, the relative spread of the timed calls (NaN for a CSV
  value or a zero median).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from eeoffload.latency_checks import timing_quantiles
from eeoffload.layout import branch_name

if TYPE_CHECKING:
    from eeoffload.model import BAlexNet

COLUMNS = ["layer", "part", "ms", "output_elements", "p10_ms", "p90_ms", "spread"]
_DTYPES = {"layer": str, "part": str, "ms": "float64", "output_elements": "int64", "p10_ms": "float64",
           "p90_ms": "float64", "spread": "float64"}
_BRANCH_NAME = re.compile(r"branch([1-9][0-9]*)")


class ProfileError(ValueError):
    """A per-layer table (e.g. a user's edge CSV) that cannot feed the latency model."""


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


# --- per-layer tables -------------------------------------------------------------------------------


def layer_table(
    layer: Sequence[str], part: Sequence[str], output_elements: Sequence[int], samples_ms: Any, scale: float = 1.0
) -> pd.DataFrame:
    """The per-layer table (:data:`COLUMNS`) of timed calls ``samples_ms`` ((n_rows, repeats)), every
    time multiplied by ``scale`` (the edge slowdown, 1 / the cloud speedup; the spread is unchanged)."""
    samples = np.asarray(samples_ms, dtype=np.float64)
    if len(layer):
        median, p10, p90 = timing_quantiles(samples.reshape(len(layer), -1))
    else:
        median = p10 = p90 = np.empty(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = np.where(median > 0, (p90 - p10) / np.where(median > 0, median, 1.0), np.nan)
    df = pd.DataFrame({
        "layer": list(layer), "part": list(part), "ms": median * scale,
        "output_elements": list(output_elements), "p10_ms": p10 * scale, "p90_ms": p90 * scale,
        "spread": spread,
    })
    return df.astype(_DTYPES)


# --- tables into the latency model's inputs ---------------------------------------------------------


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
        The device's rows in execution order (:data:`COLUMNS`; ``output_elements`` from the model's
        shapes; ``p10_ms``, ``p90_ms`` and ``spread`` NaN: a CSV has one value per layer).
    """
    from eeoffload.model_shapes import output_elements  # torch, only when the shapes are needed

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
        (n, n if _BRANCH_NAME.fullmatch(n) else "trunk", by_name[n], elements[n], math.nan, math.nan, math.nan)
        for n in needed
    ]
    return pd.DataFrame.from_records(records, columns=COLUMNS).astype(_DTYPES)


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
    Extra rows and columns are ignored.

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
        from eeoffload.model_shapes import output_elements

        elements = output_elements(model)[part]
    return {
        "device_ms_to_exit": device_ms_to_exit,
        "offload_edge_ms": offload_edge_ms,
        "upload_bytes": int(elements * bytes_per_element),
        "cloud_ms": sum(cloud.values()),
    }


# --- the latency of a sample (section IV-E): the one latency model ------------------------------------


@dataclass(frozen=True)
class LatencyProfile:
    """The latency model's inputs for one variant (the profile stage's output, docs/latency.md)."""

    device_ms_to_exit: list[float]  # edge time from the input to side branch k's decision, k = 1..n-1
    offload_edge_ms: float  # edge time of an offloaded sample (trunk to the partition point + branches)
    upload_bytes: float  # size of the partition tensor
    cloud_ms: float  # cloud time of the remaining layers

    def exit_ms(self, uplink_mbps: float, rtt_ms: float) -> np.ndarray:
        """(n_exits,) per-sample latency by exit (section IV-E): :func:`exit_latency_ms`."""
        return exit_latency_ms(self, uplink_mbps, rtt_ms)


def upload_bits(upload_bytes: Any) -> Any:
    """Bits of a payload of ``upload_bytes`` bytes (a float; elementwise for an array or Series)."""
    return (float(upload_bytes) if np.ndim(upload_bytes) == 0 else upload_bytes) * 8.0


def upload_ms(upload_bytes: Any, uplink_mbps: float) -> Any:
    """Transmission time of ``upload_bytes`` at ``uplink_mbps`` (10^6 bit/s), in ms:
    bytes * 8 / (Mbps * 1e6) s (elementwise for an array or Series of bytes). The round-trip time
    is not in it (:func:`offloaded_sample_ms`); a time-varying uplink integrates the same bits over
    its segments (:func:`eeoffload.link_model.transfer_ms`)."""
    return upload_bits(upload_bytes) / (float(uplink_mbps) * 1e6) * 1e3


def offload_path_ms(offload_edge_ms: Any, transfer_ms: Any, rtt_ms: Any, cloud_ms: Any) -> Any:
    """Time of an offloaded sample given its upload time ``transfer_ms`` (section IV-E): edge
    compute up to the partition point + upload + round trip + cloud compute (elementwise)."""
    return offload_edge_ms + transfer_ms + rtt_ms + cloud_ms


def offloaded_sample_ms(
    offload_edge_ms: float, upload_bytes: float, uplink_mbps: float, rtt_ms: float, cloud_ms: float
) -> float:
    """Time of an offloaded sample (section IV-E) at a constant uplink: :func:`offload_path_ms`
    with the upload of the partition tensor (:func:`upload_ms`)."""
    return float(offload_path_ms(float(offload_edge_ms), upload_ms(upload_bytes, uplink_mbps), float(rtt_ms),
                                 float(cloud_ms)))


def per_exit_ms(device_ms_to_exit: Sequence[float], offloaded_ms: float) -> np.ndarray:
    """(n_exits,) per-sample time by exit: device time to side branch k, then ``offloaded_ms``."""
    return np.array([*device_ms_to_exit, offloaded_ms], dtype=np.float64)


def _field(profile: Any, key: str) -> Any:
    return profile[key] if isinstance(profile, Mapping) else getattr(profile, key)


def exit_breakdown_ms(profile: Any, uplink_mbps: float, rtt_ms: float) -> list[dict[str, float]]:
    """The components of :func:`exit_latency_ms`, per exit in exit order: ``{"edge": ..}`` for side
    branch k (on the device), then ``{"edge", "upload", "rtt", "cloud"}`` for the offloaded sample.

    ``profile``: a :class:`LatencyProfile` or a mapping with its four fields (``device_ms_to_exit`` a
    sequence in exit order, or the profile JSON's ``{"1": .., "2": ..}``)."""
    to_exit = _field(profile, "device_ms_to_exit")
    if isinstance(to_exit, Mapping):
        to_exit = [to_exit[k] for k in sorted(to_exit, key=int)]
    offloaded = {"edge": float(_field(profile, "offload_edge_ms")),
                 "upload": upload_ms(_field(profile, "upload_bytes"), uplink_mbps),
                 "rtt": float(rtt_ms), "cloud": float(_field(profile, "cloud_ms"))}
    return [{"edge": float(t)} for t in to_exit] + [offloaded]


def exit_latency_ms(profile: Any, uplink_mbps: float, rtt_ms: float) -> np.ndarray:
    """(n_exits,) latency of one sample by the exit that classifies it (paper section IV-E).

    Exit k < n (a side branch, on the device): ``device_ms_to_exit[k]``, the edge time of the trunk
    to branch point k and of branches 1..k. Exit n (offloaded, the final exit in the cloud):
    ``offload_edge_ms + upload_bytes * 8 / (uplink_mbps * 1e6) * 1e3 + rtt_ms + cloud_ms``.
    The sums of :func:`exit_breakdown_ms` (``profile`` as there).
    """
    parts = exit_breakdown_ms(profile, uplink_mbps, rtt_ms)
    off = parts[-1]
    return per_exit_ms([p["edge"] for p in parts[:-1]],
                       offload_path_ms(off["edge"], off["upload"], off["rtt"], off["cloud"]))
