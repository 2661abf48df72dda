"""The checks of a latency profile (eeoffload.latency_checks) on synthetic timings, and the profile stage's
re-measuring and warnings (docs/latency.md, "Trustworthy profiles")."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml

from eeoffload import latency_checks as L
from eeoffload import latency_measure
from eeoffload.latency import COLUMNS, layer_table

LAYERS = ["conv1", "relu1", "branch1", "pool1"]
CLEAN_MEDIANS = np.array([0.30, 0.004, 0.45, 0.02])  # ms, like a quiet host


def _clean(seed: int = 0, repeats: int = 50) -> np.ndarray:
    """(4, repeats) timed calls around CLEAN_MEDIANS, a few percent of jitter (never exactly on a tick)."""
    rng = np.random.default_rng(seed)
    return CLEAN_MEDIANS[:, None] * rng.uniform(0.97, 1.06, (len(LAYERS), repeats))


def _quantised(repeats: int = 50) -> np.ndarray:
    """A loaded machine's timings: every call exactly 8, 16, 24 or 32 ms."""
    rng = np.random.default_rng(1)
    return 8.0 * rng.integers(1, 5, (len(LAYERS), repeats)).astype(float)


def _spread(seed: int = 2, repeats: int = 50) -> np.ndarray:
    """Clean timings, but a third of the calls of every layer took 2-3x longer (a busy machine)."""
    rng = np.random.default_rng(seed)
    s = _clean(seed, repeats)
    slow = rng.random(s.shape) < 0.35
    return np.where(slow, s * rng.uniform(2.0, 3.0, s.shape), s)


# --- pure checks on synthetic timings -----------------------------------------------------------


def test_clean_timings_pass_every_check() -> None:
    s = _clean()
    assert L.timer_quantum_ms(s) < L.QUANTUM_MIN_MS and not L.is_quantised(s)
    assert L.pooled_spread(s) < L.SPREAD_MAX
    assert L.timing_warnings("edge", LAYERS, s) == []
    cloud = np.median(s, axis=1) * 0.6  # the cloud, with more threads, is faster
    assert L.cloud_slower_layers(LAYERS, np.median(s, axis=1), cloud) == []
    assert L.cloud_slower_warnings(LAYERS, np.median(s, axis=1), cloud) == []


@pytest.mark.parametrize("seed", range(20))
def test_clean_timings_are_not_quantised_for_any_seed(seed: int) -> None:
    # slow layers too (an edge slowed down 30x), and few calls: still no common tick
    s = _clean(seed, repeats=5) * 30
    assert not L.is_quantised(s)
    assert not L.is_quantised(np.median(s, axis=1))


def test_quantised_timings() -> None:
    # the layer medians of the loaded machine that started this check
    assert L.timer_quantum_ms([8.0, 16.0, 24.0, 32.0]) == pytest.approx(8.0)
    assert L.is_quantised([8.0, 16.0, 24.0, 32.0])
    assert L.timer_quantum_ms([12.0, 20.0, 28.0, 36.0]) == pytest.approx(4.0)  # medians of 2 ticks: half-ticks
    assert L.timer_quantum_ms([8.0, 16.0 + 1e-7, 24.0 - 1e-7, 32.0]) == pytest.approx(8.0, abs=1e-6)
    s = _quantised()
    assert L.timer_quantum_ms(s) == pytest.approx(8.0)
    (warning,) = [w for w in L.timing_warnings("cloud", LAYERS, s) if "quantised" in w]
    assert warning.startswith("cloud timings are quantised: all 200 timed calls are multiples of 8 ms")
    assert "\n" not in warning


def test_a_clock_that_did_not_advance_is_quantised() -> None:
    s = _clean()
    s[1, :10] = 0.0  # relu1 read no time in 10 calls
    assert L.timer_quantum_ms(s) == math.inf and L.is_quantised(s)
    (warning,) = L.timing_warnings("edge", LAYERS, s)
    assert warning.startswith("edge timings are quantised: 10 of 200 timed calls read 0 ms")


def test_too_few_values_are_not_judged() -> None:
    assert L.timer_quantum_ms([8.0]) == 0.0  # one value is a multiple of itself
    assert L.timer_quantum_ms([8.0, 16.0, 24.0]) == 0.0
    assert not L.is_quantised([3.0, 6.0, 9.0])


