"""The cloud process: ``python -m pipeline.link.cloud <config.json>``.

An HTTP server (FastAPI on uvicorn: a maintained ASGI stack with HTTP/1.1 keep-alive, so one TCP
connection carries every request and the measurement sees framing, not connection set-up) that
runs the cloud part of a trained variant (:class:`eeoffload.partition.CloudPart`) on decoded
partition tensors (:mod:`eeoffload.wire`).

Endpoints: ``GET /health``; ``POST /infer`` (body: one wire payload) -> ``{"predicted", "cloud_ms",
"decode_ms", "bytes"}``, the server-side decode and compute times; ``POST /sink`` (any body) ->
``{"bytes"}``, for the throughput check. Config keys: model_path, branches, threads, host, port.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, HTTPException, Request  # module level: FastAPI resolves the annotations here


def build_app(model_path: str, branches: list[str], threads: int) -> Any:
    from eeoffload import wire
    from eeoffload.partition import CloudPart
    from pipeline.core.splits import load_model

    torch.set_num_threads(threads)
    cloud = CloudPart(load_model(Path(model_path), branches))
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/infer")
    async def infer(request: Request) -> dict[str, Any]:
        body = await request.body()
        start = time.perf_counter()
        try:
            decoded = wire.decode(body)
        except wire.WireError as e:
            raise HTTPException(status_code=400, detail=str(e)) from None
        decoded_at = time.perf_counter()
        logits = cloud.run(torch.from_numpy(decoded.tensor))
        done = time.perf_counter()
        return {"predicted": int(logits.argmax(dim=1)[0]), "cloud_ms": (done - decoded_at) * 1e3,
                "decode_ms": (decoded_at - start) * 1e3, "bytes": len(body)}

    @app.post("/sink")
    async def sink(request: Request) -> dict[str, int]:
        n = 0
        async for chunk in request.stream():
            n += len(chunk)
        return {"bytes": n}

    return app


def main(config_path: str) -> None:
    import uvicorn

    cfg = json.loads(Path(config_path).read_text(encoding="utf-8"))
    app = build_app(cfg["model_path"], cfg["branches"], int(cfg["threads"]))
    uvicorn.run(app, host=cfg["host"], port=int(cfg["port"]), log_level="warning", access_log=False)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m pipeline.link.cloud <config.json>", file=sys.stderr)
        raise SystemExit(2)
    try:
        main(sys.argv[1])
    except Exception as e:  # noqa: BLE001 - one line for the stage, which reports it
        print(f"error: cloud process: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr)
        raise SystemExit(2) from None
