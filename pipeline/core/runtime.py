"""Process settings for the stages that run torch on a CPU (train, logits) and their benchmarks."""

from __future__ import annotations

import ctypes
import platform

# glibc mallopt(3) parameters and their defaults.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 128 * 1024, 65536
KEEP_TRIM_THRESHOLD = 1 << 30


def keep_freed_memory(keep: bool = True) -> bool:
    """Serve large CPU tensors from the process heap and keep freed memory there (glibc only).

    By default glibc maps every block over 32 MiB (a 512x32x32x32 float activation is 64 MiB)
    with mmap and unmaps it on free, so each training step pays page faults and kernel zeroing for
    its largest tensors again. ``mallopt(M_MMAP_MAX, 0)`` and a 1 GiB trim threshold keep them in
    the heap: faster training steps (measured in docs/performance.md), no change in any value. ``keep=False`` restores glibc's defaults (without its dynamic mmap threshold).
    Returns whether the setting was applied (False off glibc, e.g. macOS or musl).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    ok_max = libc.mallopt(M_MMAP_MAX, 0 if keep else DEFAULT_MMAP_MAX)
    ok_trim = libc.mallopt(M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD if keep else DEFAULT_TRIM_THRESHOLD)
    return bool(ok_max and ok_trim)
