"""The compiled input resampler (``pipeline/area_resample``): the exact area filter of a window
(fill past the image) onto its output rectangle, normalised and planar — checked against a
float64 reference built from coverage matrices, against the OpenCV path it replaces, and its
fallbacks (enlarging, no compiler)."""

from __future__ import annotations

import numpy as np
import pytest

from sparse_pose_ros.pipeline import area_resample
from sparse_pose_ros.pipeline.preprocess import (
    Letterbox,
    crop_tensor,
    crop_window,
    letterbox,
    letterbox_tensor,
    mean_fill,
    normalise,
)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FILL = mean_fill(MEAN)

pytestmark = pytest.mark.skipif(area_resample.load() is None,
                                reason="no C compiler here: the resampler falls back to OpenCV")


def _coverage(n_src: int, n_dst: int) -> np.ndarray:
    """(n_dst, n_src): output pixel j averages [j s, (j + 1) s) of the source, s = n_src/n_dst."""
    s = n_src / n_dst
    m = np.zeros((n_dst, n_src))
    for j in range(n_dst):
        a, b = j * s, (j + 1) * s
        for i in range(int(np.floor(a)), min(n_src, int(np.ceil(b)))):
            m[j, i] = (min(b, i + 1) - max(a, i)) / s
    return m


def _reference(rgb: np.ndarray, src: tuple[int, int, int, int], out_hw: tuple[int, int],
               dst: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, rw, rh = src
    ox, oy, ow, oh = dst
    h, w = rgb.shape[:2]
    win = np.empty((rh, rw, 3))
    win[:] = FILL
    ys, xs = slice(max(0, y0), min(h, y0 + rh)), slice(max(0, x0), min(w, x0 + rw))
    if ys.stop > ys.start and xs.stop > xs.start:
        win[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = rgb[ys, xs]
    ry, rx = _coverage(rh, oh), _coverage(rw, ow)
    canvas = np.empty((*out_hw, 3))
    canvas[:] = FILL
    canvas[oy : oy + oh, ox : ox + ow] = np.einsum("yi,ijc,xj->yxc", ry, win, rx)
    x = (canvas / 255.0 - np.asarray(MEAN)) / np.asarray(STD)
    return x.transpose(2, 0, 1)[None]


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


CASES = [  # (image hw, src rect, out hw, dst rect)
    ((108, 192), (0, 0, 192, 108), (32, 32), (0, 7, 32, 18)),  # letterbox, factor 6
    ((99, 173), (0, 0, 173, 99), (32, 32), (0, 7, 32, 18)),  # non-integer factors
    ((80, 60), (10, 5, 40, 40), (16, 16), (0, 0, 16, 16)),  # a window inside
    ((80, 60), (-12, -7, 45, 45), (16, 16), (0, 0, 16, 16)),  # past the top-left
    ((80, 60), (30, 50, 45, 45), (16, 16), (0, 0, 16, 16)),  # past the bottom-right
    ((80, 60), (100, 100, 20, 20), (8, 8), (0, 0, 8, 8)),  # entirely off the image
    ((80, 60), (20, 10, 15, 40), (16, 6), (0, 0, 6, 16)),  # a strip
    ((40, 40), (0, 0, 40, 40), (40, 40), (0, 0, 40, 40)),  # factor 1: a copy
]


@pytest.mark.parametrize(("hw", "src", "out_hw", "dst"), CASES)
def test_the_area_filter_equals_the_coverage_reference(hw, src, out_hw, dst):
    rgb = _image(*hw)
    got = area_resample.area_normalise(rgb, src, out_hw, dst, FILL, MEAN, STD)
    assert got is not None and got.shape == (1, 3, *out_hw) and got.dtype == np.float32
    np.testing.assert_allclose(got, _reference(rgb, src, out_hw, dst), rtol=0, atol=2e-5)


def test_a_strided_view_of_a_frame_is_read_in_place():
    """A row-strided view (a frame's crop in memory) reads the same as its packed copy."""
    frame = _image(90, 120, seed=3)
    view = frame[5:85, 10:110]
    a = area_resample.area_normalise(view, (3, 4, 50, 60), (20, 20), (0, 0, 20, 20), FILL,
                                     MEAN, STD)  # fmt: skip
    b = area_resample.area_normalise(np.ascontiguousarray(view), (3, 4, 50, 60), (20, 20),
                                     (0, 0, 20, 20), FILL, MEAN, STD)  # fmt: skip
    np.testing.assert_array_equal(a, b)


def _smooth(h: int, w: int) -> np.ndarray:
    """A camera-like frame (smooth gradients), where the two filters agree closely."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    chans = [np.sin(6 * x + 2 * y), np.cos(4 * y - 3 * x), np.sin(9 * x * y + 1)]
    return np.stack([(127.5 + 120 * c) for c in chans], -1).round().astype(np.uint8)


def test_letterbox_and_crop_tensors_match_the_opencv_path_they_replace():
    rgb = _smooth(540, 960)
    x, box = letterbox_tensor(rgb, 64, FILL, MEAN, STD)
    canvas, box_cv = letterbox(rgb, 64, FILL)
    assert box == box_cv
    levels = np.abs(x - normalise(canvas, MEAN, STD)) * 255 * np.asarray(STD)[:, None, None]
    assert levels.max() < 2.5 and levels.mean() < 0.5  # rounding and OpenCV's halving step
    crop = Letterbox.window(960, 540, 64, 560, -100, 640, 24)  # a strip past two edges
    x = crop_tensor(rgb, crop, FILL, MEAN, STD)
    ref = normalise(crop_window(rgb, crop, FILL), MEAN, STD)
    assert x.shape == ref.shape == (1, 3, 64, 24)
    levels = np.abs(x - ref) * 255 * np.asarray(STD)[:, None, None]
    assert levels.max() < 2.5 and levels.mean() < 0.5


def test_enlarging_falls_back_to_opencv():
    """A window smaller than its output is OpenCV's bilinear filter's job: the same tensor as
    the canvas path, exactly."""
    rgb = _smooth(30, 40)
    assert area_resample.area_normalise(rgb, (0, 0, 40, 30), (64, 64), (0, 8, 64, 48), FILL,
                                        MEAN, STD) is None  # fmt: skip
    x, _ = letterbox_tensor(rgb, 64, FILL, MEAN, STD)
    np.testing.assert_array_equal(x, normalise(letterbox(rgb, 64, FILL)[0], MEAN, STD))


def test_without_a_compiler_the_opencv_path_runs(monkeypatch, tmp_path):
    monkeypatch.setattr(area_resample, "_lib", None)
    monkeypatch.setattr(area_resample, "_failed", False)
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert area_resample.load() is None
    rgb = _smooth(120, 200)
    x, _ = letterbox_tensor(rgb, 32, FILL, MEAN, STD)
    np.testing.assert_array_equal(x, normalise(letterbox(rgb, 32, FILL)[0], MEAN, STD))


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        letterbox_tensor(np.zeros((10, 10), np.uint8), 32, FILL, MEAN, STD)
    with pytest.raises(ValueError):
        area_resample.area_normalise(_image(20, 20), (0, 0, 20, 20), (8, 8), (4, 4, 8, 8),
                                     FILL, MEAN, STD)  # fmt: skip
    with pytest.raises(ValueError):
        area_resample.area_normalise(_image(20, 20)[:, ::2], (0, 0, 10, 20), (8, 8),
                                     (0, 0, 8, 8), FILL, MEAN, STD)  # fmt: skip