def test_spread() -> None:
    s = np.array([[1.0, 1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    median, p10, p90 = L.timing_quantiles(s)
    assert median.tolist() == [1.0, 3.0] and p10.tolist() == pytest.approx([1.0, 1.4])
    assert p90.tolist() == pytest.approx([1.0, 4.6])
    assert L.relative_spread(s).tolist() == pytest.approx([0.0, 3.2 / 3.0])
    assert L.pooled_spread(s) == pytest.approx(3.2 / 4.0)  # sum of (p90 - p10) / sum of medians
    assert math.isnan(L.pooled_spread(np.zeros((2, 3))))
    busy = _spread()
    assert L.pooled_spread(busy) > L.SPREAD_MAX and not L.is_quantised(busy)
    (warning,) = L.timing_warnings("edge", LAYERS, busy)
    assert warning.startswith("edge timings spread too much: (p90 - p10) / median = ")
    assert "limit 0.5" in warning and "widest: branch1" in warning


def test_spread_of_microsecond_layers_alone_does_not_warn() -> None:
    # relu1 (4 us) jitters by 100%: Python's call overhead, not the machine; the pooled spread is small
    s = _clean()
    s[1] = np.where(np.arange(s.shape[1]) % 2 == 0, 0.004, 0.008)
    assert L.relative_spread(s)[1] > 0.5
    assert L.timing_warnings("edge", LAYERS, s) == []


def test_cloud_slower_than_edge() -> None:
    edge = np.array([0.30, 0.004, 0.45, 0.02])
    cloud = np.array([0.60, 0.009, 0.40, 0.05])  # conv1 2x slower; relu1 and pool1 below the floor
    assert L.cloud_slower_layers(LAYERS, edge, cloud) == ["conv1"]
    (warning,) = L.cloud_slower_warnings(LAYERS, edge, cloud)
    assert warning.startswith("cloud slower than edge on the same CPU: 1 layer(s) took more than 1.25x")
    assert "conv1 0.6 vs 0.3 ms" in warning
    # within the ratio: same hardware, noise
    assert L.cloud_slower_layers(LAYERS, edge, edge * 1.2) == []
    with pytest.raises(ValueError, match="must both be"):
        L.cloud_slower_layers(LAYERS, edge, cloud[:3])


def test_layer_table_from_samples() -> None:
    s = np.array([[1.0, 2.0, 3.0], [4.0, 4.0, 4.0]])
    t = layer_table(["conv1", "branch1"], ["trunk", "branch1"], [10, 10], s, scale=2.0)
    assert list(t.columns) == COLUMNS
    assert t["ms"].tolist() == [4.0, 8.0]  # medians times the scale
    assert t["p10_ms"].tolist() == pytest.approx([2.4, 8.0]) and t["p90_ms"].tolist() == pytest.approx([5.6, 8.0])
    assert t["spread"].tolist() == pytest.approx([1.6 / 2.0, 0.0])  # the spread does not scale


# --- the stage: re-measures a disturbed measurement, then warns ---------------------------------

LATENCY = {"warmup": 0, "repeats": 3, "edge_threads": 1, "edge_slowdown": 1.0, "edge_profile": "",
           "cloud_device": "cpu", "cloud_speedup": 1.0, "bytes_per_element": 4}


def _samples(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 6) synthetic timed calls of one measurement: ``clean`` (0.10-0.11 ms), ``quantised`` (8 to 32
    ms in 8 ms ticks), ``zeros`` (clean, but the clock did not advance in some calls), ``busy`` (clean,
    half the calls 3x longer) or ``busy_slow`` (busy, everything 10x longer)."""
    clean = rng.uniform(0.10, 0.11, (n, 6))
    busy = np.where(np.arange(6) % 2 == 0, clean, 3 * clean)
    return {"clean": clean, "quantised": 8.0 * rng.integers(1, 5, (n, 6)),
            "zeros": np.where(np.arange(6) == 0, 0.0, clean), "busy": busy, "busy_slow": 10 * busy}[kind]


def _run_stage(tmp_path, monkeypatch, kinds: list[str], **latency):
    """Run pipeline.profile in-process, measurement i with timings of kind kinds[i] (:func:`_samples`;
    the real layers are run once for their names and shapes, the timings are synthetic)."""
    from pipeline import profile as stage

    params = {"variants": {"one_branch": {"branches": ["relu1"], "exit_weights": [1.0, 0.3]}},
              "latency": {**LATENCY, **latency}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    real = latency_measure.measure_layers
    calls = {"edge": 0}

    def fake(model, device="cpu", threads=None, warmup=10, repeats=50, only=None, log=None):
        times = real(model, device, threads, 0, 1, only, log)
        if log is not None and "branch1" in (only or ()):  # the edge's measurement starts every attempt
            calls["edge"] += 1
        n = len(times.layer)
        attempt = calls["edge"] - 1
        kind = kinds[min(attempt, len(kinds) - 1)]
        samples = _samples(kind, n, np.random.default_rng(attempt))
        if log is None:  # the cloud's layers with the edge's threads (check c): like a clean edge
            samples = _samples("clean", n, np.random.default_rng(attempt))
        return latency_measure.LayerTimes(times.layer, times.part, times.output_elements,
                                          samples.astype(float), times.device, times.threads)

    monkeypatch.setattr(latency_measure, "measure_layers", fake)
    stage.main("one_branch")
    return json.loads((tmp_path / "data/profile/one_branch.json").read_text()), calls["edge"]


def test_stage_clean_measurement_is_kept_at_once(tmp_path, monkeypatch, capsys) -> None:
    summary, measured = _run_stage(tmp_path, monkeypatch, ["clean"], remeasure=2)
    assert measured == 1
    assert summary["warnings"] == []
    assert summary["checks"]["measurements"] == 1 and summary["checks"]["kept"] == 1
    assert summary["checks"]["max_measurements"] == 3
    assert "profile one_branch: timed trunk on cpu" in capsys.readouterr().out


def test_stage_remeasures_until_clean(tmp_path, monkeypatch, capsys) -> None:
    summary, measured = _run_stage(tmp_path, monkeypatch, ["quantised", "busy", "clean"], remeasure=2)
    assert measured == 3
    assert summary["warnings"] == []  # the third measurement passed; the JSON says it took three
    assert summary["checks"]["measurements"] == 3 and summary["checks"]["kept"] == 3
    out = capsys.readouterr().out
    assert "warning: edge timings are quantised" in out
    assert "measuring again (2 of at most 3)" in out and "measuring again (3 of at most 3)" in out


def test_stage_warns_when_every_measurement_is_disturbed(tmp_path, monkeypatch) -> None:
    summary, measured = _run_stage(tmp_path, monkeypatch, ["quantised"], remeasure=1)
    assert measured == 2  # bounded: one re-measurement
    assert summary["checks"]["measurements"] == 2
    warnings = summary["warnings"]
    assert any(w.startswith("edge timings are quantised") for w in warnings)
    assert any(w.startswith("cloud timings are quantised") for w in warnings)
    assert warnings[-1].startswith("the profile was measured 2 times and every measurement failed a check")
    assert all(isinstance(w, str) and "\n" not in w for w in warnings)


def test_stage_remeasure_zero_only_warns(tmp_path, monkeypatch) -> None:
    summary, measured = _run_stage(tmp_path, monkeypatch, ["quantised"], remeasure=0)
    assert measured == 1 and summary["checks"]["max_measurements"] == 1
    assert summary["warnings"] and not any("the profile was measured" in w for w in summary["warnings"])


def test_stage_keeps_the_least_disturbed_measurement(tmp_path, monkeypatch) -> None:
    # every measurement too spread; the second is the fastest (a busy machine only adds time)
    summary, measured = _run_stage(tmp_path, monkeypatch, ["busy_slow", "busy", "busy_slow"], remeasure=2)
    assert measured == 3 and summary["checks"]["kept"] == 2
    assert summary["cloud_ms"] < 20 * 0.4  # the busy medians (<= 0.33 ms per layer), not 10x those
    assert summary["warnings"][-1].endswith("the numbers are from measurement 2, the least disturbed")
    assert summary["spread"]["edge"] > 0.5 and summary["spread"]["cloud"] > 0.5


def test_stage_prefers_a_measurement_on_a_sound_clock(tmp_path, monkeypatch) -> None:
    # the second reads zeros (faster, but the clock did not advance): the first is kept
    summary, _ = _run_stage(tmp_path, monkeypatch, ["busy", "zeros"], remeasure=1)
    assert summary["checks"]["kept"] == 1
    assert any("spread too much" in w for w in summary["warnings"])


# --- the re-measure policy alone (eeoffload.latency_profile), on made-up measurements -----------

def _measurement(warnings: list[str], quantised: bool = False, total_ms: float = 1.0):
    from eeoffload.latency_profile import Measurement

    return Measurement(None, None, warnings, {"edge": None, "cloud": None}, quantised, total_ms)


def test_policy_stops_at_the_first_clean_measurement() -> None:
    from eeoffload.latency_profile import measure_until_clean

    queue = [_measurement(["busy"]), _measurement([]), _measurement(["never measured"])]
    lines: list[str] = []
    result = measure_until_clean(lambda: queue.pop(0), remeasure=5, log=lines.append)
    assert len(result.attempts) == 2 and result.kept == 1 and result.warnings == []
    assert lines == ["warning: busy", "disturbed measurement; measuring again (2 of at most 6)",
                     "measurement 2 passed the checks"]


def test_policy_keeps_the_least_disturbed_and_says_so() -> None:
    from eeoffload.latency_profile import checks_record, least_disturbed, measure_until_clean

    attempts = [_measurement(["a"], quantised=True, total_ms=0.5), _measurement(["b"], total_ms=3.0),
                _measurement(["c"], total_ms=2.0)]
    assert least_disturbed(attempts) == 2  # not quantised beats faster; then the fastest
    queue = list(attempts)
    result = measure_until_clean(lambda: queue.pop(0), remeasure=2, log=lambda _: None)
    assert result.kept == 2 and result.best is attempts[2]
    assert result.warnings == ["c", "the profile was measured 3 times and every measurement failed a check; "
                                    "the numbers are from measurement 3, the least disturbed"]
    record = checks_record(result, remeasure=2, compare=True)
    assert (record["measurements"], record["kept"], record["max_measurements"]) == (3, 3, 3)


def test_policy_without_remeasuring_only_warns() -> None:
    from eeoffload.latency_profile import measure_until_clean

    result = measure_until_clean(lambda: _measurement(["x"]), remeasure=0, log=lambda _: None)
    assert len(result.attempts) == 1 and result.warnings == ["x"]
