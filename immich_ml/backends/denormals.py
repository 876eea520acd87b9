"""Flush subnormal floats to zero on the thread that calls the runtime, for the length of one run.

Some CPUs (many Intel cores; Zen 4 measured no penalty) slow down many times over on subnormal
floats, and models never need them. ONNX Runtime's ``session.set_denormal_as_zero`` sets the
FTZ/DAZ bits of MXCSR on the session's own intra-op pool threads, but on the thread that calls
``run`` only once per process, from whichever session happens to be created first: a session
created without the option (a probe, another library) takes that once, and the calling thread,
which does a share of every parallel operator (all of it with one intra-op thread), keeps
computing with subnormals. :func:`flushed` sets the bits on the calling thread around a run and
restores the exact previous MXCSR word afterwards, so code outside the run keeps IEEE semantics.

x86-64 Linux with glibc only (``fegetenv``/``fesetenv`` through ctypes, ~2 µs per run);
elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

FTZ = 1 << 15  # MXCSR flush-to-zero: subnormal results become 0
DAZ = 1 << 6  # MXCSR denormals-are-zero: subnormal inputs read as 0


class _FEnv(ctypes.Structure):
    """glibc's x86-64 ``fenv_t``: the 28-byte x87 environment, then the MXCSR word."""

    _fields_ = [("x87", ctypes.c_uint16 * 14), ("mxcsr", ctypes.c_uint32)]


def _load_libm() -> Any:
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return None
    if platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("m")
    if name is None:
        return None
    try:
        libm = ctypes.CDLL(name)
    except OSError:
        return None
    if ctypes.sizeof(_FEnv) != 32:
        return None
    return libm


_LIBM = _load_libm()


def supported() -> bool:
    """Whether :func:`flushed` can set the bits on this platform."""
    return _LIBM is not None


def mxcsr() -> int | None:
    """The calling thread's MXCSR word, or None where unsupported."""
    if _LIBM is None:
        return None
    env = _FEnv()
    _LIBM.fegetenv(ctypes.byref(env))
    return int(env.mxcsr)


@contextmanager
def flushed() -> Iterator[None]:
    """FTZ and DAZ on the calling thread inside the block; the previous MXCSR word after it."""
    if _LIBM is None:
        yield
        return
    env = _FEnv()
    _LIBM.fegetenv(ctypes.byref(env))
    saved = int(env.mxcsr)
    if saved & (FTZ | DAZ) == FTZ | DAZ:
        yield
        return
    env.mxcsr = saved | FTZ | DAZ
    _LIBM.fesetenv(ctypes.byref(env))
    try:
        yield
    finally:
        env.mxcsr = saved
        _LIBM.fesetenv(ctypes.byref(env))
