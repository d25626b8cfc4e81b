"""Letterbox an RGB frame into the square network input and normalise it.

Letterboxing (scale to fit, pad the rest) keeps the aspect ratio, so the skeleton's proportions in
the input match the camera's; :class:`Letterbox` remembers the transform so 2D joints can be mapped
back to image pixels exactly (see ``lift.py``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..runtime.options import strip_width
from .area_resample import area_normalise

#: OpenCV worker threads in a process that runs the estimator per camera frame (the node, the
#: budget replay): one. Why: the inference runtime owns the cores (OpenVINO pins its threads);
#: OpenCV's own pool, woken for each frame's resize, only adds scheduling jitter. Measured on
#: real video (budget replay, dense path, 5 interleaved pairs, ``docs/benchmarks.md``, latency
#: budget): frames within ±10 % of the budget 79.8 % with one thread against 77.1 % with
#: OpenCV's default two (never fewer in a pair), the calibration latencies no higher.
OPENCV_THREADS = 1


def limit_opencv_threads() -> None:
    """Set OpenCV's thread pool to :data:`OPENCV_THREADS` for this process (it is global)."""
    cv2.setNumThreads(OPENCV_THREADS)


@dataclass(frozen=True)
class Letterbox:
    """Image -> input transform: ``input = image * scale + (pad_x, pad_y)`` in pixels.

    Attributes:
        scale: input pixels per image pixel.
        pad_x, pad_y: offset of the image's top-left corner inside the input (input pixels).
        input_size: side S of the square input.
        image_width, image_height: size of the source image.
        input_width: 0, or the width W < S of the strip the network reads: the square's
            central columns [(S - W) / 2, (S + W) / 2). Everything else (the transform, the
            network's joints, ``model.heads.strip_to_square``) stays in the square's frame;
            only what is cut from the image and computed shrinks. For an upright person the
            square's sides are background: a 192 × 128 strip is 2/3 of the work.
    """

    scale: float
    pad_x: float
    pad_y: float
    input_size: int
    image_width: int
    image_height: int
    input_width: int = 0

    @classmethod
    def fit(cls, image_width: int, image_height: int, input_size: int) -> Letterbox:
        """Largest scale that fits the image into the input, centred."""
        if image_width <= 0 or image_height <= 0:
            raise ValueError(f"image size must be positive, got {image_width}x{image_height}")
        if input_size <= 0:
            raise ValueError(f"input_size must be positive, got {input_size}")
        scale = input_size / max(image_width, image_height)
        new_w, new_h = _scaled_size(image_width, image_height, scale)
        return cls(
            scale=scale,
            pad_x=(input_size - new_w) // 2,
            pad_y=(input_size - new_h) // 2,
            input_size=input_size,
            image_width=image_width,
            image_height=image_height,
        )

    @classmethod
    def window(
        cls, image_width: int, image_height: int, input_size: int, x0: int, y0: int, side: int,
        input_width: int = 0,
    ) -> Letterbox:  # fmt: skip
        """The square image window [x0, x0 + side) × [y0, y0 + side) scaled onto the input (a
        crop around a tracked person; the window may reach past the image's edges), of which
        the network reads the central ``input_width`` columns when that is not 0 (``side``
        must then be a multiple of :func:`strip_side_multiple`, so the strip's columns are
        whole image pixels)."""
        if image_width <= 0 or image_height <= 0 or input_size <= 0 or side <= 0:
            raise ValueError(
                f"need positive sizes, got image {image_width}x{image_height}, input "
                f"{input_size}, window side {side}"
            )
        width = strip_width(input_size, input_width)
        if width:
            if not 0 < width < input_size or (input_size - width) % 2:
                raise ValueError(f"input_width must be in (0, {input_size}) with an even "
                                 f"difference, got {input_width}")  # fmt: skip
            multiple = strip_side_multiple(input_size, width)
            if side % multiple:
                raise ValueError(f"a {input_size}x{width} strip needs a window side that is a "
                                 f"multiple of {multiple}, got {side}")  # fmt: skip
        scale = input_size / side
        return cls(scale=scale, pad_x=-x0 * scale, pad_y=-y0 * scale, input_size=input_size,
                   image_width=image_width, image_height=image_height,
                   input_width=width)  # fmt: skip

    @property
    def input_hw(self) -> tuple[int, int]:
        """(height, width) of the network input this transform feeds."""
        return self.input_size, self.input_width or self.input_size

    def strip_rect(self) -> tuple[int, int, int, int]:
        """(x0, y0, width, height) in image pixels of what the network reads: the window, or
        its central strip."""
        x0, y0, side = self.window_rect()
        if not self.input_width:
            return x0, y0, side, side
        width = side * self.input_width // self.input_size
        return x0 + (side - width) // 2, y0, width, side

    def window_rect(self) -> tuple[int, int, int]:
        """(x0, y0, side) in image pixels of the square the input shows (inverse of
        :meth:`window`)."""
        return (round(-self.pad_x / self.scale), round(-self.pad_y / self.scale),
                max(1, round(self.input_size / self.scale)))  # fmt: skip

    def normalised_to_image(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) coordinates in [0, 1] of the input -> image pixels (x right, y down)."""
        xy = np.asarray(xy, dtype=np.float64)
        px = xy * self.input_size - np.array([self.pad_x, self.pad_y])
        return px / self.scale

    def image_to_normalised(self, px: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`normalised_to_image`."""
        px = np.asarray(px, dtype=np.float64)
        return (px * self.scale + np.array([self.pad_x, self.pad_y])) / self.input_size

    def content_box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the image inside the input, in input pixels (end exclusive),
        clipped to the input (a crop window shows only part of the image)."""
        new_w, new_h = _scaled_size(self.image_width, self.image_height, self.scale)
        x0, y0 = round(self.pad_x), round(self.pad_y)
        s = self.input_size
        return max(0, x0), max(0, y0), min(s, x0 + new_w), min(s, y0 + new_h)

    def input_to_image_matrix(self) -> np.ndarray:
        """2×3 affine matrix mapping input pixel coordinates to image pixel coordinates."""
        inv = 1.0 / self.scale
        return np.array([[inv, 0.0, -self.pad_x * inv], [0.0, inv, -self.pad_y * inv]])


def shrink(src: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """``src`` (H, W, C) resized to (out_h, out_w): an area filter when shrinking, bilinear when
    enlarging — halving first while the source is at least four times the output and has even
    sides (so the last step still averages over two or more source pixels per output pixel,
    as the single resize does; halving down to less than that moved values by up to 9 levels).

    Why the halving: OpenCV's area filter has a fast path for whole-number factors and a slow
    general one; an HD camera frame's person crop (~1000 × 500 px to 224 × 96) took 2–3 ms in
    the general one, a quarter of the node's frame, and a whole 1920 × 1080 frame to 256 px
    9 ms. Halving an even-sided image is exact in geometry (each output pixel averages the same
    2 × 2 input pixels, so the window still maps to the whole output), about halves the time,
    and moves pixel values by 0.3 levels on average (at most a few) against the single area
    resize (``test/pipeline/test_preprocess_lift.py``)."""
    h, w = src.shape[:2]
    while h >= 4 * out_h and w >= 4 * out_w and h % 2 == 0 and w % 2 == 0:
        h, w = h // 2, w // 2
        src = cv2.resize(src, (w, h), interpolation=cv2.INTER_AREA)
    interp = cv2.INTER_AREA if h > out_h else cv2.INTER_LINEAR
    return cv2.resize(src, (out_w, out_h), interpolation=interp)


def _scaled_size(w: int, h: int, scale: float) -> tuple[int, int]:
    return max(1, round(w * scale)), max(1, round(h * scale))


def check_frame(rgb: np.ndarray, box: Letterbox | None = None) -> tuple[int, int]:
    """(H, W) of ``rgb`` after checking it is (H, W, 3) uint8 RGB [and the frame ``box`` was
    made for]; ValueError otherwise."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    h, w = rgb.shape[:2]
    if box is not None and (box.image_width, box.image_height) != (w, h):
        raise ValueError(f"window is for {box.image_width}x{box.image_height}, image is {w}x{h}")
    return h, w


