"""Figure 4: fixed cost of every stage command: interpreter start, imports, reading and validating params.yaml
(goal: at most 3 s each), the heaviest imports (``python -X importtime``), and whether MLflow,
Prefect, seaborn or matplotlib get imported by a stage that does not need them.

    python -m benchmarks.startup [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Sequence

from benchmarks import ROOT, figure, note, run_python

BENCH = "startup"
STAGES = ("prepare", "train", "logits", "calibrate", "profile", "evaluate", "trajectory", "plots", "report")
HEAVY = ("mlflow", "prefect", "seaborn", "matplotlib", "torch", "pandas", "pyarrow", "scipy", "jinja2")
NEEDS = {"plots": {"seaborn", "matplotlib"}}  # the only stage that draws
GOAL = "<= 3 s per stage"
OWN = {"pipeline", "eeoffload", "encodings", "site", "json"}


# What each stage does with params.yaml before its work (validation); a name missing in a future
# version of the stage is skipped, so this stays a start-up measurement.
CONFIG = {
    "train": "P.train_params(p); P.variant_params(p, next(iter(p['variants'])))",
    "logits": "P.variant_params(p, next(iter(p['variants'])))",
    "evaluate": "m.evaluate_params(p)",
}


def startup_code(stage: str) -> str:
    config = CONFIG.get(stage, "None")
    return (f"import sys, json, importlib; m = importlib.import_module('pipeline.{stage}'); "
            f"import pipeline.core.params as P; from pipeline.core.io import read_params; p = read_params()\n"
            f"try:\n    {config}\nexcept AttributeError:\n    pass\n"
            f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))")


def top_imports(stderr: str, count: int = 4) -> list[tuple[str, float]]:
    """Third-party top-level packages by cumulative import time (s), from ``-X importtime`` output
    (the first, i.e. the real, import of each; our own pipeline/eeoffload packages left out)."""
    totals: dict[str, float] = {}
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)", line)
        if m and "." not in m.group(2) and m.group(2) not in OWN and not m.group(2).startswith("_"):
            totals.setdefault(m.group(2), int(m.group(1)) / 1e6)
    return sorted(totals.items(), key=lambda kv: -kv[1])[:count]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    start = time.perf_counter()
    run_python(["-c", "pass"], ROOT)
    bare = min(_timed(["-c", "pass"]) for _ in range(args.repeats))
    note(BENCH, f"bare interpreter start: {bare:.2f} s")
    worst, misplaced = 0.0, []
    for stage in STAGES:
        seconds = min(_timed(["-c", startup_code(stage)]) for _ in range(args.repeats))
        proc = run_python(["-X", "importtime", "-c", startup_code(stage)], ROOT)
        if proc.returncode != 0:
            figure(BENCH, f"{stage}: import failed: {proc.stderr.strip().splitlines()[-1:]}", GOAL, False)
            worst = float("inf")
            continue
        loaded = json.loads(proc.stdout.strip().splitlines()[-1])
        unneeded = [m for m in loaded if m in ("mlflow", "prefect", "seaborn", "matplotlib")
                    and m not in NEEDS.get(stage, set())]
        misplaced += [f"{stage}:{m}" for m in unneeded]
        tops = ", ".join(f"{n} {s:.2f}" for n, s in top_imports(proc.stderr))
        figure(BENCH, f"{stage}: {seconds:.2f} s start-up (heaviest imports, s: {tops}; "
                      f"loaded: {', '.join(loaded) or 'none of ' + '/'.join(HEAVY)})", GOAL, seconds <= 3.0)
        worst = max(worst, seconds)
    figure(BENCH, f"MLflow / Prefect / seaborn / matplotlib imported only where needed: "
                  f"{'yes' if not misplaced else 'no: ' + ', '.join(misplaced)}", "only where needed", not misplaced)
    note(BENCH, f"slowest stage start-up {worst:.2f} s ({time.perf_counter() - start:.0f} s for this benchmark)")
    return 0


def _timed(args: list[str]) -> float:
    start = time.perf_counter()
    proc = run_python(args, ROOT)
    elapsed = time.perf_counter() - start
    return elapsed if proc.returncode == 0 else float("inf")


if __name__ == "__main__":
    raise SystemExit(main())
