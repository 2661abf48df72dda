"""Stage measure_link end to end on a tiny project (loopback, a dozen samples, trace pass), its
params, and the report fragment and claim row built from its outputs."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from eeoffload import wire
from pipeline.core import params as P
from pipeline.core.io import StageError
from pipeline.link.report_fragment import link_claim, link_fragment
from pipeline.tools.scratch import scratch_env
from tests.link_project import make_project

ROOT = Path(__file__).resolve().parent.parent
BASE: dict[str, Any] = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
SAMPLE_COLUMNS = ["calibration", "uplink", "position", "batch", "sample_id", "label", "exit", "offloaded", "predicted",
                  "correct", "payload_bytes", "http_bytes", "edge_ms", "encode_ms", "request_ms", "transfer_ms",
                  "decode_ms", "cloud_ms", "delay_ms", "e2e_ms", "send_s", "rate_mbps", "modelled_transfer_ms",
                  "modelled_ms", "method"]


def link_error(key: str, value: Any) -> str:
    params = copy.deepcopy(BASE)
    params["link"][key] = value
    with pytest.raises(StageError) as info:
        P.link_params(params)
    return str(info.value)


@pytest.mark.parametrize("key, value, text", [
    ("method", "wifi", "params.yaml: link.method = 'wifi'; allowed: auto | netns | loopback"),
    ("encoding", "bf16", "params.yaml: link.encoding = 'bf16'; allowed: fp32 | fp16 | int8"),
    ("compressor", "zstd", "params.yaml: link.compressor = 'zstd'; allowed: none | zlib"),
    ("n_samples", 0, "params.yaml: link.n_samples = 0; allowed: an integer >= 1"),
    ("p_tar", 1.0, "params.yaml: link.p_tar = 1.0; allowed: a number in (0, 1)"),
    ("loss_pct", 100, "params.yaml: link.loss_pct = 100.0; allowed: a number in [0, 100)"),
    ("tolerance_pct", 0, "params.yaml: link.tolerance_pct = 0; allowed: a number > 0"),
    ("typo", 1, "params.yaml: link.typo is not a known key"),
])
def test_link_params_errors_name_the_key(key: str, value: Any, text: str) -> None:
    assert link_error(key, value).startswith(text)


def test_link_params_match_the_library() -> None:
    assert P.LINK_ENCODINGS == wire.ENCODINGS and P.LINK_COMPRESSORS == wire.COMPRESSORS
    assert P.link_params(BASE).encoding == "fp32"


def test_stage_writes_samples_deadline_encodings_summary(tmp_path: Path) -> None:
    trace = str(ROOT / "configs/traces/wifi_18.8.csv")
    root = make_project(tmp_path / "p", link={"method": "loopback", "uplink_trace": trace},
                        network={"uplink_mbps": 40.0})
    proc = subprocess.run([sys.executable, "-m", "pipeline", "measure_link", "tiny"], cwd=root, env=scratch_env(ROOT),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = root / "reports/link/tiny"
    samples = pd.read_parquet(out / "samples.parquet")
    assert list(samples.columns) == SAMPLE_COLUMNS
    assert sorted(samples.groupby(["calibration", "uplink"]).size().items()) == [
        (("calibrated", "constant"), 12), (("calibrated", "trace"), 12), (("conventional", "constant"), 12)]
    off = samples[samples["offloaded"]]
    assert (off["payload_bytes"] == wire.uncompressed_bytes(64 * 16 * 16, 4, "fp32")).all()
    assert (samples["e2e_ms"] >= samples["edge_ms"]).all()
    deadline = pd.read_parquet(out / "deadline.parquet")
    assert set(deadline["source"]) == {"modelled", "measured", "modelled_trace", "measured_trace"}
    assert deadline["missed_deadline"].between(0, 1).all()
    encodings = pd.read_parquet(out / "encodings.parquet")
    assert len(encodings) == len(wire.ENCODINGS) * len(wire.COMPRESSORS)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"]["link"] == "loopback, rate applied in the sender"
    assert summary["offloaded"]["n"] == len(off[off["uplink"] == "constant"])
    assert summary["claim"]["holds"] == (abs(summary["offloaded"]["error_pct"]) <= 10)
    assert (root / "reports/timings/measure_link@tiny.json").is_file()
    fragment = link_fragment("tiny", root)
    assert fragment.count("data:image/png;base64,") == 2 and "loopback, rate applied in the sender" in fragment
    row = link_claim("tiny", root)
    assert set(row) == {"id", "figure", "claim", "variant", "verdict", "evidence"}
    assert row["claim"] == "the latency model predicts the measured offload latency within 10%"
    assert row["verdict"] in ("holds", "does not hold")
    assert link_fragment("absent", root) == "" and link_claim("absent", root)["verdict"] == "not applicable"
