"""Give freed memory back to the operating system after a model is unloaded.

Dropping a session frees its weights inside the allocator, but glibc keeps the pages mapped (and
mimalloc, which Immich's images preload, keeps its segments) until asked. Without this, resident memory
stays at its peak and only a process restart returns it, which is why Immich kills idle workers.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import sys
from functools import cache
from typing import Any

log = logging.getLogger(__name__)


@cache
def _process_symbols() -> Any:
    """The symbols already loaded into this process (libc, and mimalloc when it is preloaded)."""
    if sys.platform.startswith("win"):
        return None
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def release_memory() -> str:
    """Collect Python garbage, then ask the C allocator to return free pages. Returns what was done."""
    gc.collect()
    lib = _process_symbols()
    if lib is None:
        return "gc"
    mi_collect = getattr(lib, "mi_collect", None)
    if mi_collect is not None:
        mi_collect.argtypes = [ctypes.c_bool]
        mi_collect.restype = None
        mi_collect(True)
        return "gc+mi_collect"
    malloc_trim = getattr(lib, "malloc_trim", None)  # glibc only; musl and macOS have none
    if malloc_trim is not None:
        malloc_trim.argtypes = [ctypes.c_size_t]
        malloc_trim.restype = ctypes.c_int
        malloc_trim(0)
        return "gc+malloc_trim"
    return "gc"
