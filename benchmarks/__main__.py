"""``python -m benchmarks [NAME ...]``: run the named benchmarks (default: all but the opt-in ones),
one after another (never two heavy ones at once), each printing its figures with their goals.

    python -m benchmarks                      # training_cpu training_bf16 training_batched metrics_engine incremental startup certify shift gpu sweep_cluster
    python -m benchmarks time_to_result       # opt-in: the quick recipe end to end (~30 min, needs CIFAR10_ARCHIVE)
    python -m benchmarks sweep_workers        # 4-point tiny sweep over 1 vs 2 process workers (~4 min on 2 cores)
    python -m benchmarks sweep_cluster        # the same on this machine and on the namespaced cluster (root; ~8 min)
    python -m benchmarks training_cpu --compile   # options after a single name go to that benchmark
"""

from __future__ import annotations

import importlib
import sys
import time

DEFAULT = ("training_cpu", "training_bf16", "training_batched", "metrics_engine", "incremental", "startup", "certify", "shift", "gpu",
           "sweep_cluster")
OPT_IN = ("time_to_result", "sweep_workers")  # sweep_cluster includes sweep_workers' single-machine figure


def main(argv: list[str]) -> int:
    names = [a for a in argv if not a.startswith("-")][:1] if any(a.startswith("-") for a in argv) else argv
    extra = argv[1:] if names and len(argv) > 1 and any(a.startswith("-") for a in argv) else []
    if not names:
        names = list(DEFAULT)
    unknown = [n for n in names if n not in DEFAULT + OPT_IN]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; known: {', '.join(DEFAULT + OPT_IN)}", file=sys.stderr)
        return 2
    status = 0
    for name in names:
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        module = importlib.import_module(f"benchmarks.{name}")
        rc = module.main(extra)
        print(f"== {name}: {time.perf_counter() - start:.0f} s", flush=True)
        status = status or rc
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
