"""Model vs measurement for stage measure_link: the per-sample table, Fig. 5 both ways, the summary.

No I/O: :func:`analyse` takes the runner's records and the profile and returns DataFrames and a
JSON-able dict. The model is paper section IV-E's (:mod:`eeoffload.latency`), fed the bytes
actually sent (the payload of :mod:`eeoffload.wire`) and, for the trace pass, the trace integrated
from each sample's send time (:func:`eeoffload.link_model.transfer_ms`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from eeoffload import latency
from eeoffload import link_model as lm
from eeoffload import offload

#: samples.parquet, in this order (docs/link.md).
COLUMNS = ["calibration", "uplink", "position", "batch", "sample_id", "label", "exit", "offloaded", "predicted",
           "correct", "payload_bytes", "http_bytes", "edge_ms", "encode_ms", "request_ms", "transfer_ms",
           "decode_ms", "cloud_ms", "delay_ms", "e2e_ms", "send_s", "rate_mbps", "modelled_transfer_ms",
           "modelled_ms", "method"]
THROUGHPUT_TOLERANCE = 0.15
#: Bytes on an Ethernet veth per byte of HTTP: a full 1514-byte frame (14 Ethernet + 20 IP + 32 TCP
#: with timestamps) carries 1448 bytes of TCP payload. tbf counts whole frames.
FRAME_OVERHEAD = 1514 / 1448  # the shaping check: measured within 15 % of the set rate (issue 16)


def order(n: int, ev: Any) -> np.ndarray:
    """evaluate's order of the test samples (its batches are consecutive runs of this order)."""
    return offload.sample_order(n, ev.batch_order, ev.seed)


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), 4)


def modelled_offload_ms(profile: dict[str, Any], nbytes: float, mbps: float, rtt_ms: float) -> float:
    return latency.offloaded_sample_ms(profile["offload_edge_ms"], nbytes, mbps, rtt_ms, profile["cloud_ms"])


