"""The recognizer's character set, read from the ONNX model's metadata key ``character``.

Upstream's service (RapidOCR) reads the dictionary only from there, one symbol per line, and decodes
with ``["blank", *lines, " "]``: CTC's blank at index 0 and a space as the last class. The starter
installer writes the same key into its recognizer, so one reader serves both.
"""

from __future__ import annotations

from pathlib import Path

CHARSET_KEY = "character"
BLANK = "blank"


def read_dictionary(model: Path) -> list[str]:
    """The ``character`` lines stored in ``model``'s metadata; raises ValueError when absent or empty."""
    import onnx

    proto = onnx.load(str(model), load_external_data=False)
    for prop in proto.metadata_props:
        if prop.key == CHARSET_KEY:
            lines = [str(line) for line in prop.value.splitlines()]
            if not lines:
                break
            return lines
    raise ValueError(
        f"{model} has no '{CHARSET_KEY}' metadata: not a PaddleOCR recognizer as RapidOCR exports it "
        "(the dictionary must be stored in the model, one symbol per line)"
    )


def decoding_charset(dictionary: list[str]) -> list[str]:
    """Classes in the recognizer's output order: blank, the dictionary, then a space."""
    return [BLANK, *dictionary, " "]
