"""The throughput probe of the prepared GPU call (benchmarks/gpu_throughput.py), dry-run on the CPU
at tiny size: both sides train, the JSON has every figure, and no peak is claimed for a CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.gpu_throughput import device_peak
from pipeline.tools.scratch import scratch_env

ROOT = Path(__file__).resolve().parent.parent


def test_peak_is_known_only_for_named_devices() -> None:
    assert device_peak("NVIDIA H200") == device_peak("NVIDIA H100 80GB HBM3") == 989e12
    assert device_peak("cpu") is None and device_peak("Some Other GPU") is None


def test_probe_on_cpu_writes_both_rates(tmp_path: Path) -> None:
    env = dict(scratch_env(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_throughput", "--device", "cpu", "--k", "2",
                           "--batch", "8", "--seconds", "0.2", "--precision", "fp32", "--out", str(tmp_path)],
                          cwd=ROOT, env=env, text=True, capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "gpu_throughput.json").read_text())
    assert result["batched_images_per_s"] > 0 and result["processes_images_per_s"] > 0
    assert 1e8 < result["training_flops_per_image"] < 3e8  # ~170 MFLOP per training image (issue 23)
    assert result["bf16_peak_flops"] is None and result["batched_fraction_of_peak"] is None
    assert "images/s" in proc.stdout
