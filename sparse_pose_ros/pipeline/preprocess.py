"""Letterbox an RGB frame into the square network input and normalise it.

Letterboxing (scale to fit, pad the rest) keeps the aspect ratio, so the skeleton's proportions in
the input match the camera's; :class:`Letterbox` remembers the transform so 2D joints can be mapped
back to image pixels exactly (see ``lift.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Letterbox:
    """Image -> input transform: ``input = image * scale + (pad_x, pad_y)`` in pixels.

    Attributes:
        scale: input pixels per image pixel.
        pad_x, pad_y: offset of the image's top-left corner inside the input (input pixels).
        input_size: side S of the square input.
        image_width, image_height: size of the source image.
    """

    scale: float
    pad_x: float
    pad_y: float
    input_size: int
    image_width: int
    image_height: int

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
        """(x0, y0, x1, y1) of the image inside the input, in input pixels (end exclusive)."""
        new_w, new_h = _scaled_size(self.image_width, self.image_height, self.scale)
        x0, y0 = int(self.pad_x), int(self.pad_y)
        return x0, y0, x0 + new_w, y0 + new_h


def _scaled_size(w: int, h: int, scale: float) -> tuple[int, int]:
    return max(1, round(w * scale)), max(1, round(h * scale))


def letterbox(
    rgb: np.ndarray, input_size: int, fill: tuple[int, int, int] = (0, 0, 0)
) -> tuple[np.ndarray, Letterbox]:
    """Resize ``rgb`` (H, W, 3) uint8 into an (S, S, 3) canvas; returns (canvas, transform).

    ``fill`` should be the normalisation mean (×255) so padding becomes 0 after normalisation and
    gives the mask units nothing to react to.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    h, w = rgb.shape[:2]
    box = Letterbox.fit(w, h, input_size)
    x0, y0, x1, y1 = box.content_box()
    interp = cv2.INTER_AREA if box.scale < 1.0 else cv2.INTER_LINEAR
    resized = cv2.resize(rgb, (x1 - x0, y1 - y0), interpolation=interp)
    canvas = np.empty((input_size, input_size, 3), np.uint8)
    canvas[:] = np.asarray(fill, np.uint8)
    canvas[y0:y1, x0:x1] = resized
    return canvas, box


def normalise(
    canvas: np.ndarray, mean: tuple[float, float, float], std: tuple[float, float, float]
) -> np.ndarray:
    """(S, S, 3) uint8 RGB -> (1, 3, S, S) float32 ``(rgb/255 - mean) / std`` (C-contiguous)."""
    x = canvas.astype(np.float32) * np.float32(1.0 / 255.0)
    x -= np.asarray(mean, np.float32)
    x /= np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def mean_fill(mean: tuple[float, float, float]) -> tuple[int, int, int]:
    """The uint8 RGB colour that normalises to (about) zero."""
    r, g, b = (int(round(min(max(m, 0.0), 1.0) * 255)) for m in mean)
    return r, g, b
