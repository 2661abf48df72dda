"""The edge process: ``python -m pipeline.link.edge <config.json>``.

Runs the device part of a trained variant (:class:`eeoffload.partition.EdgePart`) one sample at a
time with ``threads`` CPU threads, decides each sample with the given temperatures and p_tar
(paper section III), and sends each offloaded sample's partition tensor, encoded by
:mod:`eeoffload.wire`, to the cloud process with httpx (one keep-alive HTTP/1.1 connection,
``trust_env=False``: no proxy, only the configured address). Writes one record per sample
(Parquet, ``out_path``). Timings use ``time.perf_counter``; the trace clock is ``time.time() -
trace_t0`` so that the stage's ``tc`` rate changes and these records share one clock.

Where the link is not shaped by the kernel (loopback fallback), ``pacing`` holds the uplink trace
and the request body is released in 1448-byte chunks, each no earlier than the trace allows for
the bytes up to its end (headers included): the rate applied in the sender. ``delay_ms`` (one way)
is slept before sending and after the reply where netem is missing.

Mode ``throughput`` instead posts ``throughput_bytes`` to ``/sink`` once and writes
``{"bytes", "seconds", "mbps"}`` as JSON. Any failure: one line ``error: ...`` on stderr, exit 2.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

CHUNK = 1448  # one TCP segment's payload on a 1500-byte MTU
WARMUP = 3  # untimed requests first (connection set-up, allocator, JIT-free warm caches)


class EdgeError(RuntimeError):
    pass


def header_bytes(request: Any) -> int:
    """Bytes of the HTTP/1.1 request line and headers that precede the body."""
    line = f"{request.method} {request.url.raw_path.decode()} HTTP/1.1\r\n".encode()
    return len(line) + sum(len(k) + len(v) + 4 for k, v in request.headers.raw) + 2


def paced(payload: bytes, head: int, trace: Any, start_s: float, t0_perf: float) -> Iterator[bytes]:
    """``payload`` in chunks, each released once the trace has carried the bytes up to its end."""
    from eeoffload.link_model import transfer_ms

    for offset in range(0, len(payload), CHUNK):
        end = min(offset + CHUNK, len(payload))
        due = t0_perf + transfer_ms(trace, start_s, head + end) / 1e3
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        yield payload[offset:end]


def wait_for_cloud(client: Any, url: str, timeout_s: float) -> None:
    import httpx

    deadline, last = time.monotonic() + timeout_s, "no answer"
    while time.monotonic() < deadline:
        try:
            if client.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError as e:
            last = f"{type(e).__name__}: {e}"
        time.sleep(0.1)
    raise EdgeError(f"cloud process unreachable at {url} after {timeout_s:g} s ({last})")


def post(client: Any, url: str, payload: bytes, cfg: dict[str, Any],
         trace: Any) -> tuple[dict[str, Any], int, float, float]:
    """One offload: (reply, HTTP bytes, request ms, trace time at send)."""
    import httpx

    request = client.build_request("POST", f"{url}/infer", content=payload,
                                   headers={"content-type": "application/octet-stream"})
    head = header_bytes(request)
    send_s = time.time() - cfg["trace_t0"]
    start = time.perf_counter()
    if trace is not None:
        request = client.build_request("POST", f"{url}/infer", content=paced(payload, head, trace, send_s, start),
                                       headers={"content-type": "application/octet-stream",
                                                "content-length": str(len(payload))})
    try:
        response = client.send(request)
    except httpx.HTTPError as e:
        raise EdgeError(f"cloud process at {url} failed during the measurement: {type(e).__name__}: {e}") from None
    request_ms = (time.perf_counter() - start) * 1e3
    if response.status_code != 200:
        raise EdgeError(f"cloud process at {url} answered {response.status_code}: {response.text[:200]}")
    return response.json(), head + len(payload), request_ms, send_s


def measure(cfg: dict[str, Any]) -> None:
    import httpx
    import pandas as pd
    import torch

    from eeoffload import wire
    from eeoffload.link_model import Trace
    from eeoffload.partition import EdgePart
    from eeoffload.training import images_to_tensor
    from pipeline.core.splits import load_model

    torch.set_num_threads(int(cfg["threads"]))
    edge = EdgePart(load_model(Path(cfg["model_path"]), cfg["branches"]))
    with np.load(cfg["images_path"], allow_pickle=False) as f:
        images, labels, ids = f["images"], f["labels"], f["sample_id"]
    x = images_to_tensor(images).contiguous()
    trace = Trace(np.array(cfg["pacing"]["time_s"]), np.array(cfg["pacing"]["mbps"])) if cfg.get("pacing") else None
    url, delay_s = cfg["url"], float(cfg["delay_ms"]) / 1e3
    deadline = time.monotonic() + float(cfg["deadline_s"])
    rows = []
    with httpx.Client(trust_env=False, timeout=float(cfg["request_timeout_s"])) as client:
        wait_for_cloud(client, url, float(cfg["connect_timeout_s"]))
        for _ in range(WARMUP):
            result = edge.run(x[:1], [1.0] * (edge.n_exits - 1), 2.0)  # p_tar 2: always offloaded
            post(client, url, wire.encode(result.partition.numpy(), cfg["encoding"], cfg["compressor"]), cfg, None)
        for run in cfg["passes"]:
            for i in range(len(labels)):
                if time.monotonic() > deadline:
                    raise EdgeError(f"measurement exceeded link.max_seconds = {cfg['deadline_s']:g} s "
                                    f"(pass {run['calibration']}, sample {i} of {len(labels)})")
                rows.append(one_sample(edge, client, x[i:i + 1], run, cfg, trace, delay_s)
                            | {"calibration": run["calibration"], "uplink": run["uplink"],
                               "position": i, "sample_id": int(ids[i]), "label": int(labels[i])})
    table = pd.DataFrame(rows)
    table["correct"] = table["predicted"] == table["label"]
    table.to_parquet(cfg["out_path"], index=False)


def one_sample(edge: Any, client: Any, x: Any, run: dict[str, Any], cfg: dict[str, Any], trace: Any,
               delay_s: float) -> dict[str, Any]:
    from eeoffload import wire

    start = time.perf_counter()
    result = edge.run(x, run["temperatures"][:-1], float(cfg["p_tar"]))
    edge_ms = (time.perf_counter() - start) * 1e3
    record = {"exit": result.exit, "offloaded": result.partition is not None, "predicted": result.predicted,
              "edge_ms": edge_ms, "encode_ms": 0.0, "payload_bytes": 0, "http_bytes": 0, "request_ms": 0.0,
              "transfer_ms": 0.0, "decode_ms": 0.0, "cloud_ms": 0.0, "delay_ms": 0.0, "send_s": float("nan"),
              "e2e_ms": edge_ms}
    if result.partition is None:
        return record
    t = time.perf_counter()
    payload = wire.encode(result.partition.numpy(), cfg["encoding"], cfg["compressor"])
    encode_ms = (time.perf_counter() - t) * 1e3
    if delay_s:
        time.sleep(delay_s)
    reply, http_bytes, request_ms, send_s = post(client, cfg["url"], payload, cfg, trace)
    if delay_s:
        time.sleep(delay_s)
    e2e_ms = (time.perf_counter() - start) * 1e3
    return record | {"predicted": reply["predicted"], "encode_ms": encode_ms, "payload_bytes": len(payload),
                     "http_bytes": http_bytes, "request_ms": request_ms,
                     "transfer_ms": request_ms - reply["cloud_ms"] - reply["decode_ms"],
                     "decode_ms": reply["decode_ms"], "cloud_ms": reply["cloud_ms"], "delay_ms": 2 * delay_s * 1e3,
                     "send_s": send_s, "e2e_ms": e2e_ms}


def throughput(cfg: dict[str, Any]) -> None:
    import httpx

    url, n = cfg["url"], int(cfg["throughput_bytes"])
    with httpx.Client(trust_env=False, timeout=float(cfg["request_timeout_s"])) as client:
        wait_for_cloud(client, url, float(cfg["connect_timeout_s"]))
        client.post(f"{url}/sink", content=b"\0" * 1000)  # connection set-up, untimed
        body = b"\0" * n
        request = client.build_request("POST", f"{url}/sink", content=body)
        start = time.perf_counter()
        if cfg.get("pacing"):  # loopback: the rate applied in the sender, as for the samples
            from eeoffload.link_model import Trace

            trace = Trace(np.array(cfg["pacing"]["time_s"]), np.array(cfg["pacing"]["mbps"]))
            request = client.build_request("POST", f"{url}/sink", headers={"content-length": str(n)},
                                           content=paced(body, header_bytes(request), trace, 0.0, start))
        try:
            got = client.send(request).json()["bytes"]
        except httpx.HTTPError as e:
            raise EdgeError(f"throughput check to {url} failed: {type(e).__name__}: {e}") from None
        seconds = time.perf_counter() - start
    Path(cfg["out_path"]).write_text(json.dumps({"bytes": got, "seconds": seconds, "mbps": got * 8 / seconds / 1e6}))


def main(config_path: str) -> None:
    cfg = json.loads(Path(config_path).read_text(encoding="utf-8"))
    (throughput if cfg["mode"] == "throughput" else measure)(cfg)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m pipeline.link.edge <config.json>", file=sys.stderr)
        raise SystemExit(2)
    try:
        main(sys.argv[1])
    except EdgeError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as e:  # noqa: BLE001 - one line for the stage, which reports it
        print(f"error: edge process: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr)
        raise SystemExit(2) from None
