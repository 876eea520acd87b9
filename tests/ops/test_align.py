"""immich_ml.ops.align against a numpy SVD Umeyama, scikit-image's SimilarityTransform, a float64
numpy bilinear warp written here, and cv2.warpAffine + cv2.dnn.blobFromImages (Immich's path)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from skimage.transform import SimilarityTransform

from immich_ml.errors import InvalidInput
from immich_ml.ops.align import ARCFACE_TEMPLATE, align_faces_into, similarity_transform

TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
     [70.7299, 92.2041]]
)  # fmt: skip
H, W = 480, 640


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Umeyama (1991) similarity src -> dst via SVD, reflections excluded; (2, 3) float64."""
    src, dst = src.astype(np.float64), dst.astype(np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    sc, dc = src - mu_s, dst - mu_d
    u, s, vt = np.linalg.svd(dc.T @ sc / len(src))
    d = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt))])
    rotation = u @ np.diag(d) @ vt
    scale = (s * d).sum() / sc.var(axis=0).sum()
    return np.hstack([scale * rotation, (mu_d - scale * rotation @ mu_s)[:, None]])


def skimage_similarity(landmarks: np.ndarray) -> np.ndarray:
    src = landmarks.astype(np.float64)
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        params = SimilarityTransform.from_estimate(src, TEMPLATE).params
    else:
        tform = SimilarityTransform()
        tform.estimate(src, TEMPLATE)
        params = tform.params
    return np.asarray(params[:2])


