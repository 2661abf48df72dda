"""bf16 vs fp32 training step on the CPU, side by side in one process, and the kernel ISA that ran.

    python -m benchmarks.training_bf16 [--steps 2] [--alternations 3] [--batches 512,128]

The step is the pipeline's own ``eeoffload.training.train_epoch`` (one_branch, Adam, no
augmentation) on synthetic in-memory images, ``precision`` fp32 and bf16 (autocast around the
forward; fp32 loss, weights and Adam state; LRN in fp32) alternated in the same process after one
warm-up epoch of each; per batch size the figure is the median over the alternations of the fp32
step time over the bf16 one. The ISA: one bf16 training step of the same model in a subprocess
with ``ONEDNN_VERBOSE=1``; the ``isa:`` info line and the implementation names of the
convolution and matmul primitives that ran (e.g. ``brg_conv_fwd:avx512_core_bf16``;
``avx512_core_amx`` on AMX machines) are printed.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time
from collections.abc import Sequence

import torch

from benchmarks import ROOT, figure, note, project_env, run_python
from eeoffload.model import BAlexNet
from eeoffload.training import train_epoch

BENCH = "training_bf16"
GOAL = ">= 1.5x"
BRANCHES, WEIGHTS = ["relu1"], [1.0, 0.3]


def parse_onednn_verbose(text: str) -> tuple[str, dict[str, list[str]]]:
    """(the ISA oneDNN reports, {primitive kind: implementation names in order of first use}) from
    ``ONEDNN_VERBOSE=1`` output; ISA '' if no info line. Only convolution, matmul and inner product
    primitives are collected (reorders say nothing about the compute ISA)."""
    isa = ""
    impls: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.strip().split(",")
        if not fields or not fields[0].startswith("onednn_verbose"):
            continue
        m = re.search(r",info,cpu,isa:(.*)$", line.strip())
        if m:
            isa = m.group(1).strip()
            continue
        if "exec" in fields and "cpu" in fields:
            at = fields.index("cpu")
            if at + 2 < len(fields) and fields[at + 1] in ("convolution", "matmul", "inner_product"):
                kind, impl = fields[at + 1], fields[at + 2]
                if impl not in impls.setdefault(kind, []):
                    impls[kind].append(impl)
    return isa, impls


def isa_worker() -> int:
    """One bf16 training step of the model (run with ONEDNN_VERBOSE=1 by the parent)."""
    torch.manual_seed(0)
    model = BAlexNet(BRANCHES).to(memory_format=torch.channels_last)
    x = torch.randn(32, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (32,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_epoch(model, opt, x, y, WEIGHTS, 32, torch.Generator().manual_seed(0), "none", precision="bf16")
    return 0


def kernel_isa() -> tuple[str, dict[str, list[str]]]:
    proc = run_python(["-m", "benchmarks.training_bf16", "--isa-worker"], ROOT,
                      env=project_env({"ONEDNN_VERBOSE": "1"}))
    if proc.returncode != 0:
        raise RuntimeError(f"training_bf16 ISA worker failed:\n{proc.stderr[-2000:]}")
    return parse_onednn_verbose(proc.stdout + "\n" + proc.stderr)


def step_ratio(batch: int, steps: int, alternations: int) -> tuple[float, float, float]:
    """(median fp32 s/step, median bf16 s/step, median of the per-alternation fp32/bf16 ratios)."""
    torch.manual_seed(0)
    base = BAlexNet(BRANCHES).to(memory_format=torch.channels_last)
    x = torch.randn(batch * steps, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch * steps,))
    gen = torch.Generator().manual_seed(0)
    runs = {p: (base, torch.optim.Adam(base.parameters(), lr=1e-3)) for p in ("fp32",)}
    other = BAlexNet(BRANCHES).to(memory_format=torch.channels_last)
    other.load_state_dict(base.state_dict())
    runs["bf16"] = (other, torch.optim.Adam(other.parameters(), lr=1e-3))
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for precision, (model, opt) in runs.items():  # warm-up
        train_epoch(model, opt, x[:batch], y[:batch], WEIGHTS, batch, gen, "none", precision=precision)
    for _ in range(alternations):
        for precision, (model, opt) in runs.items():
            start = time.perf_counter()
            train_epoch(model, opt, x, y, WEIGHTS, batch, gen, "none", precision=precision)
            times[precision].append((time.perf_counter() - start) / steps)
    ratios = [f / b for f, b in zip(times["fp32"], times["bf16"])]
    return statistics.median(times["fp32"]), statistics.median(times["bf16"]), statistics.median(ratios)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2, help="training steps per timed epoch")
    ap.add_argument("--alternations", type=int, default=3, help="fp32 / bf16 alternations (median)")
    ap.add_argument("--batches", default="512,128", help="batch sizes, comma-separated")
    ap.add_argument("--isa-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.isa_worker:
        return isa_worker()
    torch.set_num_threads(os.cpu_count() or 1)
    isa, impls = kernel_isa()
    kernels = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in impls.items()) or "none reported"
    note(BENCH, f"oneDNN ISA (bf16 step, ONEDNN_VERBOSE=1): {isa or 'not reported'}")
    note(BENCH, f"oneDNN kernels that ran: {kernels}")
    for batch in (int(b) for b in args.batches.split(",")):
        fp32, bf16, ratio = step_ratio(batch, args.steps, args.alternations)
        figure(BENCH, f"batch {batch}, one_branch, Adam: bf16/fp32 step ratio {ratio:.2f}x (fp32 {fp32:.3f} s, "
                      f"bf16 {bf16:.3f} s per step; median of {args.alternations} alternations)", GOAL, ratio >= 1.5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
