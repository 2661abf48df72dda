"""Figure 2: the whole evaluate grid, vectorised (eeoffload.offload) vs the plain-loop reference
(tests/reference_metrics.py, the oracle the tests use), results checked equal; and the evaluate stage's wall time on
synthetic full-size inputs.

    python -m benchmarks.metrics_engine [--ref-resamples 3]

The grid is params.yaml's: every variant x {conventional, calibrated} x the p_tar grid (outage,
resampled outage, device metrics) x the t_tar grid for each deadline p_tar x R re-batchings, on
7000 synthetic test samples. The plain loop needs minutes per re-batching set, so it runs the full
grid with only ``--ref-resamples`` of the R re-batchings: the speed ratio is measured on exactly
that problem (both sides timed), and the full-R reference time is extrapolated (stated as such).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from benchmarks import ROOT, figure, note, timed_stage
from tests import reference_metrics as ref
from eeoffload import offload
from eeoffload.calibrator_state import run_state
from eeoffload.calibrators import Temperature

BENCH = "metrics_engine"
N_TEST, N_VAL, N_CLASSES = 7000, 3000, 10


def grid_params() -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())

    def grid(spec: dict) -> np.ndarray:
        n = int(np.floor((spec["stop"] - spec["start"]) / spec["step"] + 1e-9)) + 1
        return np.round(spec["start"] + spec["step"] * np.arange(n), 10)

    ev = params["evaluate"]
    return {
        "variants": {v: len(spec["branches"]) + 1 for v, spec in params["variants"].items()},
        "p_tar": grid(ev["p_tar"]), "t_tar": grid(ev["t_tar_ms"]),
        "deadline_p_tar": np.round(np.array(ev["deadline_p_tar"], dtype=np.float64), 10),
        "batch_size": ev["batch_size"], "resamples": ev["resamples"], "seed": ev["seed"],
        "batch_order": ev["batch_order"], "params": params,
    }


def synthetic_logits(n: int, n_exits: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_exits, n, 10) float32 logits, later exits more often right, and labels (n,)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, N_CLASSES, n)
    logits = rng.normal(0, 1.5, size=(n_exits, n, N_CLASSES)).astype(np.float32)
    for k in range(n_exits):
        logits[k, np.arange(n), labels] += 1.0 + 1.5 * k / max(n_exits - 1, 1) + rng.normal(0, 1.5, n)
    return logits, labels


def cases(g: dict) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, confidence, correct) for every variant x calibration."""
    out = []
    for i, (variant, n_exits) in enumerate(g["variants"].items()):
        logits, labels = synthetic_logits(N_TEST, n_exits, i)
        for name, temps in (("conventional", [1.0] * n_exits), ("calibrated", [1.3 + 0.2 * k for k in range(n_exits)])):
            conf, correct = offload.exit_confidence(logits, labels, temps)
            out.append((f"{variant}/{name}", conf, correct))
    return out


#: The device metrics both implementations compute (offload.device_metrics also returns counts).
DEVICE_KEYS = ("p_device", "conf_device", "acc_device", "acc_total")


def vectorised(conf, correct, g, order, orders, exit_ms) -> list[np.ndarray]:
    p, bs = g["p_tar"], g["batch_size"]
    m = offload.device_metrics(conf, correct, p)
    m = {k: m[k] for k in DEVICE_KEYS}
    out, counted = offload.outage_probability(conf, correct, p, order, bs)
    res = offload.resampled_outage(conf, correct, p, orders, bs)
    md = offload.missed_deadline_probability(conf, correct, g["deadline_p_tar"], g["t_tar"], exit_ms, order, bs)
    return [*m.values(), out, counted, *res, md]


def reference(conf, correct, g, order, orders, exit_ms) -> list[np.ndarray]:
    p, bs = g["p_tar"], g["batch_size"]
    m = ref.reference_device_metrics(conf, correct, p)
    m = {k: m[k] for k in DEVICE_KEYS}
    out, counted = ref.reference_outage(conf, correct, p, order, bs)
    res = ref.reference_resampled_outage(conf, correct, p, orders, bs)
    md = ref.reference_missed_deadline(conf, correct, g["deadline_p_tar"], g["t_tar"], exit_ms, order, bs)
    return [np.asarray(x, dtype=np.float64) for x in (*m.values(), out, counted, *res, md)]