def reference_warp(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """float64 bilinear, crop pixel (x, y) <- source M^-1 (x, y), taps outside read 0, round half up."""
    inv = cv2.invertAffineTransform(matrix)
    ys, xs = np.mgrid[:112, :112].astype(np.float64)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    x0, y0 = np.floor(sx), np.floor(sy)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    h, w = image.shape[:2]

    def tap(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        values = image[np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)].astype(np.float64)
        return np.where(inside[..., None], values, 0.0)

    top = (1 - fx) * tap(x0, y0) + fx * tap(x0 + 1, y0)
    bottom = (1 - fx) * tap(x0, y0 + 1) + fx * tap(x0 + 1, y0 + 1)
    return np.floor((1 - fy) * top + fy * bottom + 0.5).astype(np.uint8)


def make_image(seed: int = 0) -> np.ndarray:
    """Smooth structure plus noise: exercises interpolation without being pure noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    smooth = np.stack(
        [(np.sin(xx / 17) + 1) * 100, (np.cos(yy / 23) + 1) * 100, (xx + 2 * yy) % 200], axis=-1
    )
    return (smooth + rng.integers(0, 56, (H, W, 3))).astype(np.uint8)


def face_landmarks(rng: np.random.Generator, count: int, centre_range=((0, W), (0, H))) -> np.ndarray:
    """Template-shaped landmarks at random centres, sizes and angles, with per-point jitter."""
    faces = []
    for _ in range(count):
        centre = [rng.uniform(*centre_range[0]), rng.uniform(*centre_range[1])]
        size, angle = rng.uniform(0.3, 3.0), rng.uniform(-0.6, 0.6)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        points = (TEMPLATE - TEMPLATE.mean(0)) @ rot.T * size + centre + rng.normal(0, 2, (5, 2))
        faces.append(points)
    return np.array(faces, dtype=np.float32)


# --- similarity_transform ----------------------------------------------------------------------


def test_template_constant() -> None:
    np.testing.assert_array_equal(ARCFACE_TEMPLATE, TEMPLATE.astype(np.float32))
    assert not ARCFACE_TEMPLATE.flags.writeable


def test_similarity_matches_umeyama_and_skimage() -> None:
    rng = np.random.default_rng(1)
    for landmarks in face_landmarks(rng, 50):
        matrix = similarity_transform(landmarks)
        assert matrix.dtype == np.float64 and matrix.shape == (2, 3)
        np.testing.assert_allclose(matrix, umeyama(landmarks, TEMPLATE), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(matrix, skimage_similarity(landmarks), rtol=1e-9, atol=1e-9)


def test_mirrored_landmarks_give_a_rotation_not_a_reflection() -> None:
    landmarks = TEMPLATE.copy()
    landmarks[:, 0] = 300 - landmarks[:, 0]  # mirror image: best fit would be a reflection
    landmarks = landmarks.astype(np.float32)
    matrix = similarity_transform(landmarks)
    assert np.linalg.det(matrix[:, :2]) > 0
    np.testing.assert_allclose(matrix, umeyama(landmarks, TEMPLATE), atol=1e-9)


def test_collinear_landmarks_are_well_defined() -> None:
    landmarks = np.array([[10, 20], [30, 20], [50, 20], [70, 20], [90, 20]], np.float32)
    matrix = similarity_transform(landmarks)
    assert np.isfinite(matrix).all() and np.linalg.det(matrix[:, :2]) > 0
    np.testing.assert_allclose(matrix, umeyama(landmarks, TEMPLATE), atol=1e-9)


@pytest.mark.parametrize(
    "landmarks",
    [
        np.full((5, 2), 100.0),
        np.full((5, 2), 100.0) + np.arange(10).reshape(5, 2) * 1e-9,
        np.where(np.eye(5, 2, dtype=bool), np.nan, 50.0),
        np.where(np.eye(5, 2, dtype=bool), np.inf, 50.0),
    ],
    ids=["all-equal", "sub-micro-pixel", "nan", "inf"],
)
def test_degenerate_landmarks_give_zero_matrix_and_black_crop(landmarks) -> None:
    landmarks = landmarks.astype(np.float32)
    np.testing.assert_array_equal(similarity_transform(landmarks), np.zeros((2, 3)))
    image = make_image()
    planar = np.full((2, 3, 112, 112), 9.0, np.float32)
    interleaved = np.full((2, 112, 112, 3), 9, np.uint8)
    align_faces_into(image, landmarks[None], planar, 1, mean=127.5, std=127.5)
    align_faces_into(image, landmarks[None], interleaved, 1)
    assert (planar[1] == -1.0).all() and (planar[0] == 9.0).all()
    assert (interleaved[1] == 0).all() and (interleaved[0] == 9).all()


@pytest.mark.parametrize("offset", [1e7, -1e12, 3e38])
def test_landmarks_far_outside_give_black_crops(offset) -> None:
    landmarks = (TEMPLATE + offset).astype(np.float32)
    matrix = similarity_transform(landmarks)
    assert np.isfinite(matrix).all()
    out = np.full((1, 3, 112, 112), 9.0, np.float32)
    align_faces_into(make_image(), landmarks[None], out)
    assert (out == -1.0).all()


# --- warp -----------------------------------------------------------------------------------------


def test_uint8_crops_match_numpy_reference_and_opencv() -> None:
    rng = np.random.default_rng(2)
    image = make_image(2)
    landmarks = face_landmarks(rng, 20)
    out = np.zeros((20, 112, 112, 3), np.uint8)
    align_faces_into(image, landmarks, out)
    for face, crop in zip(landmarks, out):
        matrix = umeyama(face, TEMPLATE)
        reference = reference_warp(image, matrix).astype(np.int16)
        diff = np.abs(crop.astype(np.int16) - reference)
        # float32 vs float64 interpolation may round a .5 differently, nothing more.
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
        opencv = cv2.warpAffine(image, matrix, (112, 112), borderValue=0).astype(np.int16)
        diff = np.abs(crop.astype(np.int16) - opencv)
        # OpenCV interpolates in fixed point (1/32 px positions, 15-bit weights).
        assert diff.max() <= 2 and diff.mean() < 0.05


def test_float_crops_match_immich_blob() -> None:
    """Immich (insightface): warpAffine to uint8, then blobFromImages (x - 127.5) / 127.5."""
    rng = np.random.default_rng(3)
    image = make_image(3)
    landmarks = face_landmarks(rng, 8)
    out = np.zeros((8, 3, 112, 112), np.float32)
    align_faces_into(image, landmarks, out)
    crops = [cv2.warpAffine(image, umeyama(f, TEMPLATE), (112, 112)) for f in landmarks]
    blob = cv2.dnn.blobFromImages(crops, 1 / 127.5, (112, 112), (127.5,) * 3, swapRB=False)
    assert np.abs(out - blob).max() <= 2 / 127.5 + 1e-6
    assert np.abs(out - blob).mean() < 0.05 / 127.5


def test_float_output_is_normalized_uint8_output() -> None:
    rng = np.random.default_rng(4)
    image = make_image(4)
    landmarks = face_landmarks(rng, 6)
    planar = np.zeros((6, 3, 112, 112), np.float32)
    interleaved = np.zeros((6, 112, 112, 3), np.uint8)
    align_faces_into(image, landmarks, planar, mean=100.0, std=50.0)
    align_faces_into(image, landmarks, interleaved)
    # float32 arithmetic: (pixel - mean) * float32(1 / std), as cv2.dnn.blobFromImage computes it.
    expected = (interleaved.astype(np.float32) - np.float32(100.0)) * np.float32(1 / 50.0)
    np.testing.assert_array_equal(planar, expected.transpose(0, 3, 1, 2))


def test_faces_partly_or_fully_outside_the_image() -> None:
    rng = np.random.default_rng(5)
    image = make_image(5)
    corners = np.concatenate(
        [
            face_landmarks(rng, 4, ((-40, 40), (-40, 40))),
            face_landmarks(rng, 4, ((W - 40, W + 40), (H - 40, H + 40))),
            face_landmarks(rng, 2, ((W + 500, W + 600), (0, H))),
        ]
    )
    out = np.zeros((len(corners), 112, 112, 3), np.uint8)
    align_faces_into(image, corners, out)
    for face, crop in zip(corners, out):
        reference = reference_warp(image, umeyama(face, TEMPLATE)).astype(np.int16)
        assert np.abs(crop.astype(np.int16) - reference).max() <= 1
    assert (out[:8] == 0).any(axis=-1).mean() > 0.05  # real border area is black
    assert (out[-2:] == 0).all()


def test_read_only_inputs_are_accepted() -> None:
    rng = np.random.default_rng(9)
    image, landmarks = make_image(9), face_landmarks(rng, 2)
    expected = np.zeros((2, 3, 112, 112), np.float32)
    align_faces_into(image, landmarks, expected)
    image.setflags(write=False)
    landmarks.setflags(write=False)
    found = np.zeros((2, 3, 112, 112), np.float32)
    align_faces_into(image, landmarks, found)
    np.testing.assert_array_equal(found, expected)
    np.testing.assert_allclose(similarity_transform(landmarks[0]), umeyama(landmarks[0], TEMPLATE), atol=1e-9)


def test_only_the_target_slots_are_written() -> None:
    rng = np.random.default_rng(6)
    image = make_image(6)
    landmarks = face_landmarks(rng, 3)
    out = np.full((7, 3, 112, 112), 42.0, np.float32)
    align_faces_into(image, landmarks, out, 3)
    assert (out[:3] == 42.0).all() and (out[6] == 42.0).all()
    assert (out[3:6] != 42.0).all(axis=(1, 2, 3)).all()
    alone = np.zeros((1, 3, 112, 112), np.float32)
    align_faces_into(image, landmarks[1:2], alone)
    np.testing.assert_array_equal(out[4], alone[0])
    align_faces_into(image, landmarks[:0], out, 7)  # no faces: nothing to do, even at the end


def test_threads_give_the_serial_results() -> None:
    rng = np.random.default_rng(7)
    images = [make_image(s) for s in range(4)]
    jobs = [(images[i % 4], face_landmarks(rng, 5)) for i in range(24)]

    def run(job: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        out = np.empty((5, 3, 112, 112), np.float32)
        align_faces_into(job[0], job[1], out)
        return out

    serial = [run(job) for job in jobs]
    with ThreadPoolExecutor(8) as pool:
        for expected, found in zip(serial, pool.map(run, jobs)):
            np.testing.assert_array_equal(found, expected)


def _ok() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return make_image(), face_landmarks(np.random.default_rng(8), 2), np.zeros((4, 3, 112, 112), np.float32)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image": np.zeros((H, W, 3), np.float32)}, "uint8"),
        ({"image": np.zeros((H, W, 4), np.uint8)}, "shape"),
        ({"image": np.zeros((0, W, 3), np.uint8)}, "shape"),
        ({"image": np.zeros((H, 2 * W, 3), np.uint8)[:, ::2]}, "C-contiguous"),
        ({"landmarks": np.zeros((2, 5, 2), np.float64)}, "float32"),
        ({"landmarks": np.zeros((2, 4, 2), np.float32)}, "shape"),
        ({"landmarks": np.zeros((2, 2, 5), np.float32).transpose(0, 2, 1)}, "C-contiguous"),
        ({"out": np.zeros((4, 3, 112, 112), np.float64)}, "float32"),
        ({"out": np.zeros((4, 3, 100, 112), np.float32)}, "shape"),
        ({"out": np.zeros((4, 112, 112, 3), np.float32)}, "shape"),
        ({"out": np.zeros((4, 3, 112, 112), np.uint8)}, "shape"),
        ({"out": np.zeros((4, 3, 112, 112), np.float32, order="F")}, "C-contiguous"),
        ({"out": "buffer"}, "numpy array"),
        ({"start": 3}, "do not fit"),
        ({"start": -1}, "do not fit"),
        ({"start": 1.0}, "integer"),
        ({"std": 0.0}, "std"),
        ({"mean": float("nan")}, "mean"),
    ],
)
def test_bad_input_raises_invalid_input(change, message) -> None:
    image, landmarks, out = _ok()
    args = {"image": image, "landmarks": landmarks, "out": out, "start": 0} | change
    kwargs = {k: args.pop(k) for k in ("mean", "std") if k in args}
    with pytest.raises(InvalidInput, match=message):
        align_faces_into(args["image"], args["landmarks"], args["out"], args["start"], **kwargs)


def test_read_only_out_and_bad_similarity_input_raise() -> None:
    image, landmarks, out = _ok()
    out.setflags(write=False)
    with pytest.raises(InvalidInput, match="writable"):
        align_faces_into(image, landmarks, out)
    with pytest.raises(InvalidInput, match="shape"):
        similarity_transform(np.zeros((4, 2), np.float32))
    with pytest.raises(InvalidInput, match="float32"):
        similarity_transform(np.zeros((5, 2)))