def per_sample(records: pd.DataFrame, profile: dict[str, Any], mbps: float, rtt_ms: float, trace: Any,
               batch_size: int, label: str) -> pd.DataFrame:
    """The records plus batch, method, the rate at send time and the modelled latency per sample."""
    out = records.copy()
    out["batch"] = (out["position"] // batch_size).astype(np.int64)
    out["method"] = label
    on_trace = (out["uplink"] == "trace") & out["offloaded"]
    rate = np.where(out["offloaded"], mbps, np.nan)
    transfer = latency.upload_ms(out["payload_bytes"], mbps)
    if trace is not None and on_trace.any():
        rate[on_trace.to_numpy()] = [lm.rate_at(trace, t) for t in out.loc[on_trace, "send_s"]]
        transfer[on_trace] = [lm.transfer_ms(trace, t, b) for t, b in zip(out.loc[on_trace, "send_s"],
                                                                           out.loc[on_trace, "payload_bytes"])]
    device = np.array([*profile["device_ms_to_exit"], np.nan])[out["exit"].to_numpy() - 1]
    out["rate_mbps"] = rate
    out["modelled_transfer_ms"] = np.where(out["offloaded"], transfer, 0.0)
    offloaded_ms = latency.offload_path_ms(profile["offload_edge_ms"], transfer, rtt_ms, profile["cloud_ms"])
    out["modelled_ms"] = np.where(out["offloaded"], offloaded_ms, device)
    return out[COLUMNS].astype({"position": "int64", "sample_id": "int64", "label": "int64", "exit": "int64",
                                "predicted": "int64", "payload_bytes": "int64", "http_bytes": "int64"})


def _error(modelled: float, measured: float) -> dict[str, float | None]:
    return {"measured_ms": _num(measured), "modelled_ms": _num(modelled), "error_ms": _num(modelled - measured),
            "error_pct": _num((modelled - measured) / measured * 100 if measured else float("nan"))}


def _framing(off: pd.DataFrame, profile: dict[str, Any], mbps: float, rtt_ms: float) -> dict[str, Any]:
    """What the model leaves out, priced: the model fed the HTTP bytes times the TCP/IP/Ethernet
    framing (:data:`FRAME_OVERHEAD`) instead of the payload, against the same measurement."""
    if not len(off):
        return {}
    wire_bytes = float(off["http_bytes"].mean()) * FRAME_OVERHEAD
    return {"frame_overhead": round(FRAME_OVERHEAD, 5), "wire_bytes": _num(wire_bytes)} | _error(
        modelled_offload_ms(profile, wire_bytes, mbps, rtt_ms), float(off["e2e_ms"].mean()))


def measured_exit_ms(samples: pd.DataFrame, modelled: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Measured mean latency per exit (constant-rate passes, both calibrations pooled); exits
    never taken keep the modelled value and are listed."""
    const = samples[samples["uplink"] == "constant"]
    ms, missing = modelled.copy(), []
    for k in range(1, len(modelled) + 1):
        part = const.loc[const["exit"] == k, "e2e_ms"]
        if len(part):
            ms[k - 1] = part.mean()
        else:
            missing.append(k)
    return ms, missing


def measured_trace_batches(samples: pd.DataFrame, trace: Any, n_batches: int, device_ms: np.ndarray) -> np.ndarray:
    """(G, n_exits): batch g's offloaded latency is the mean measured latency of trace-pass samples
    sent in the same trace segment as the batch's time (else of all trace-pass samples)."""
    sent = samples[(samples["uplink"] == "trace") & samples["offloaded"]]
    segment = np.searchsorted(trace.time_s, np.mod(sent["send_s"].to_numpy(), trace.period_s), side="right") - 1
    means = pd.Series(sent["e2e_ms"].to_numpy()).groupby(segment).mean()
    overall = float(sent["e2e_ms"].mean())
    rows = []
    for t in lm.batch_times_s(trace, n_batches):
        seg = int(np.searchsorted(trace.time_s, t, side="right") - 1)
        rows.append([*device_ms, float(means.get(seg, overall))])
    return np.array(rows)


def deadline_curves(exits: list[Any], labels: np.ndarray, sample_order: np.ndarray, temps: dict[str, list[float]],
                    exit_ms: dict[str, np.ndarray], ev: Any) -> pd.DataFrame:
    """Fig. 5 (missed deadline vs t_tar per p_tar) on the whole test split for each calibration and
    each latency source ((n_exits,) or (G, n_exits) per-exit latencies)."""
    logits = np.stack([z.numpy() for z in exits])
    frames = []
    for calibration, t in temps.items():
        conf, correct = offload.exit_confidence(logits, labels, t)
        for source, ms in exit_ms.items():
            missed = offload.missed_deadline_probability(conf, correct, ev.deadline_p_tar, ev.t_tar_ms, ms, sample_order,
                                                  ev.batch_size)
            frames.append(pd.DataFrame({"calibration": calibration, "source": source,
                                        "p_tar": np.repeat(ev.deadline_p_tar, len(ev.t_tar_ms)),
                                        "t_tar_ms": np.tile(ev.t_tar_ms, len(ev.deadline_p_tar)),
                                        "missed_deadline": missed.ravel()}))
    return pd.concat(frames, ignore_index=True)


def trace_change(deadline: pd.DataFrame) -> list[dict[str, Any]]:
    """Per calibration and p_tar: the largest change of the modelled missed-deadline probability
    from the constant rate to the trace (same mean rate), and where on the t_tar grid it is."""
    rows = []
    for (calibration, p_tar), part in deadline.groupby(["calibration", "p_tar"]):
        wide = part.pivot(index="t_tar_ms", columns="source", values="missed_deadline")
        if "modelled_trace" not in wide:
            continue
        diff = wide["modelled_trace"] - wide["modelled"]
        at = diff.abs().idxmax()
        rows.append({"calibration": calibration, "p_tar": float(p_tar), "t_tar_ms": float(at),
                     "constant": _num(wide.loc[at, "modelled"]), "trace": _num(wide.loc[at, "modelled_trace"]),
                     "measured_trace": _num(wide.loc[at, "measured_trace"]) if "measured_trace" in wide else None,
                     "change": _num(diff.loc[at])})
    return rows


def analyse(result: Any, profile: dict[str, Any], exits: list[Any], labels: np.ndarray, sample_order: np.ndarray,
            inputs: Any, temperatures: list[float]) -> dict[str, Any]:
    """samples, deadline (DataFrames) and summary (dict) of one measurement."""
    net, ev, link, trace = inputs.network, inputs.evaluate, inputs.link, inputs.trace
    label = f"{result.method['link']}; delay: {result.method['delay']}"
    samples = per_sample(result.records, profile, net.uplink_mbps, net.rtt_ms, trace, ev.batch_size, label)
    const = samples[samples["uplink"] == "constant"]
    off = const[const["offloaded"]]
    nbytes = float(off["payload_bytes"].mean()) if len(off) else float(profile["upload_bytes"])
    model_offload = modelled_offload_ms(profile, nbytes, net.uplink_mbps, net.rtt_ms)
    model_exit = latency.per_exit_ms(profile["device_ms_to_exit"], model_offload)
    measured_exit, never = measured_exit_ms(samples, model_exit)
    n_batches = len(labels) // ev.batch_size
    sources = {"modelled": model_exit, "measured": measured_exit}
    if trace is not None:
        sources["modelled_trace"] = lm.trace_exit_ms(
            trace, n_batches, profile["device_ms_to_exit"], profile["offload_edge_ms"], nbytes, net.rtt_ms,
            profile["cloud_ms"])
        if ((samples["uplink"] == "trace") & samples["offloaded"]).any():
            sources["measured_trace"] = measured_trace_batches(samples, trace, n_batches, measured_exit[:-1])
    temps = {"conventional": [1.0] * len(exits), "calibrated": temperatures}
    deadline = deadline_curves(exits, labels, sample_order, temps, sources, ev)
    per_exit = {c: lm.model_vs_measured(const[const["calibration"] == c], model_exit).to_dict("records")
                for c in temps}
    offloaded = _error(float(off["modelled_ms"].mean()), float(off["e2e_ms"].mean())) if len(off) else {}
    pipeline_model = modelled_offload_ms(profile, profile["upload_bytes"], net.uplink_mbps, net.rtt_ms)
    tput = result.throughput
    ratio = tput["mbps"] / tput["set_mbps"]
    holds = bool(offloaded) and offloaded["error_pct"] is not None and abs(offloaded["error_pct"]) <= link.tolerance_pct
    summary: dict[str, Any] = {
        "method": result.method, "label": label,
        "uplink_mbps": net.uplink_mbps, "rtt_ms": net.rtt_ms, "n_samples": int(samples["position"].max() + 1),
        "p_tar": link.p_tar, "encoding": link.encoding, "compressor": link.compressor, "batch_size": ev.batch_size,
        "throughput": {"set_mbps": tput["set_mbps"], "measured_mbps": _num(tput["mbps"]), "ratio": _num(ratio),
                       "bytes": tput["bytes"], "within_15pct": bool(abs(ratio - 1) <= THROUGHPUT_TOLERANCE)},
        "bytes": {"model_upload_bytes": profile["upload_bytes"], "payload_bytes": _num(nbytes),
                  "http_bytes": _num(float(off["http_bytes"].mean())) if len(off) else None},
        "offloaded": offloaded | {"n": int(len(off)),
                                  "pipeline_model_ms": _num(pipeline_model),
                                  "measured_transfer_ms": _num(float(off["transfer_ms"].mean())) if len(off) else None,
                                  "modelled_transfer_ms": _num(float(off["modelled_transfer_ms"].mean()))
                                  if len(off) else None},
        "framing": _framing(off, profile, net.uplink_mbps, net.rtt_ms),
        "per_exit": per_exit, "exits_never_taken": never,
        "claim": {"tolerance_pct": link.tolerance_pct, "holds": holds},
    }
    if trace is not None:
        tr = samples[(samples["uplink"] == "trace") & samples["offloaded"]]
        summary["trace"] = {"path": link.uplink_trace, "period_s": trace.period_s, "mean_mbps": _num(trace.mean_mbps),
                            "offloaded": _error(float(tr["modelled_ms"].mean()), float(tr["e2e_ms"].mean()))
                            | {"n": int(len(tr))} if len(tr) else {},
                            "missed_deadline_change": trace_change(deadline)}
    return {"samples": samples, "deadline": deadline, "summary": summary}


def describe(summary: dict[str, Any]) -> str:
    off, tp = summary["offloaded"], summary["throughput"]
    return (f"measure_link [{summary['label']}]: throughput {tp['measured_mbps']} of {tp['set_mbps']} Mbps; "
            f"offloaded sample measured {off.get('measured_ms')} ms, modelled {off.get('modelled_ms')} ms "
            f"(error {off.get('error_pct')} %, claim within {summary['claim']['tolerance_pct']:g} %: "
            f"{'holds' if summary['claim']['holds'] else 'fails'})")