def letterbox(
    rgb: np.ndarray, input_size: int, fill: tuple[int, int, int] = (0, 0, 0)
) -> tuple[np.ndarray, Letterbox]:
    """Resize ``rgb`` (H, W, 3) uint8 into an (S, S, 3) canvas; returns (canvas, transform).

    ``fill`` should be the normalisation mean (×255) so padding becomes 0 after normalisation and
    gives the mask units nothing to react to.
    """
    h, w = check_frame(rgb)
    box = Letterbox.fit(w, h, input_size)
    x0, y0, x1, y1 = box.content_box()
    resized = shrink(rgb, x1 - x0, y1 - y0)
    canvas = np.empty((input_size, input_size, 3), np.uint8)
    canvas[:] = np.asarray(fill, np.uint8)
    canvas[y0:y1, x0:x1] = resized
    return canvas, box


def letterbox_tensor(
    rgb: np.ndarray, input_size: int, fill: tuple[int, int, int],
    mean: tuple[float, float, float], std: tuple[float, float, float],
) -> tuple[np.ndarray, Letterbox]:
    """:func:`letterbox` + :func:`normalise` in one: the (1, 3, S, S) input and its transform,
    compiled where the frame is shrunk (``area_resample``), else through the uint8 canvas."""
    h, w = check_frame(rgb)
    box = Letterbox.fit(w, h, input_size)
    x0, y0, x1, y1 = box.content_box()
    x = area_normalise(rgb, (0, 0, w, h), (input_size, input_size), (x0, y0, x1 - x0, y1 - y0),
                       fill, mean, std)  # fmt: skip
    if x is None:
        canvas, box = letterbox(rgb, input_size, fill)
        x = normalise(canvas, mean, std)
    return x, box


