"""Wire encodings, uplink traces and the per-batch missed-deadline model (pure, fast)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eeoffload import link_model as lm
from eeoffload import offload, wire

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("encoding", wire.ENCODINGS)
@pytest.mark.parametrize("compressor", wire.COMPRESSORS)
def test_roundtrip_and_byte_count(encoding: str, compressor: str) -> None:
    x = np.maximum(np.random.default_rng(0).normal(size=(1, 64, 16, 16)), 0).astype(np.float32)
    payload = wire.encode(x, encoding, compressor)
    if compressor == "none":
        expected = 24 + 16 + x.size * wire.BYTES_PER_ELEMENT[encoding]
        assert len(payload) == wire.uncompressed_bytes(x.size, 4, encoding) == expected
    decoded = wire.decode(payload)
    assert decoded.tensor.shape == x.shape and decoded.encoding == encoding and decoded.compressor == compressor
    tolerance = {"fp32": 0.0, "fp16": 2e-3 * x.max(), "int8": x.max() / 255 / 2 + 1e-6}[encoding]
    assert np.abs(decoded.tensor - x).max() <= tolerance


def test_int8_constant_tensor_and_errors() -> None:
    x = np.full((2, 3), 0.5, np.float32)
    np.testing.assert_allclose(wire.roundtrip(x, "int8")[0], x)
    with pytest.raises(wire.WireError, match="unknown encoding 'bf16'; allowed: fp32 | fp16 | int8"):
        wire.encode(x, "bf16")
    with pytest.raises(wire.WireError, match="unknown compressor 'zstd'"):
        wire.encode(x, "fp32", "zstd")
    with pytest.raises(wire.WireError, match="not an eeoffload.wire header"):
        wire.decode(b"x" * 40)
    with pytest.raises(wire.WireError, match="body has"):
        wire.decode(wire.encode(x)[:-1])


def trace(rows: list[tuple[float, float]]) -> lm.Trace:
    return lm.parse_trace(pd.DataFrame(rows, columns=["time_s", "mbps"]))


def test_transfer_integrates_over_segments() -> None:
    t = trace([(0, 8.0), (1, 4.0)])  # 1 MB/s for 1 s, then 0.5 MB/s for 1 s, repeating
    assert t.period_s == 2.0 and t.mean_mbps == pytest.approx(6.0)
    assert lm.transfer_ms(t, 0.0, 500_000) == pytest.approx(500.0)
    assert lm.transfer_ms(t, 0.5, 1_000_000) == pytest.approx(500 + 1000)  # 0.5 MB at 1 MB/s, 0.5 MB at 0.5 MB/s
    assert lm.transfer_ms(t, 1.5, 500_000) == pytest.approx(500 + 250)  # wraps around
    assert lm.rate_at(t, 3.2) == 4.0
    assert lm.transfer_ms(lm.constant_trace(18.8), 7.0, 131072) == pytest.approx(131072 * 8 / 18.8e6 * 1e3)


@pytest.mark.parametrize("rows, message", [
    ([(0, 10), (0, 12)], "row 2: time_s must increase strictly"),
    ([(1, 10)], "the first time_s must be 0"),
    ([(0, 10), (1, -1)], "row 2: mbps = -1; allowed: a number > 0"),
    ([(0, "fast")], "row 1: mbps = 'fast' is not a finite number"),
])
def test_malformed_traces(rows: list[tuple[float, object]], message: str) -> None:
    with pytest.raises(lm.TraceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        trace(rows)  # type: ignore[arg-type]
    with pytest.raises(lm.TraceError, match="missing column"):
        lm.parse_trace(pd.DataFrame({"t": [0], "mbps": [1]}))


def test_per_batch_deadline_equals_constant_model_when_batches_agree() -> None:
    rng = np.random.default_rng(1)
    conf, correct = rng.uniform(0.3, 1, (3, 200)), rng.uniform(size=(3, 200)) < 0.7
    order, grid, deadlines, ms = rng.permutation(200), [0.6, 0.8], np.arange(0, 40, 0.5), np.array([1.0, 2.0, 30.0])
    expected = offload.missed_deadline_probability(conf, correct, grid, deadlines, ms, order, 50)
    np.testing.assert_array_equal(offload.missed_deadline_probability(conf, correct, grid, deadlines, ms, order, 50), expected)
    per_batch = np.tile(ms, (4, 1))
    got = offload.missed_deadline_probability(conf, correct, grid, deadlines, per_batch, order, 50)
    np.testing.assert_array_equal(got, expected)
    slower = per_batch.copy()
    slower[0, 2] = 300.0  # one batch on a slow uplink misses more deadlines
    assert (offload.missed_deadline_probability(conf, correct, grid, deadlines, slower, order, 50) >= expected).all()


def test_shipped_trace_is_the_documented_synthetic_one() -> None:
    shipped = lm.parse_trace(pd.read_csv(ROOT / "configs/traces/wifi_18.8.csv", comment="#"))
    generated = lm.synthetic_wifi_trace()
    np.testing.assert_array_equal(shipped.time_s, generated.time_s)
    np.testing.assert_allclose(shipped.mbps, generated.mbps, atol=0.005)
    assert shipped.mean_mbps == pytest.approx(18.8, abs=0.01)
