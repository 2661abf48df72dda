"""Training throughput of many small models on one accelerator: the batched trainer (K seeds as one
vmapped model in one process, eeoffload.batched) vs K separate training processes side by side (the
way benchmarks/paper_gpu.py and recipe_gpu.py run their seeds), in images/s and as a fraction of
the device's dense bf16 peak (issue 23).

    python -m benchmarks.gpu_throughput [--k 6] [--batch 128] [--seconds 20] [--precision bf16] [--out DIR]

Each side trains one_branch B-AlexNets on random images resident on the device for ``--seconds``
after a warm-up, and counts the images it trained (K x batches x batch size). The model's training
FLOPs per image come from ``torch.utils.flop_counter`` (forward + backward of one batch); the peak
is the vendor's dense bf16 figure for the named device (unknown devices: no fraction). On a CPU it
runs as a dry run of the same path (``--device cpu``), with no peak.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

BRANCHES, WEIGHTS = ["relu1"], [1.0, 0.3]
#: Dense bf16 tensor-core peak, FLOP/s (vendor data sheets, SXM parts, without sparsity).
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}


def device_peak(name: str) -> float | None:
    return next((peak for key, peak in BF16_PEAK.items() if key in name), None)


def training_flops_per_image(device: torch.device, batch: int) -> float:
    """Forward + backward FLOPs of one training step of the one_branch model, per image."""
    from torch.utils.flop_counter import FlopCounterMode

    from eeoffload.batched import seeded_models
    from eeoffload.layout import ModelSpec

    model = seeded_models(ModelSpec(), BRANCHES, [0])[0][0].to(device)
    x = torch.randn(batch, 3, 32, 32, device=device)
    with FlopCounterMode(display=False) as counter:
        outs = model(x)
        sum(o.float().sum() for o in outs).backward()
    return counter.get_total_flops() / batch


def _images_per_second(step, images_per_step: int, seconds: float) -> float:
    step()  # warm-up (allocations, kernels)
    step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        step()
        n += 1
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return n * images_per_step / (time.perf_counter() - start)


def batched_rate(device: torch.device, k: int, batch: int, seconds: float, precision: str) -> float:
    """Images/s of K seeds trained as one batched model (one process)."""
    from eeoffload.batched import BatchedTrainer, seeded_models
    from eeoffload.layout import ModelSpec
    from eeoffload.training import make_optimizer

    models, data_gens, dropout_gens = seeded_models(ModelSpec(), BRANCHES, list(range(k)))
    trainer = BatchedTrainer([m.to(device) for m in models], data_gens, dropout_gens)
    opt = make_optimizer(trainer.parameters(), "adam", 1e-3)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    return _images_per_second(lambda: trainer.train_epoch(opt, x, y, WEIGHTS, batch, precision=precision),
                              k * batch, seconds)


def single_rate(device: torch.device, batch: int, seconds: float, precision: str) -> float:
    """Images/s of one ordinary training (the pipeline's model and train_epoch) in this process."""
    from eeoffload.batched import seeded_models
    from eeoffload.layout import ModelSpec
    from eeoffload.training import make_optimizer, train_epoch

    model = seeded_models(ModelSpec(), BRANCHES, [0])[0][0].to(device)
    opt = make_optimizer(model.parameters(), "adam", 1e-3)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    return _images_per_second(lambda: train_epoch(model, opt, x, y, WEIGHTS, batch, gen, "none", precision=precision),
                              batch, seconds)


def processes_rate(device: str, k: int, batch: int, seconds: float, precision: str) -> float:
    """Images/s summed over K separate training processes running side by side."""
    cmd = [sys.executable, "-m", "benchmarks.gpu_throughput", "--single", "--device", device, "--batch", str(batch),
           "--seconds", str(seconds), "--precision", precision]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(k)]
    rates = []
    for p in procs:
        out, _ = p.communicate(timeout=seconds * 10 + 300)
        if p.returncode != 0:
            raise RuntimeError(f"a training process failed (exit {p.returncode})")
        rates.append(float(out.strip().splitlines()[-1]))
    return sum(rates)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=6)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", type=Path, default=None, help="write gpu_throughput.json there")
    ap.add_argument("--single", action="store_true", help=argparse.SUPPRESS)  # one of the K processes
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if args.single:
        print(single_rate(device, args.batch, args.seconds, args.precision))
        return 0
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    flops = training_flops_per_image(device, args.batch)
    peak = device_peak(name) if device.type == "cuda" else None
    batched = batched_rate(device, args.k, args.batch, args.seconds, args.precision)
    separate = processes_rate(args.device, args.k, args.batch, args.seconds, args.precision)
    result = {"device": name, "k": args.k, "batch": args.batch, "precision": args.precision,
              "seconds": args.seconds, "training_flops_per_image": flops, "bf16_peak_flops": peak}
    for label, rate in (("batched", batched), ("processes", separate)):
        result[f"{label}_images_per_s"] = rate
        result[f"{label}_fraction_of_peak"] = rate * flops / peak if peak else None
    line = (f"{name}: K={args.k} one_branch models, batch {args.batch}, {args.precision}: batched trainer "
            f"{batched:.0f} images/s vs {args.k} processes {separate:.0f} images/s ({batched / separate:.2f}x); "
            f"{flops / 1e6:.0f} MFLOP per training image")
    if peak:
        line += (f"; {100 * result['batched_fraction_of_peak']:.2f}% / {100 * result['processes_fraction_of_peak']:.2f}%"
                 f" of the {peak / 1e12:.0f} TFLOP/s bf16 peak")
    print(line, flush=True)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
