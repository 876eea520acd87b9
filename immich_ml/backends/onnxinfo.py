"""Read a model's graph inputs without loading its weights.

Free-dimension overrides must be set on ``SessionOptions`` *before* the session exists, so the
symbolic dimension names have to come from the file. ``onnx.load`` would parse (and copy) every
initializer, hundreds of MB for a CLIP encoder; this walks the protobuf wire format over an mmap
and decodes only ``ModelProto.graph.input`` (field 7 → field 11).
"""

from __future__ import annotations

import mmap
from pathlib import Path

_GRAPH_FIELD = 7  # ModelProto.graph
_INPUT_FIELD = 11  # GraphProto.input


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated protobuf varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview, start: int, end: int, wanted: int) -> list[tuple[int, int]]:
    """(start, end) byte ranges of every length-delimited field ``wanted`` in ``buf[start:end]``."""
    found: list[tuple[int, int]] = []
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if field == wanted:
                found.append((pos, pos + length))
            pos += length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    if pos != end:
        raise ValueError("malformed protobuf: field overruns its message")
    return found


def symbolic_input_dims(path: Path) -> dict[str, list[str | None]]:
    """Per graph input, its dims as ``dim_param`` names (``None`` for fixed or unnamed dims).

    ``{"input": ["batch", None, None, None]}`` for a model with a symbolic batch axis.
    Raises ``ValueError`` when the file is not a readable ONNX protobuf.
    """
    import onnx

    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        buf = memoryview(mapped)
        try:
            graphs = _fields(buf, 0, len(buf), _GRAPH_FIELD)
            if not graphs:
                raise ValueError(f"{path} has no graph")
            g_start, g_end = graphs[-1]
            result: dict[str, list[str | None]] = {}
            for start, end in _fields(buf, g_start, g_end, _INPUT_FIELD):
                info = onnx.ValueInfoProto.FromString(bytes(buf[start:end]))
                dims = info.type.tensor_type.shape.dim
                result[info.name] = [d.dim_param if d.HasField("dim_param") else None for d in dims]
        finally:
            buf.release()
    return result
