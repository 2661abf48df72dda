"""Timing the layers of a branched AlexNet (any ``ModelSpec`` architecture) on a device (the measurement half of the latency model).

The formulas that turn these timings into the latency of a sample (paper section IV-E) live in
:mod:`eeoffload.latency` (imported here, never the other way), the shapes each layer sees in
:mod:`eeoffload.model_shapes`, the checks that tell a disturbed measurement from a clean one in
:mod:`eeoffload.latency_checks`; this
module only runs the layers and reads the clock. It prints nothing: progress goes to an optional
``log`` callable. It changes torch's intra-op thread count only while measuring, and restores it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from eeoffload.latency import layer_table
from eeoffload.model import BAlexNet
from eeoffload.model_shapes import layer_inputs, output_elements  # noqa: F401 (output_elements re-exported)


def _time_once(module: nn.Module, x: torch.Tensor, cuda: bool) -> float:
    if cuda:
        torch.cuda.synchronize(x.device)
    start = time.perf_counter()
    module(x)
    if cuda:
        torch.cuda.synchronize(x.device)
    return (time.perf_counter() - start) * 1e3


@dataclass(frozen=True)
class LayerTimes:
    """Raw timings of one measurement: ``samples_ms[i, r]`` is the r-th timed call of row i."""

    layer: list[str]
    part: list[str]
    output_elements: list[int]
    samples_ms: np.ndarray  # (n_rows, repeats) float64, in execution order
    device: str
    threads: int | None

    def table(self, scale: float = 1.0) -> pd.DataFrame:
        """The per-layer table (:func:`eeoffload.latency.layer_table`), every time times ``scale``."""
        return layer_table(self.layer, self.part, self.output_elements, self.samples_ms, scale)

    def subset(self, names: Collection[str]) -> LayerTimes:
        """The rows named in ``names``, in execution order."""
        keep = [i for i, n in enumerate(self.layer) if n in names]
        return LayerTimes([self.layer[i] for i in keep], [self.part[i] for i in keep],
                          [self.output_elements[i] for i in keep], self.samples_ms[keep], self.device, self.threads)


def measure_layers(
    model: BAlexNet,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    warmup: int = 10,
    repeats: int = 50,
    only: Collection[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> LayerTimes:
    """Time each trunk layer's and each side branch's forward call at batch size 1.

    Section IV-E's computing delays, measured on this host: every module gets the real input shape
    it sees in the network (:func:`layer_inputs`), runs ``warmup`` times untimed, then ``repeats``
    times timed one by one; every timed call is kept. Eval mode and ``torch.no_grad``; on CUDA the
    device is synchronised before and after each timed call. ``threads`` sets torch's intra-op
    thread count for the measurement (restored afterwards, also on error; None leaves it). The
    model is moved to ``device`` and left there (its train/eval mode is restored). ``only``
    restricts the rows to these names. ``log`` (if given) gets one line per part (trunk,
    branch<k>) once it is timed.
    """
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    device = torch.device(device)
    cuda = device.type == "cuda"
    old_threads = torch.get_num_threads()
    was_training = model.training
    names, parts, elements, samples = [], [], [], []
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        model.to(device).eval()
        rows = [r for r in layer_inputs(model, device) if only is None or r[0] in only]
        per_part: dict[str, list[float]] = {}
        with torch.no_grad():
            for name, part, module, x in rows:
                for _ in range(warmup):
                    module(x)
                times = [_time_once(module, x, cuda) for _ in range(repeats)]
                names.append(name)
                parts.append(part)
                elements.append(int(module(x).numel()))
                samples.append(times)
                per_part.setdefault(part, []).append(float(np.median(times)))
        if log is not None:
            for part, medians in per_part.items():
                log(f"timed {part} on {device}: {len(medians)} layer(s), {sum(medians):.4f} ms")
    finally:
        torch.set_num_threads(old_threads)
        model.train(was_training)
    array = np.asarray(samples, dtype=np.float64).reshape(len(names), repeats)
    return LayerTimes(names, parts, elements, array, str(device), threads)
