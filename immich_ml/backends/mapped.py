"""A copy of a model graph whose weights live in a side file that ONNX Runtime memory-maps.

A model stored as one protobuf is read whole into memory, parsed, and its initializers copied
into tensors: the process briefly holds the weights two or three times, glibc keeps much of the
freed memory, and every load pays for the copies. With the weights in an external data file, ORT
maps the file instead (``mmap``): nothing is copied, pages the graph never reads are never loaded
(a CLIP text tower reads 8–16 rows of its 100 MB token-embedding table per query), the pages it
reads are clean file pages the kernel can share and drop, and loading takes a fraction of the
time. Same tensors, same graph: the outputs are bit-identical.

The copy is ``<model>.mapped.onnx`` + ``<model>.mapped.onnx.data`` next to the model, written once
(atomically, under a lock file) and rebuilt when the source changes. Graphs with less than
:data:`MIN_WEIGHT_BYTES` of weights are used as they are.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from pathlib import Path

from immich_ml.errors import ModelLoadError

log = logging.getLogger(__name__)

SUFFIX = ".mapped.onnx"
MIN_WEIGHT_BYTES = 4 * 2**20
# Tensors below this stay inside the graph file (shape constants, biases, norms).
_TENSOR_THRESHOLD = 4096


def mapped_path(onnx_path: Path) -> Path:
    return onnx_path.with_name(onnx_path.name.removesuffix(".onnx") + SUFFIX)


def data_path(onnx_path: Path) -> Path:
    """The weights file of ``mapped_path(onnx_path)``."""
    mapped = mapped_path(onnx_path)
    return mapped.with_name(mapped.name + ".data")


def _fresh(onnx_path: Path) -> bool:
    mapped, data = mapped_path(onnx_path), data_path(onnx_path)
    try:
        newest_source = onnx_path.stat().st_mtime_ns
        return mapped.stat().st_mtime_ns >= newest_source and data.stat().st_mtime_ns >= newest_source
    except OSError:
        return False


def for_loading(onnx_path: Path) -> Path:
    """The file to open: the memory-mapped copy (made on first use) or ``onnx_path`` itself.

    ``onnx_path`` is returned when the graph is small, already stores its weights outside, or
    cannot be converted (logged; the model still loads the ordinary way).
    """
    if onnx_path.name.endswith(SUFFIX):
        return onnx_path
    if _fresh(onnx_path):
        return mapped_path(onnx_path)
    try:
        if onnx_path.stat().st_size < MIN_WEIGHT_BYTES:
            return onnx_path
    except OSError:
        return onnx_path  # the runtime says what is wrong with the file
    lock_path = onnx_path.with_name(onnx_path.name + ".mapped.lock")
    try:
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not _fresh(onnx_path) and not _convert(onnx_path):
                    return onnx_path
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    except (OSError, ModelLoadError) as exc:
        log.warning("Loading %s without memory-mapped weights: %s", onnx_path, exc)
        return onnx_path
    return mapped_path(onnx_path)


def _convert(source: Path) -> bool:
    """Write the mapped copy; False when the graph already keeps its weights outside."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    try:
        model = onnx.load(str(source), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - the runtime reports a broken file itself
        log.debug("Not mapping %s: %s", source, exc)
        return False
    if any(uses_external_data(t) for t in model.graph.initializer):
        return False
    target, data = mapped_path(source), data_path(source)
    fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp_data = tmp.with_name(tmp.name + ".data")
    try:
        # The graph names its data file by a relative path: write both under temporary names,
        # then point the graph at the final name before the renames.
        onnx.save_model(model, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=tmp_data.name, size_threshold=_TENSOR_THRESHOLD)
        model = onnx.load(str(tmp), load_external_data=False)
        for tensor in model.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = data.name
        onnx.save_model(model, str(tmp))
        for path in (tmp, tmp_data):
            path.chmod(0o644)
        os.replace(tmp_data, data)
        os.replace(tmp, target)
    except Exception as exc:  # noqa: BLE001 - onnx raises many unrelated types
        raise ModelLoadError(f"could not write {target.name}: {type(exc).__name__}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
        tmp_data.unlink(missing_ok=True)
    log.info("Wrote %s: weights memory-mapped from %s", target.name, data.name)
    return True
