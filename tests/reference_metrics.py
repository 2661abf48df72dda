"""Plain-loop reference for the offloading metrics of ``eeoffload.offload`` (paper III, IV-B..E).

One Python loop per p_tar, per sample and per batch, written straight from the definitions, to
check the vectorised implementation (equality) and measure its speed-up. Inputs follow
``eeoffload.offload``: ``confidence`` and ``correct`` are (n_exits, N), the last row the final exit.

    python -m tests.reference_metrics [--n 7000] [--p 99] [--t 301] [--resamples 20]

prints both timings and fails (exit status 1) if the results differ.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from eeoffload import offload


def reference_exit(side_confidence: Sequence[float], p_tar: float) -> int:
    """First side branch whose confidence is >= p_tar, len(side_confidence) if none (offloaded)."""
    for k, conf in enumerate(side_confidence):
        if conf >= p_tar:
            return k
    return len(side_confidence)


def _per_sample(confidence: Any, correct: Any) -> tuple[list[list[float]], list[list[bool]]]:
    conf = np.asarray(confidence, dtype=np.float64).T.tolist()
    corr = np.asarray(correct, dtype=bool).T.tolist()
    return conf, corr


def reference_device_metrics(confidence: Any, correct: Any, p_tar: Sequence[float]) -> dict[str, list[float]]:
    conf, corr = _per_sample(confidence, correct)
    n = len(conf)
    out: dict[str, list[float]] = {"p_device": [], "conf_device": [], "acc_device": [], "acc_total": []}
    for p in p_tar:
        n_device = conf_sum = device_right = total_right = 0
        for c, r in zip(conf, corr):
            k = reference_exit(c[:-1], p)
            total_right += r[k]
            if k < len(c) - 1:
                n_device += 1
                conf_sum += c[k]
                device_right += r[k]
        out["p_device"].append(n_device / n)
        out["conf_device"].append(conf_sum / n_device if n_device else math.nan)
        out["acc_device"].append(device_right / n_device if n_device else math.nan)
        out["acc_total"].append(total_right / n)
    return out


def _batches(order: Sequence[int], batch_size: int) -> list[list[int]]:
    order = list(order)
    return [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]


def reference_outage(
    confidence: Any, correct: Any, p_tar: Sequence[float], order: Sequence[int], batch_size: int
) -> tuple[list[float], list[int]]:
    conf, corr = _per_sample(confidence, correct)
    outages, counted = [], []
    for p in p_tar:
        n_counted = n_outage = 0
        for batch in _batches(order, batch_size):
            n_device = device_right = 0
            for s in batch:
                k = reference_exit(conf[s][:-1], p)
                if k < len(conf[s]) - 1:
                    n_device += 1
                    device_right += corr[s][k]
            if n_device == 0:
                continue
            n_counted += 1
            if device_right / n_device < p:
                n_outage += 1
        outages.append(n_outage / n_counted if n_counted else math.nan)
        counted.append(n_counted)
    return outages, counted


def reference_resampled_outage(
    confidence: Any, correct: Any, p_tar: Sequence[float], orders: Any, batch_size: int
) -> tuple[list[float], list[float], list[float]]:
    per_order = [reference_outage(confidence, correct, p_tar, order, batch_size)[0] for order in orders]
    mean, low, high = [], [], []
    for j in range(len(p_tar)):
        values = [row[j] for row in per_order if not math.isnan(row[j])]
        if not values:
            mean.append(math.nan), low.append(math.nan), high.append(math.nan)
            continue
        mean.append(sum(values) / len(values))
        low.append(float(np.percentile(values, 2.5)))
        high.append(float(np.percentile(values, 97.5)))
    return mean, low, high


def reference_missed_deadline(
    confidence: Any,
    correct: Any,
    p_tar: Sequence[float],
    t_tar_ms: Sequence[float],
    exit_ms: Sequence[float],
    order: Sequence[int],
    batch_size: int,
) -> list[list[float]]:
    conf, corr = _per_sample(confidence, correct)
    batches = _batches(order, batch_size)
    result = []
    for p in p_tar:
        mean_times, accuracies = [], []
        for batch in batches:
            time_sum = 0.0
            right = 0
            for s in batch:
                k = reference_exit(conf[s][:-1], p)
                time_sum += exit_ms[k]
                right += corr[s][k]
            mean_times.append(time_sum / len(batch))
            accuracies.append(right / len(batch))
        row = []
        for t in t_tar_ms:
            missed = sum(1 for m, a in zip(mean_times, accuracies) if m > t or a < p)
            row.append(missed / len(batches) if batches else math.nan)
        result.append(row)
    return result


def random_case(n: int, n_exits: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random (confidence, correct) with correctness more likely at high confidence."""
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.1, 1.0, size=(n_exits, n))
    correct = rng.uniform(size=(n_exits, n)) < confidence
    return confidence, correct


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=7000)
    parser.add_argument("--exits", type=int, default=3)
    parser.add_argument("--p", type=int, default=99)
    parser.add_argument("--t", type=int, default=301)
    parser.add_argument("--resamples", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    confidence, correct = random_case(args.n, args.exits, args.seed)
    p_tar = np.round(np.linspace(0.5, 0.99, args.p), 10)
    t_tar = np.linspace(0.0, 150.0, args.t)
    exit_ms = np.linspace(5.0, 120.0, args.exits) + 0.123
    order = offload.sample_order(args.n, "shuffled", args.seed)
    orders = offload.resample_orders(args.n, args.resamples, args.seed)

    def vectorised() -> list[np.ndarray]:
        m = offload.device_metrics(confidence, correct, p_tar)
        out, counted = offload.outage_probability(confidence, correct, p_tar, order, args.batch_size)
        res = offload.resampled_outage(confidence, correct, p_tar, orders, args.batch_size)
        md = offload.missed_deadline_probability(confidence, correct, p_tar, t_tar, exit_ms, order, args.batch_size)
        return [*m.values(), out, counted, *res, md]

    def reference() -> list[np.ndarray]:
        m = reference_device_metrics(confidence, correct, p_tar)
        out, counted = reference_outage(confidence, correct, p_tar, order, args.batch_size)
        res = reference_resampled_outage(confidence, correct, p_tar, orders, args.batch_size)
        md = reference_missed_deadline(confidence, correct, p_tar, t_tar, exit_ms, order, args.batch_size)
        return [np.asarray(x, dtype=np.float64) for x in (*m.values(), out, counted, *res, md)]

    start = time.perf_counter()
    fast = vectorised()
    fast_s = time.perf_counter() - start
    start = time.perf_counter()
    slow = reference()
    slow_s = time.perf_counter() - start
    equal = all(np.allclose(a, b, rtol=1e-12, atol=1e-12, equal_nan=True) for a, b in zip(fast, slow))
    print(f"vectorised {fast_s:.3f} s, reference {slow_s:.3f} s, speed-up {slow_s / fast_s:.0f}x, equal: {equal}")
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
