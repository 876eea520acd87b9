"""Atheris fuzz targets: every entry point that takes bytes or arrays from outside.

Each target turns the fuzzer's bytes into one call and checks the contract: the call returns a
well-formed result or raises :class:`~immich_ml.errors.ImmichMLError` (a 4xx/5xx the service
maps); any other exception, a crash or a sanitizer report is a finding. Arrays get random shapes,
strides (non-contiguous views), dtypes and values, including NaN/inf landmarks and degenerate
boxes. ``python tests/fuzz/run.py <target> [libFuzzer flags]`` runs one (see scripts/fuzz.sh).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable
from typing import Any

import atheris

import numpy as np
from PIL import Image

from immich_ml.errors import ImmichMLError
from immich_ml.ops import align, detect, embed, image
from immich_ml.schemas import parse_entries
from immich_ml.server import multipart

ocr: Any = None
if importlib.util.find_spec("immich_ml.ops.ocr") is not None:  # written by the OCR kernels work
    ocr = importlib.import_module("immich_ml.ops.ocr")



def instrument(prefixes: tuple[str, ...]) -> int:
    """Coverage instrumentation for the functions of the loaded modules under ``prefixes``.

    ``atheris.instrument_imports()`` misses modules the editable install loads through its own
    loader, and ``instrument_all()`` spends a minute on numpy; this instruments just what the
    targets exercise. Returns the number of functions instrumented.
    """
    done = 0
    seen: set[int] = set()
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(prefixes):
            continue
        for value in list(vars(module).values()):
            candidates = [value]
            if isinstance(value, type) and value.__module__ == name:
                candidates += [v for v in vars(value).values()]
            for candidate in candidates:
                function = getattr(candidate, "__func__", candidate)
                if (
                    isinstance(function, types.FunctionType)
                    and function.__module__ == name
                    and id(function) not in seen
                ):
                    seen.add(id(function))
                    atheris.instrument_func(function)
                    done += 1
    return done


Image.init()  # load every format plugin now, so they are instrumented below
# Our code, and Pillow's format plugins (pure Python parsers of untrusted headers).
instrument(("immich_ml", "PIL"))

_SPECIAL = (0.0, -0.0, 1.0, -1.0, 0.5, 1e-45, 1e30, -1e30, float("nan"), float("inf"), float("-inf"), 112.0)
_DTYPES = (np.float32, np.float64, np.uint8, np.int64, np.float16)


def floats(fdp: atheris.FuzzedDataProvider, count: int) -> np.ndarray:
    """``count`` float32 values: arbitrary bits, or picked from the special values."""
    if fdp.ConsumeBool():
        raw = fdp.ConsumeBytes(4 * count)
        raw += b"\0" * (4 * count - len(raw))
        return np.frombuffer(raw, dtype=np.float32).copy()
    return np.array([_SPECIAL[fdp.ConsumeIntInRange(0, len(_SPECIAL) - 1)] for _ in range(count)], np.float32)


def array(fdp: atheris.FuzzedDataProvider, shape: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
    """An array of ``shape``; sometimes another dtype, a non-contiguous view or read-only."""
    size = int(np.prod(shape)) if shape else 1
    choice = fdp.ConsumeIntInRange(0, 9)
    if choice == 0:
        dtype = _DTYPES[fdp.ConsumeIntInRange(0, len(_DTYPES) - 1)]
    if np.dtype(dtype).kind == "f":
        values = floats(fdp, size).astype(dtype)
    else:
        raw = fdp.ConsumeBytes(size)
        values = np.frombuffer(raw + b"\0" * (size - len(raw)), np.uint8).astype(dtype)
    out = values.reshape(shape)
    if choice == 1 and out.ndim >= 1 and out.shape[-1] > 1:
        wide = np.repeat(out, 2, axis=-1)
        out = wide[..., ::2]  # same values, a strided (non-contiguous) view
    elif choice == 2:
        out.setflags(write=False)
    return out


def shape(fdp: atheris.FuzzedDataProvider, dims: int, limit: int) -> tuple[int, ...]:
    return tuple(fdp.ConsumeIntInRange(0, limit) for _ in range(dims))


def expect_contract(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except ImmichMLError:
        return None


# --- targets ---------------------------------------------------------------------------------------


def fuzz_multipart(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    boundary = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 80))
    header = multipart.boundary_of(f"multipart/form-data; boundary={boundary}")
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    if header is None:
        return
    parts = multipart.parse(body, header)
    if parts is not None:
        for name, part in parts.items():
            assert isinstance(name, str)
            assert len(part.data) <= len(body)
            try:
                part.text()
            except UnicodeDecodeError:
                pass


def fuzz_entries(data: bytes) -> None:
    entries = expect_contract(lambda: parse_entries(data))
    if entries is not None:
        assert entries and all(isinstance(e.name, str) and isinstance(e.options, dict) for e in entries)


def fuzz_decode(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    min_side = fdp.ConsumeIntInRange(0, 300) or None
    payload = fdp.ConsumeBytes(fdp.remaining_bytes())
    pixels = expect_contract(lambda: image.decode_image(payload, max_pixels=4_000_000, min_side=min_side))
    if pixels is not None:
        assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
        assert pixels.shape[0] * pixels.shape[1] <= 4_000_000


def fuzz_resize(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    source = array(fdp, (*shape(fdp, 2, 40), 3), np.uint8)
    size = (fdp.ConsumeIntInRange(-1, 48), fdp.ConsumeIntInRange(-1, 48))
    batch = fdp.ConsumeIntInRange(0, 3)
    interleaved = fdp.ConsumeBool()
    out_shape = (batch, *size, 3) if interleaved else (batch, 3, *size)
    out = array(fdp, tuple(max(0, d) for d in out_shape), np.uint8 if interleaved else np.float32)
    modes = ("shortest", "squash", "letterbox", "bogus")
    filters = ("bilinear", "bicubic", "lanczos", "nearest")
    mean = tuple(float(v) for v in floats(fdp, 3))
    std = tuple(float(v) for v in floats(fdp, 3))
    info = expect_contract(lambda: image.resize_normalize_into(
        source, out, fdp.ConsumeIntInRange(-1, 3), size=size, mode=modes[fdp.ConsumeIntInRange(0, 3)],
        resample=filters[fdp.ConsumeIntInRange(0, 3)], mean=mean, std=std,
        scale=float(floats(fdp, 1)[0]),
    ))
    if info is not None:
        assert info.resized_width > 0 and info.resized_height > 0


def fuzz_align(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeBool():
        points = array(fdp, (5, 2) if fdp.ConsumeIntInRange(0, 7) else shape(fdp, 2, 6))
        matrix = expect_contract(lambda: align.similarity_transform(points))
        if matrix is not None:
            assert matrix.shape == (2, 3)
        return
    source = array(fdp, (*shape(fdp, 2, 64), 3), np.uint8)
    faces = fdp.ConsumeIntInRange(0, 3)
    landmarks = array(fdp, (faces, 5, 2) if fdp.ConsumeIntInRange(0, 7) else shape(fdp, 3, 6))
    batch = fdp.ConsumeIntInRange(0, 4)
    out = array(fdp, (batch, 3, 112, 112)) if fdp.ConsumeBool() else array(fdp, (batch, 112, 112, 3), np.uint8)
    expect_contract(lambda: align.align_faces_into(
        source, landmarks, out, fdp.ConsumeIntInRange(-2, 4),
        mean=float(floats(fdp, 1)[0]), std=float(floats(fdp, 1)[0]),
    ))


def fuzz_detect(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    height, width = fdp.ConsumeIntInRange(0, 3) * 32, fdp.ConsumeIntInRange(0, 3) * 32
    strides = (8, 16, 32)[: fdp.ConsumeIntInRange(0, 3)] or (8,)
    anchors = fdp.ConsumeIntInRange(1, 2)
    scores, boxes, keypoints = [], [], []
    for stride in strides:
        cells = (height // stride) * (width // stride) * anchors
        if fdp.ConsumeIntInRange(0, 9) == 0:
            cells += fdp.ConsumeIntInRange(-2, 2)
        cells = max(cells, 0)
        scores.append(array(fdp, (cells, 1)))
        boxes.append(array(fdp, (cells, 4)))
        keypoints.append(array(fdp, (cells, 10)))
    found = expect_contract(lambda: detect.decode_scrfd(
        scores, boxes, keypoints if fdp.ConsumeIntInRange(0, 9) else None,
        input_size=(height, width), min_score=float(floats(fdp, 1)[0]), scale=float(floats(fdp, 1)[0]),
        strides=strides, anchors_per_cell=anchors, iou_threshold=float(floats(fdp, 1)[0]),
    ))
    if found is not None:
        n = len(found)
        assert found.boxes.shape == (n, 4) and found.landmarks.shape == (n, 5, 2)


def fuzz_embed(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    vector = array(fdp, shape(fdp, 1, 32))
    text = expect_contract(lambda: embed.serialize_embedding(vector))
    if text is not None:
        assert text.startswith("[") and text.endswith("]")


def fuzz_ocr(data: bytes) -> None:
    """Every public function of ``immich_ml.ops.ocr`` with fuzzed array arguments (when it exists)."""
    if ocr is None:
        return
    fdp = atheris.FuzzedDataProvider(data)
    functions = sorted(name for name in dir(ocr) if not name.startswith("_") and callable(getattr(ocr, name))
                       and getattr(getattr(ocr, name), "__module__", "") == ocr.__name__
                       and not isinstance(getattr(ocr, name), type))
    if not functions:
        return
    function = getattr(ocr, functions[fdp.ConsumeIntInRange(0, len(functions) - 1)])
    args = []
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        kind = fdp.ConsumeIntInRange(0, 3)
        if kind == 0:
            args.append(array(fdp, shape(fdp, fdp.ConsumeIntInRange(1, 4), 24), np.uint8))
        elif kind == 1:
            args.append(array(fdp, shape(fdp, fdp.ConsumeIntInRange(1, 4), 24)))
        elif kind == 2:
            args.append(float(floats(fdp, 1)[0]))
        else:
            args.append(fdp.ConsumeIntInRange(-2, 64))
    try:
        function(*args)
    except (ImmichMLError, TypeError):
        pass  # TypeError: a wrong number of arguments for this function, raised before any kernel


TARGETS: dict[str, Callable[[bytes], None]] = {
    "multipart": fuzz_multipart,
    "entries": fuzz_entries,
    "decode": fuzz_decode,
    "resize": fuzz_resize,
    "align": fuzz_align,
    "detect": fuzz_detect,
    "embed": fuzz_embed,
}
if ocr is not None:
    TARGETS["ocr"] = fuzz_ocr
