"""Returning freed memory to the OS after an eviction."""

from __future__ import annotations

import platform

import pytest

from immich_ml.models.memory import release_memory


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_glibc_trims_the_heap() -> None:
    assert release_memory() in ("gc+malloc_trim", "gc+mi_collect")  # mimalloc when it is preloaded


def test_always_collects_garbage() -> None:
    assert release_memory().startswith("gc")
