"""pipeline.core.runtime: the allocator setting the CPU stages use."""

from __future__ import annotations

import platform

import pytest

from pipeline.core import runtime


def test_keep_freed_memory_applies_on_glibc_and_restores() -> None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    try:
        assert runtime.keep_freed_memory() is True
    finally:
        assert runtime.keep_freed_memory(keep=False) is True


def test_keep_freed_memory_is_a_no_op_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime.platform, "libc_ver", lambda: ("musl", "1.2"))
    assert runtime.keep_freed_memory() is False
