"""Image decoding and model-input preprocessing.

``decode_image`` turns request bytes into an RGB pixel array the way Immich does (Pillow open, load,
convert to RGB; no EXIF rotation). ``resize_normalize_into`` resizes, crops or letterboxes that
array and normalises it straight into one slot of a model's input batch, in one compiled pass that
matches Pillow's ``Image.resize`` (bilinear/bicubic/lanczos, antialiased) to the bit in practice, or
OpenCV's ``cv2.resize(..., interpolation=cv2.INTER_LINEAR)`` (``opencv_linear``: no antialiasing).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from immich_ml import errors
from immich_ml._core import _image

Mode = Literal["shortest", "squash", "letterbox"]
Resample = Literal["bilinear", "bicubic", "lanczos", "opencv_linear"]

_MODES: dict[str, int] = {"shortest": 0, "squash": 1, "letterbox": 2}
_FILTERS: dict[str, int] = {"bilinear": 0, "bicubic": 1, "lanczos": 2, "opencv_linear": 3}
_STATUS_OK, _STATUS_INVALID, _STATUS_NO_MEMORY = 0, 1, 2


@dataclass(frozen=True)
class ResizeInfo:
    """How the source image maps onto the model input.

    scale: resized height / source height (for letterbox this is the detector's ``det_scale`` (insightface, Immich v3):
        divide model-input coordinates by it to get source pixels).
    resized_width, resized_height: size in pixels of the whole resized image, before any centre
        crop (shortest) and without the zero padding (letterbox).
    """

    scale: float
    resized_width: int
    resized_height: int


def decode_image(
    data: bytes, *, max_pixels: int = 100_000_000, min_side: int | None = None
) -> NDArray[np.uint8]:
    """Decodes image bytes to an (H, W, 3) uint8 RGB array: C-contiguous, read-only (it wraps the
    pixel buffer Pillow hands over, no further copy), rows top to bottom, EXIF orientation ignored.

    max_pixels: images with more pixels (width * height, read from the header before decoding)
        are refused. min_side: for JPEG, let libjpeg decode at 1/2, 1/4 or 1/8 scale in the DCT
        domain as long as both sides stay >= min_side (much faster for large photos; other
        formats ignore it). None decodes at full size.
    Raises errors.InvalidImage for undecodable, empty or too large images.
    """
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise errors.InvalidImage(
            f"Image has too many pixels (limit {max_pixels}): {exc}"
        ) from exc
    except MemoryError:
        raise
    except Exception as exc:
        # Pillow's format plugins report unparsable bytes as many exception types
        # (UnidentifiedImageError, SyntaxError, ValueError, struct.error ...): all mean the same
        # thing to the client, these bytes are not an image we can read.
        raise errors.InvalidImage(f"Could not decode image: {_describe(exc, data)}") from exc
    with img:
        width, height = img.size
        if width <= 0 or height <= 0:
            raise errors.InvalidImage("Image has zero width or height")
        if width * height > max_pixels:
            raise errors.InvalidImage(
                f"Image is {width}x{height} = {width * height} pixels, more than the limit of "
                f"{max_pixels} pixels"
            )
        # MPO (phone cameras' multi-picture JPEG) decodes its first frame with the JPEG decoder.
        if min_side is not None and min_side > 0 and img.format in ("JPEG", "MPO"):
            img.draft("RGB", (min_side, min_side))
        try:
            img.load()
            rgb = img if img.mode == "RGB" else img.convert("RGB")
        except MemoryError:
            raise
        except Exception as exc:
            # Truncated or corrupt pixel data, likewise reported as many exception types.
            raise errors.InvalidImage(f"Could not decode image: {_describe(exc, data)}") from exc
        pixels: NDArray[np.uint8] = np.asarray(rgb, dtype=np.uint8)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise errors.InvalidImage("Image has zero width or height")
    return np.ascontiguousarray(pixels)


_OBJECT_REPR = re.compile(r"<[^<>]*? at 0x[0-9a-fA-F]+>")


def _describe(error: Exception, data: bytes) -> str:
    """What was wrong with the upload, in words: Pillow's messages can carry Python object
    reprs (``cannot identify image file <_io.BytesIO object at 0x7f...>``) that mean nothing to
    a client, so those are replaced by what the bytes look like."""
    if isinstance(error, UnidentifiedImageError):
        head = data[:64]
        sample = head.decode("utf-8", "ignore")  # "ignore": the 64 bytes may end mid-character
        looks_like_text = bool(sample) and all(c.isprintable() or c.isspace() for c in sample)
        what = "text, not an image" if looks_like_text else f"data starting with bytes {head[:8].hex(' ')}"
        return (
            f"the {len(data)} bytes sent as 'image' are not in an image format this service reads "
            f"(JPEG, PNG, WebP, GIF, TIFF, BMP ...); they look like {what}."
        )
    message = _OBJECT_REPR.sub("the uploaded image", str(error)).strip()
    return message or f"the image data is corrupt ({type(error).__name__})"


def resize_normalize_into(
    image: NDArray[np.uint8],
    out: NDArray[np.float32] | NDArray[np.uint8],
    index: int,
    *,
    size: tuple[int, int],
    mode: Mode,
    resample: Resample = "bicubic",
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0),
    std: tuple[float, float, float] = (1.0, 1.0, 1.0),
    scale: float = 1 / 255,
) -> ResizeInfo:
    """Resizes an RGB image and writes it into slot ``index`` of a model's input batch.

    image: (h, w, 3) uint8 RGB; rows may be strided (a view into a larger image), pixels packed.
    out: float32 (N, 3, H, W) C-contiguous NCHW, written as (pixel * scale - mean[c]) / std[c];
        or uint8 (N, H, W, 3) C-contiguous NHWC, written as raw pixels (graphs that normalise
        themselves). Only out[index] is written; every element of it is written.
    size: (H, W) of the model input, matching out.
    mode: "shortest" (square size only): short side -> S, long side -> int(long / short * S),
        centre crop, as Immich's CLIP preprocessing; "squash": stretch to (H, W); "letterbox":
        keep aspect so the image fits (insightface's rounding), top-left, the rest zero pixels
        (i.e. the normalised value of a 0 pixel).
    resample: a Pillow filter, whose results match ``PIL.Image.resize`` bit for bit (Pillow >= 13;
        older Pillow always resamples horizontally first, which differs by a level or two in a few
        pixels of images more than twice as tall as wide); or ``"opencv_linear"``, OpenCV's default
        ``cv2.resize`` (2 taps per axis, no antialiasing), bit for bit with OpenCV 5.
    Raises errors.InvalidInput on a wrong dtype, shape, layout, size or parameter.
    """
    src_h, src_w = _check_image(image)
    out_h, out_w, is_float = _check_out(out, index, size)
    mode_code = _MODES.get(mode)
    if mode_code is None:
        raise errors.InvalidInput(f"Unknown resize mode {mode!r}: expected one of {sorted(_MODES)}")
    filter_code = _FILTERS.get(resample)
    if filter_code is None:
        raise errors.InvalidInput(
            f"Unknown resample filter {resample!r}: expected one of {sorted(_FILTERS)}"
        )
    if mode == "shortest" and out_h != out_w:
        raise errors.InvalidInput(f"Resize mode 'shortest' needs a square size, got {size}")
    status, *geometry = _image.plan(mode_code, src_h, src_w, out_h, out_w)
    if status != _STATUS_OK:
        raise errors.InvalidInput(f"Cannot resize a {src_w}x{src_h} image to {out_w}x{out_h}")
    resized_w, resized_h, crop_x, crop_y, region_w, region_h, geo_scale = geometry
    plan: tuple[int, int, int, int, int, int, float] = (
        int(resized_w), int(resized_h), int(crop_x), int(crop_y), int(region_w), int(region_h),
        float(geo_scale),
    )
    if is_float:
        mean3, std3 = _triple("mean", mean), _triple("std", std)
        if any(s == 0.0 for s in std3):
            raise errors.InvalidInput(f"std must not contain zero, got {std}")
        batch_f32 = cast(NDArray[np.float32], out)
        status = _image.resize_normalize_chw(
            image, batch_f32, index, plan, filter_code, float(scale), mean3, std3
        )
    else:
        batch_u8 = cast(NDArray[np.uint8], out)
        status = _image.resize_hwc(image, batch_u8, index, plan, filter_code)
    if status == _STATUS_NO_MEMORY:
        raise errors.ImmichMLError(f"Not enough memory to resize a {src_w}x{src_h} image")
    if status != _STATUS_OK:
        raise errors.InvalidInput(f"Cannot resize a {src_w}x{src_h} image to {out_w}x{out_h}")
    return ResizeInfo(scale=plan[6], resized_width=plan[0], resized_height=plan[1])


def _check_image(image: object) -> tuple[int, int]:
    """(height, width) of a valid (h, w, 3) uint8 image with packed pixels, else InvalidInput."""
    if not isinstance(image, np.ndarray):
        raise errors.InvalidInput(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise errors.InvalidInput(f"image must be uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise errors.InvalidInput(f"image must have shape (height, width, 3), got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise errors.InvalidInput(f"image has zero width or height: shape {image.shape}")
    # numpy leaves the stride of a length-1 axis arbitrary, so only check what the kernel walks.
    if image.strides[2] != 1 or (image.shape[1] > 1 and image.strides[1] != 3):
        raise errors.InvalidInput(
            "image pixels must be packed RGB (strides (*, 3, 1)); got strides "
            f"{image.strides}: pass np.ascontiguousarray(image)"
        )
    return int(image.shape[0]), int(image.shape[1])


def _check_out(out: object, index: int, size: tuple[int, int]) -> tuple[int, int, bool]:
    """(H, W, is_float32_nchw) of a valid output batch for `size`, else InvalidInput."""
    if not isinstance(out, np.ndarray):
        raise errors.InvalidInput(f"out must be a numpy array, got {type(out).__name__}")
    if len(size) != 2 or any(int(s) <= 0 for s in size):
        raise errors.InvalidInput(f"size must be (height, width) with positive values, got {size}")
    out_h, out_w = int(size[0]), int(size[1])
    if out.dtype == np.float32:
        is_float, expected = True, (3, out_h, out_w)
        layout = "float32 (N, 3, H, W) NCHW"
    elif out.dtype == np.uint8:
        is_float, expected = False, (out_h, out_w, 3)
        layout = "uint8 (N, H, W, 3) NHWC"
    else:
        raise errors.InvalidInput(
            f"out must be float32 (N, 3, H, W) or uint8 (N, H, W, 3), got dtype {out.dtype}"
        )
    if out.ndim != 4 or tuple(out.shape[1:]) != expected:
        raise errors.InvalidInput(
            f"out must be {layout} with (H, W) = {(out_h, out_w)}, got shape {out.shape}"
        )
    if not out.flags.c_contiguous:
        raise errors.InvalidInput("out must be C-contiguous")
    if not out.flags.writeable:
        raise errors.InvalidInput("out must be writeable")
    if isinstance(index, bool) or not 0 <= index < out.shape[0]:
        raise errors.InvalidInput(f"index {index} is out of range for a batch of {out.shape[0]}")
    return out_h, out_w, is_float


def _triple(name: str, values: tuple[float, float, float]) -> tuple[float, float, float]:
    if len(values) != 3:
        raise errors.InvalidInput(f"{name} must have 3 values (R, G, B), got {values}")
    return float(values[0]), float(values[1]), float(values[2])