def crop_tensor(
    rgb: np.ndarray, box: Letterbox, fill: tuple[int, int, int],
    mean: tuple[float, float, float], std: tuple[float, float, float],
) -> np.ndarray:
    """:func:`crop_window` + :func:`normalise` in one: the (1, 3, S, W) input of a tracking
    window, compiled where the window is shrunk (``area_resample``), else through the canvas."""
    check_frame(rgb, box)
    s, out_w = box.input_hw
    x = area_normalise(rgb, box.strip_rect(), (s, out_w), (0, 0, out_w, s), fill, mean, std)
    return normalise(crop_window(rgb, box, fill), mean, std) if x is None else x


def strip_side_multiple(input_size: int, input_width: int) -> int:
    """Smallest m such that a window side that is a multiple of m puts a ``input_width``
    strip's edges of an ``input_size`` input on whole image pixels (1 for a square)."""
    margin = input_size - (input_width or input_size)
    return 2 * input_size // math.gcd(margin, 2 * input_size)


def crop_window(
    rgb: np.ndarray, box: Letterbox, fill: tuple[int, int, int] = (0, 0, 0)
) -> np.ndarray:
    """(S, W, 3) canvas of a :meth:`Letterbox.window` box: the image region it reads (the
    window, or its central strip; ``fill`` where it reaches past the image) resized with an
    area filter when shrinking (:func:`shrink`)."""
    h, w = check_frame(rgb, box)
    x0, y0, rw, rh = box.strip_rect()
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + rw), min(h, y0 + rh)
    if sx1 <= sx0 or sy1 <= sy0:  # entirely off the image: fill only
        region = np.empty((rh, rw, 3), np.uint8)
        region[:] = np.asarray(fill, np.uint8)
    else:  # a view of the image, padded by OpenCV only where the window leaves it (no copy
        # of an HD frame's window first: that was half of the crop's 10 ms)
        region = rgb[sy0:sy1, sx0:sx1]
        if (sx0, sy0, sx1, sy1) != (x0, y0, x0 + rw, y0 + rh):
            region = cv2.copyMakeBorder(region, sy0 - y0, y0 + rh - sy1, sx0 - x0,
                                        x0 + rw - sx1, cv2.BORDER_CONSTANT,
                                        value=tuple(int(v) for v in fill))  # fmt: skip
    s, out_w = box.input_hw
    return shrink(region, out_w, s)


@functools.lru_cache(maxsize=8)
def _normalise_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(3, 256) float32: every uint8 value's ``(v/255 - mean) / std`` per channel, computed as
    the arithmetic :func:`normalise` replaced (float32 multiply, subtract, divide)."""
    v = np.arange(256, dtype=np.float32)[None, :] * np.float32(1.0 / 255.0)
    table = (v - np.asarray(mean, np.float32)[:, None]) / np.asarray(std, np.float32)[:, None]
    table.flags.writeable = False
    return table


def normalise(
    canvas: np.ndarray, mean: tuple[float, float, float], std: tuple[float, float, float]
) -> np.ndarray:
    """(S, W, 3) uint8 RGB -> (1, 3, S, W) float32 ``(rgb/255 - mean) / std`` (C-contiguous).

    A table lookup per channel straight into the planar output: float arithmetic on the
    (S, W, 3) canvas and a transposing copy took ~1.0-1.3 ms of a frame at 256 px, the lookup
    ~0.45 (2-core Xeon), with the same values."""
    if canvas.ndim != 3 or canvas.shape[2] != 3 or canvas.dtype != np.uint8:
        raise ValueError(f"expected (S, W, 3) uint8 RGB, got {canvas.shape} {canvas.dtype}")
    table = _normalise_table(tuple(float(m) for m in mean), tuple(float(s) for s in std))
    out = np.empty((1, 3, canvas.shape[0], canvas.shape[1]), np.float32)
    for c in range(3):
        np.take(table[c], canvas[:, :, c], out=out[0, c])
    return out


def mean_fill(mean: tuple[float, float, float]) -> tuple[int, int, int]:
    """The uint8 RGB colour that normalises to (about) zero."""
    r, g, b = (int(round(min(max(m, 0.0), 1.0) * 255)) for m in mean)
    return r, g, b
