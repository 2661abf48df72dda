"""Section III's decision rule is counted in one place (eeoffload.offload) and equals the
plain-loop oracle of tests/reference_metrics.py (issue 22).

1. The core (``exit_bounds``, ``first_confident_exit``, ``is_confident``) equals
   ``reference_exit`` on random data, 1-3 side exits, several thresholds, confidences on the grid.
2. A source scan: the comparison that decides an exit, and the upload formula, are written once.
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import numpy as np
import pytest

from eeoffload import offload
from tests import reference_metrics as ref

GRIDS = [np.array([0.5]), np.array([0.9, 0.3, 0.6, 0.6, 0.75]), np.round(np.linspace(0.05, 1.0, 20), 10)]


def _data(n_side: int, seed: int, n: int = 300) -> np.ndarray:
    rng = np.random.default_rng(seed)
    side = rng.uniform(0.0, 1.0, size=(n_side, n))
    side[:, : n // 3] = rng.choice(GRIDS[2], size=(n_side, n // 3))  # exactly on thresholds: >= keeps them
    return side


@pytest.mark.parametrize("n_side", [1, 2, 3])
@pytest.mark.parametrize("grid", GRIDS, ids=["one", "unsorted-with-ties", "twenty"])
def test_core_equals_the_plain_loop_oracle(n_side: int, grid: np.ndarray) -> None:
    side = _data(n_side, seed=n_side)
    expected = np.array([[ref.reference_exit(side[:, s].tolist(), p) for p in grid] for s in range(side.shape[1])])
    np.testing.assert_array_equal(offload.first_confident_exit(side, grid), expected)
    # The interval form: exit k for the ascending grid's indices [bounds[k], bounds[k+1]).
    ascending = np.sort(grid, kind="stable")
    bounds = offload.exit_bounds(side, ascending)
    assert bounds.shape == (n_side + 2, side.shape[1])
    for i, p in enumerate(ascending):
        from_bounds = ((bounds[:-1] <= i) & (i < bounds[1:])).argmax(axis=0)
        np.testing.assert_array_equal(from_bounds, [ref.reference_exit(side[:, s].tolist(), p)
                                                    for s in range(side.shape[1])])
    # One threshold per side branch: the oracle with each branch's own threshold.
    vectors = np.stack([np.roll(np.resize(grid, n_side), j) for j in range(3)])  # (3, n_side)
    by_branch = offload.first_confident_exit(side, vectors)
    for j, vec in enumerate(vectors):
        want = [next((k for k in range(n_side) if side[k, s] >= vec[k]), n_side) for s in range(side.shape[1])]
        np.testing.assert_array_equal(by_branch[:, j], want)
    shared = offload.first_confident_exit(side, np.repeat(grid[:, None], n_side, axis=1))
    np.testing.assert_array_equal(shared, expected)


@pytest.mark.parametrize("n_side", [1, 2, 3])
def test_one_sample_rule_equals_the_core(n_side: int) -> None:
    """eeoffload.partition decides one sample at a time with is_confident, branch by branch."""
    side = _data(n_side, seed=10 + n_side, n=60)
    for s in range(side.shape[1]):
        for p in GRIDS[1]:
            one = next((k for k in range(n_side) if offload.is_confident(float(side[k, s]), float(p))), n_side)
            assert one == offload.first_confident_exit(side[:, s:s + 1], [p])[0, 0] == ref.reference_exit(
                side[:, s].tolist(), p)


# --------------------------------------------------------------------------- written once (source scan)
#
# Pragmatic: the library, the stages and the benchmarks are scanned as code tokens (comments and
# strings dropped, tokens joined by one space) for the shapes the copies had before issue 22. The
# patterns are checked on those old copies below, so a re-coded rule or formula in the usual shape
# fails here; a differently spelled copy would not (review catches those).

ROOT = Path(__file__).resolve().parent.parent
#: The decision rule: a confidence compared with a threshold, or the running maximum of the
#: side-branch confidences (the rule's interval form).
RULE = re.compile(r"maximum \. accumulate|greater_equal|conf\w*( \[[^\]]*\])? >=|>= (p_tar|p|threshold|lam\w*|vec)\b")
#: The upload formula: bytes to bits (``* 8``) and the offloaded sum (``... + rtt_ms + ...``).
UPLOAD = re.compile(r"\* 8(\.0)?\b|\+ rtt\w*|\brtt\w* \+")
RULE_HOME = "src/eeoffload/offload.py"
UPLOAD_HOME = "src/eeoffload/latency.py"
#: Not the model: stage measure_link's edge measures its throughput (bytes * 8 / seconds).
UPLOAD_ALLOWED = {"pipeline/link/edge.py"}


def _code(text: str) -> str:
    skip = {tokenize.COMMENT, tokenize.STRING, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    skip |= {getattr(tokenize, n) for n in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END") if hasattr(tokenize, n)}
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    return " ".join(t.string for t in tokens if t.type not in skip)


def _hits(pattern: re.Pattern[str]) -> dict[str, list[str]]:
    files = [p for d in ("src", "pipeline", "benchmarks") for p in sorted((ROOT / d).rglob("*.py"))]
    found = {str(p.relative_to(ROOT)): [m.group(0) for m in pattern.finditer(_code(p.read_text(encoding="utf-8")))]
             for p in files}
    return {k: v for k, v in found.items() if v}


@pytest.mark.parametrize("old_copy", [
    "if float(confidence) >= p_tar:\n",  # partition.py
    "side_ok = conf[:-1] >= threshold\n",  # certify.batch_outage
    "confident = conf[:-1] >= vec[:, None]\n",  # certify.device_counts_vectors
    "running = np.maximum.accumulate(conf[:-1], axis=0)\n",  # certify.device_counts
])
def test_the_rule_pattern_finds_the_old_copies(old_copy: str) -> None:
    assert RULE.search(_code(old_copy))


@pytest.mark.parametrize("old_copy", [
    'transfer = out["payload_bytes"] * 8.0 / (mbps * 1e6) * 1e3\n',  # pipeline/link/analysis.py
    'offloaded_ms = profile["offload_edge_ms"] + transfer + rtt_ms + profile["cloud_ms"]\n',
    "offloaded = offload_edge_ms + transfer_ms(trace, t, upload_bytes) + rtt_ms + cloud_ms\n",  # link_model
    "bits, t = float(nbytes) * 8.0, float(start_s)\n",  # link_model.transfer_ms
])
def test_the_upload_pattern_finds_the_old_copies(old_copy: str) -> None:
    assert UPLOAD.search(_code(old_copy))


def test_the_decision_rule_is_coded_only_in_offload() -> None:
    assert set(_hits(RULE)) == {RULE_HOME}


def test_the_upload_formula_is_coded_only_in_latency() -> None:
    hits = _hits(UPLOAD)
    assert set(hits) - UPLOAD_ALLOWED == {UPLOAD_HOME}
    assert len(hits[UPLOAD_HOME]) == 2, hits[UPLOAD_HOME]  # upload_bits' * 8.0, offload_path_ms' + rtt_ms


def test_the_latency_breakdown_sums_to_the_latency_model() -> None:
    from eeoffload import latency

    profile = latency.LatencyProfile(device_ms_to_exit=[1.5, 4.0], offload_edge_ms=3.0, upload_bytes=23500, cloud_ms=5.0)
    parts = latency.exit_breakdown_ms(profile, 18.8, 2.0)
    assert [sorted(p) for p in parts] == [["edge"], ["edge"], ["cloud", "edge", "rtt", "upload"]]
    assert parts[-1]["upload"] == latency.upload_ms(23500, 18.8)
    np.testing.assert_array_equal([sum(p.values()) for p in parts], profile.exit_ms(18.8, 2.0))


def test_latency_does_not_import_the_timing_code() -> None:
    """latency_measure imports latency; latency imports neither it nor torch (no import cycle)."""
    import ast

    tree = ast.parse((ROOT / "src/eeoffload/latency.py").read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m and (m.startswith("torch") or m == "eeoffload.latency_measure")}
