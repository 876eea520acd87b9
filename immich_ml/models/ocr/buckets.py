"""The small fixed sets of input shapes OCR models run with.

Upstream feeds the detector every image at its own size (multiples of 32) and the recognizer every
batch at its own width, so providers that compile per shape (MIGraphX, OpenVINO GPU, TensorRT, CUDA
graph caches) recompile for almost every photo and keep every compiled shape in memory (upstream
#29560: 300x slowdowns). Here the image is resized exactly as upstream resizes it and then padded up
to the next bucket (never resampled twice), and a recognizer batch is padded on the right up to the
next width bucket; the outputs inside the unpadded region are then what upstream computes, up to the
influence of the padding on the network's border pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

# Detector sides: multiples of 64 (plus 736, Immich's default maxResolution, so the short side of a
# photo is never padded) up to 2048, then ~25 % steps. Upstream's sides are multiples of 32, so a side
# gets at most 32 px of padding up to 2048: larger pads move DB box scores measurably (the network's
# receptive field spans the border; benchmarks/README.md "OCR shapes").
DETECTOR_SIDES: tuple[int, ...] = (
    *range(64, 736, 64), 736, *range(768, 2049, 64), 2560, 3200, 4096,
)  # fmt: skip
DETECTOR_STEP_BEYOND = 1024
# Recognizer widths (height is 48): upstream's minimum 320, then ~15 % steps, so a batch carries at
# most ~15 % of padding (compute the CPU pays for; measured +4 % on the benchmark pages).
RECOGNIZER_WIDTHS: tuple[int, ...] = (
    320, 384, 448, 512, 576, 640, 736, 832, 960, 1088, 1248, 1440, 1664, 1920, 2208, 2560, 2944, 3392,
)  # fmt: skip
RECOGNIZER_STEP_BEYOND = 512


def bucket(value: int, sizes: Sequence[int], step_beyond: int) -> int:
    """Smallest of ``sizes`` >= ``value``; past the last, ``value`` rounded up to ``step_beyond``."""
    for size in sizes:
        if size >= value:
            return size
    return -(-value // step_beyond) * step_beyond


def detector_bucket(resized_h: int, resized_w: int) -> tuple[int, int]:
    """(BH, BW) the detector runs with for an image resized to (resized_h, resized_w)."""
    return (
        bucket(resized_h, DETECTOR_SIDES, DETECTOR_STEP_BEYOND),
        bucket(resized_w, DETECTOR_SIDES, DETECTOR_STEP_BEYOND),
    )


def recognizer_width(batch_width: int) -> int:
    """Input width the recognizer runs with for a batch whose upstream width is ``batch_width``."""
    return bucket(batch_width, RECOGNIZER_WIDTHS, RECOGNIZER_STEP_BEYOND)


def batch_sizes(maximum: int) -> tuple[int, ...]:
    """Recognizer batch sizes: 1, 2, 4 ... below ``maximum``, and ``maximum`` (a short batch is padded
    with empty rows up to the next size, so a handful of shapes covers every crop count)."""
    sizes = {1, max(1, maximum)}
    size = 2
    while size < maximum:
        sizes.add(size)
        size *= 2
    return tuple(sorted(sizes))


def padded_batch(count: int, sizes: Sequence[int]) -> int:
    """Smallest of ``sizes`` >= ``count`` (``count`` never exceeds the largest)."""
    return next(size for size in sizes if size >= count)