def write_stage_inputs(folder: Path, g: dict) -> list[int]:
    """Full-size synthetic inputs of the evaluate stage for every seed of params.yaml's train.seeds
    (logits parquet and calibration JSON per run, a profile JSON per variant); returns the seeds."""
    import pandas as pd

    from pipeline.core import registry as R

    (folder / "params.yaml").write_text(yaml.safe_dump(g["params"], sort_keys=False))
    seeds = list(g["params"]["train"]["seeds"])
    for i, (variant, n_exits) in enumerate(g["variants"].items()):
        for seed in seeds:
            logits, labels = synthetic_logits(N_VAL + N_TEST, n_exits, 100 * i + seed)
            frames = []
            for k in range(n_exits):
                frame = pd.DataFrame({"sample_id": np.arange(N_VAL + N_TEST, dtype=np.int64),
                                      "split": np.where(np.arange(N_VAL + N_TEST) < N_VAL, "val", "test"),
                                      "label": labels.astype(np.int64), "exit": np.int64(k + 1)})
                for c in range(N_CLASSES):
                    frame[f"logit_{c}"] = logits[k, :, c]
                frames.append(frame)
            for path in (R.logits_path(variant, seed), R.calibration_path(variant, seed)):
                (folder / path).parent.mkdir(parents=True, exist_ok=True)
            pd.concat(frames, ignore_index=True).to_parquet(folder / R.logits_path(variant, seed), index=False)
            temps = [1.3 + 0.2 * k for k in range(n_exits)]
            state = run_state("temperature", [Temperature(t) for t in temps])
            (folder / R.calibration_path(variant, seed)).write_text(json.dumps(state))
        profile = {"device_ms_to_exit": {str(k + 1): 2.0 + 3.0 * k for k in range(n_exits - 1)},
                   "offload_edge_ms": 3.0 * n_exits, "upload_bytes": 32768.0, "cloud_ms": 4.0}
        (folder / R.profile_path(variant)).parent.mkdir(parents=True, exist_ok=True)
        (folder / R.profile_path(variant)).write_text(json.dumps(profile))
    return seeds


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref-resamples", type=int, default=3, help="re-batchings the plain loop runs")
    ap.add_argument("--no-stage", action="store_true", help="skip the evaluate stage run")
    args = ap.parse_args(argv)
    g = grid_params()
    R, r = g["resamples"], min(args.ref_resamples, g["resamples"])
    order = offload.sample_order(N_TEST, g["batch_order"], g["seed"])
    orders = offload.resample_orders(N_TEST, R, g["seed"])
    exit_ms_of = lambda n_exits: np.array([2.0 + 3.0 * k for k in range(n_exits - 1)] + [60.123])  # noqa: E731
    all_cases = cases(g)
    note(BENCH, f"grid: {len(all_cases)} variant x calibration cases, {len(g['p_tar'])} p_tar, "
                f"{len(g['deadline_p_tar'])} deadline p_tar x {len(g['t_tar'])} t_tar, R = {R}, N = {N_TEST}, "
                f"batch {g['batch_size']}")

    start = time.perf_counter()
    for _, conf, correct in all_cases:
        vectorised(conf, correct, g, order, orders, exit_ms_of(conf.shape[0]))
    full_vec_s = time.perf_counter() - start

    vec_s = ref_s = ref_resampled_s = 0.0
    equal = True
    for name, conf, correct in all_cases:
        ms = exit_ms_of(conf.shape[0])
        start = time.perf_counter()
        fast = vectorised(conf, correct, g, order, orders[:r], ms)
        vec_s += time.perf_counter() - start
        start = time.perf_counter()
        slow = reference(conf, correct, g, order, orders[:r], ms)
        ref_s += time.perf_counter() - start
        start = time.perf_counter()
        ref.reference_resampled_outage(conf, correct, g["p_tar"], orders[:1], g["batch_size"])
        ref_resampled_s += time.perf_counter() - start
        same = all(np.allclose(a, b, rtol=1e-12, atol=1e-12, equal_nan=True) for a, b in zip(fast, slow, strict=True))
        if not same:
            note(BENCH, f"{name}: vectorised and reference results DIFFER")
        equal &= same
    figure(BENCH, f"vectorised results equal to the plain-loop reference on all {len(all_cases)} cases "
                  f"(full grids, {r} re-batchings): {equal}", "equal", equal)
    ratio = ref_s / vec_s
    figure(BENCH, f"speed-up {ratio:.0f}x (measured on the same problem: reference {ref_s:.1f} s, "
                  f"vectorised {vec_s:.3f} s)", ">= 20x", ratio >= 20)
    ref_full_s = ref_s + (R - r) * ref_resampled_s
    note(BENCH, f"full grid with R = {R}: vectorised {full_vec_s:.2f} s; reference extrapolated "
                f"{ref_full_s / 60:.0f} min ({ref_resampled_s:.1f} s per re-batching) -> {ref_full_s / full_vec_s:.0f}x")

    if not args.no_stage:
        folder = Path(tempfile.mkdtemp(prefix="eeoffload-bench-evaluate-"))
        try:
            seeds = write_stage_inputs(folder, g)
            timed = timed_stage(BENCH, ["evaluate"], folder, "< 5 s per seed", "evaluate stage on synthetic inputs")
            if timed is None:
                return 1
            stage_s, _ = timed
            per_seed = stage_s / len(seeds)
            figure(BENCH, f"evaluate stage wall time (python -m pipeline evaluate, full-size synthetic inputs, "
                          f"{len(g['variants'])} variants x {len(seeds)} seeds with the seed aggregates, start-up "
                          f"included): {stage_s:.1f} s = {per_seed:.1f} s per seed", "< 5 s per seed", per_seed < 5)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return 0 if equal else 1


if __name__ == "__main__":
    raise SystemExit(main())
