"""Parameter-free layers shared by the trunks and heads of :mod:`eeoffload.model` and
:mod:`eeoffload.model_alexnet224`: the faster LRN, a layout-keeping flatten, the in-network resize.

``tests/test_perf_equivalence.py`` proves the LRN and the flatten equal to torch's own.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# BranchyNet's B-AlexNet LRN (Chainer: n=3, k=2, alpha=5e-5, beta=0.75; networks/alex_cifar10.py in
# kunglab/branchynet). Chainer uses alpha * sum over the window; torch uses alpha / n * sum.
_LRN = {"size": 3, "alpha": 5e-5 * 3, "beta": 0.75, "k": 2.0}


class _ChannelLRN(torch.autograd.Function):
    """LRN across channels with a hand-written backward (values as ``torch.nn.LocalResponseNorm``).

    y = x / d**beta with d = k + alpha / size * (sum of x**2 over the ``size`` neighbouring
    channels, window c - size//2 .. c + (size-1)//2, as torch pads it). The channel window sum is
    one small matmul with a banded 0/1 (C, C) matrix over the channels-last view (N, H, W, C), and
    the gradient is dx = g / d**beta - 2 alpha beta / size * x * band^T(g * y / d): a few
    elementwise passes, mostly in place, instead of torch's pad + avg_pool3d + pow graph (faster on
    CPU; measured in docs/performance.md). For beta = 3/4 (AlexNet's), d**-beta is rsqrt(d) * sqrt(rsqrt(d)), cheaper
    than pow.
    """

    @staticmethod
    def forward(ctx, x, size, alpha, beta, k):  # type: ignore[override]
        channels = x.shape[1]
        i = torch.arange(channels, device=x.device)
        offset = i[None, :] - i[:, None]  # band[i, j] = 1 if channel i is in output channel j's window
        band = ((offset >= -((size - 1) // 2)) & (offset <= size // 2)).to(x.dtype)
        v = x.permute(0, 2, 3, 1)  # (N, H, W, C): a view for channels-last input
        d = torch.matmul(v * v, band * (alpha / size)).add_(k)
        if beta == 0.75:
            inv = torch.rsqrt(d)
            inv.mul_(torch.sqrt(inv))  # d**-1/2 * d**-1/4
        else:
            inv = d.pow(-beta)
        y = v * inv
        ctx.save_for_backward(v, d, inv, y, band)
        ctx.scale = 2.0 * alpha * beta / size
        return y.permute(0, 3, 1, 2)  # (N, C, H, W), channels-last memory

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        v, d, inv, y, band = ctx.saved_tensors
        g = grad.permute(0, 2, 3, 1)  # (N, H, W, C)
        t = torch.matmul((g * y).div_(d), band.t()).mul_(v)  # x * band^T(g * y / d)
        dx = (g * inv).add_(t, alpha=-ctx.scale)
        return dx.permute(0, 3, 1, 2), None, None, None, None


class LocalResponseNorm(nn.Module):
    """Drop-in for ``torch.nn.LocalResponseNorm`` (same arguments, same values within float
    tolerance, no parameters) with a faster forward and backward for 4-D inputs (:class:`_ChannelLRN`).
    Under autocast it computes in float32 and returns float32."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled(x.device.type):
            # Under autocast (bf16 training) the window sum and d**-beta lose too much precision in
            # bf16: compute in float32, autocast off, and return float32 (the next conv casts again).
            with torch.autocast(x.device.type, enabled=False):
                return self._forward(x.float())
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            return nn.functional.local_response_norm(x, self.size, self.alpha, self.beta, self.k)
        return _ChannelLRN.apply(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class _FlattenChannelsLast(torch.autograd.Function):
    """(N, C, H, W) channels-last -> (N, C*H*W) in torch's (C, H, W) order, whose gradient comes back
    channels-last (a plain flatten's comes back NCHW, and the pool and conv backward before it
    would each copy their tensors to match)."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        ctx.shape = x.shape
        return x.reshape(x.shape[0], -1)  # (N, C*H*W): a copy, as x is not NCHW-contiguous

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return grad.reshape(ctx.shape).contiguous(memory_format=torch.channels_last)


class Flatten(nn.Flatten):
    """``nn.Flatten()`` (same values) that keeps a channels-last input's layout in the gradient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and self.start_dim == 1 and self.end_dim == -1 and not x.is_contiguous() \
                and x.is_contiguous(memory_format=torch.channels_last):
            return _FlattenChannelsLast.apply(x)
        return super().forward(x)


class Resize(nn.Module):
    """Bilinear resize of a (B, C, H, W) batch to ``size`` x ``size`` inside the network
    (``F.interpolate(x, size=size, mode="bilinear", align_corners=False)``): alexnet224 takes the
    same 32x32 CIFAR tensors as balexnet32 and upsamples them as its first trunk layer, so the
    latency profile times the resize on the device."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)

    def extra_repr(self) -> str:
        return f"size={self.size}, mode=bilinear, align_corners=False"
