"""sensor_msgs/Image <-> numpy without ROS imports, operating on the message's plain fields.

Why our own codec: cv_bridge is not on PyPI (the venv path has no ROS distro), and even where it
exists it raises assorted exceptions (or segfaults on some versions) for a malformed message. The
node must survive any message a buggy driver can publish, so every header field is validated
*before* the data buffer is touched, and each failure raises :class:`ImageDecodeError` with a short
``reason`` key that the node turns into a diagnostics counter.

Supported encodings: rgb8, bgr8, rgba8, bgra8, mono8, mono16 (+ the OpenCV aliases 8UC1, 8UC3,
8UC4, 16UC1). Row padding (``step`` > width × bytes per pixel) is legal in ROS and handled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: encoding -> (channels, bytes per channel, channel order of the stored data)
ENCODINGS: dict[str, tuple[int, int, str]] = {
    "rgb8": (3, 1, "rgb"),
    "bgr8": (3, 1, "bgr"),
    "rgba8": (4, 1, "rgba"),
    "bgra8": (4, 1, "bgra"),
    "mono8": (1, 1, "mono"),
    "mono16": (1, 2, "mono"),
    "8UC1": (1, 1, "mono"),
    "8UC3": (3, 1, "bgr"),
    "8UC4": (4, 1, "bgra"),
    "16UC1": (1, 2, "mono"),
}

#: Largest side accepted. 8192 covers every camera a pose node meets; a 16384×16384 header is a
#: corrupt or hostile message and must be refused before any allocation.
MAX_SIDE = 8192
#: Largest buffer accepted (bytes), so a large-but-legal header cannot pin gigabytes.
MAX_BYTES = 256 * 1024 * 1024


class ImageDecodeError(ValueError):
    """A message that cannot be decoded; ``reason`` is a stable key for diagnostics counters."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ImageFields:
    """The fields of sensor_msgs/Image that describe pixels (header excluded)."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: bytes | bytearray | memoryview | np.ndarray


def _nbytes(data: bytes | bytearray | memoryview | np.ndarray) -> int:
    """Byte length of any buffer rclpy may hand us (bytes, array.array('B'), memoryview)."""
    return memoryview(data).nbytes


def validate(fields: ImageFields) -> tuple[int, int]:
    """Check header and buffer consistency; returns (channels, bytes per channel).

    Raises:
        ImageDecodeError: with reason ``encoding``, ``size``, ``step`` or ``data_length``.
    """
    spec = ENCODINGS.get(fields.encoding)
    if spec is None:
        raise ImageDecodeError(
            "encoding",
            f"unsupported encoding {fields.encoding!r} (supported: {', '.join(ENCODINGS)})",
        )
    channels, depth, _ = spec
    h, w, step = int(fields.height), int(fields.width), int(fields.step)
    if h <= 0 or w <= 0:
        raise ImageDecodeError("size", f"image has zero size ({w}x{h})")
    if h > MAX_SIDE or w > MAX_SIDE:
        raise ImageDecodeError("size", f"image size {w}x{h} exceeds the {MAX_SIDE} px limit")
    row = w * channels * depth
    if step < row:
        raise ImageDecodeError(
            "step", f"step {step} is smaller than width*bytes_per_pixel = {row} ({fields.encoding})"
        )
    if step % depth:
        raise ImageDecodeError("step", f"step {step} is not a multiple of the {depth}-byte sample")
    if step * h > MAX_BYTES:
        raise ImageDecodeError("size", f"image buffer {step * h} bytes exceeds {MAX_BYTES}")
    n = _nbytes(fields.data)
    # The last row may omit its padding; anything shorter cannot hold the pixels.
    needed = step * (h - 1) + row
    if n < needed:
        raise ImageDecodeError(
            "data_length", f"data has {n} bytes, expected step*height = {step * h} ({w}x{h})"
        )
    return channels, depth


def decode(fields: ImageFields) -> np.ndarray:
    """Pixels as stored: (H, W) for mono, (H, W, C) otherwise; uint8 or uint16 in native order.

    The result is a copy, so it stays valid after the message buffer is released.
    """
    channels, depth = validate(fields)
    h, w, step = int(fields.height), int(fields.width), int(fields.step)
    buf = np.frombuffer(memoryview(fields.data).cast("B"), dtype=np.uint8)
    if len(buf) < step * h:  # last row without padding: pad so the strided view is in bounds
        buf = np.concatenate([buf, np.zeros(step * h - len(buf), np.uint8)])
    rows = buf[: step * h].reshape(h, step)[:, : w * channels * depth]
    if depth == 2:
        dtype = np.dtype(">u2" if fields.is_bigendian else "<u2")
        pixels = rows.copy().view(dtype).astype(np.uint16)
    else:
        pixels = rows.copy()
    return pixels.reshape(h, w) if channels == 1 else pixels.reshape(h, w, channels)


def to_rgb8(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """Convert decoded pixels to contiguous (H, W, 3) uint8 RGB, the network's input format.

    mono16 is stretched by the frame's maximum: 16-bit mono cameras (IR, 10/12-bit sensors in
    16-bit containers) rarely use the full range, and a fixed ``>> 8`` would make them black.
    """
    spec = ENCODINGS.get(encoding)
    if spec is None:
        raise ImageDecodeError("encoding", f"unsupported encoding {encoding!r}")
    _, depth, order = spec
    if depth == 2:
        peak = int(pixels.max()) if pixels.size else 0
        pixels = (pixels.astype(np.float32) * (255.0 / peak) if peak else pixels * 0).astype(
            np.uint8
        )
    if order == "mono":
        return np.ascontiguousarray(np.repeat(pixels[:, :, None], 3, axis=2))
    if order == "rgb":
        return np.ascontiguousarray(pixels)
    if order == "bgr":
        return np.ascontiguousarray(pixels[:, :, ::-1])
    if order == "rgba":
        return np.ascontiguousarray(pixels[:, :, :3])
    return np.ascontiguousarray(pixels[:, :, 2::-1])  # bgra


def decode_rgb8(fields: ImageFields) -> np.ndarray:
    """Validate + decode + convert in one call: (H, W, 3) uint8 RGB."""
    return to_rgb8(decode(fields), fields.encoding)


def encode(pixels: np.ndarray, encoding: str) -> ImageFields:
    """Pack an array into Image fields (little-endian, no row padding).

    Raises:
        ValueError: the array's shape/dtype does not match ``encoding``.
    """
    spec = ENCODINGS.get(encoding)
    if spec is None:
        raise ValueError(f"unsupported encoding {encoding!r}")
    channels, depth, _ = spec
    want_dtype = np.uint16 if depth == 2 else np.uint8
    if pixels.dtype != want_dtype:
        raise ValueError(f"{encoding} needs dtype {np.dtype(want_dtype)}, got {pixels.dtype}")
    if channels == 1:
        if pixels.ndim != 2:
            raise ValueError(f"{encoding} needs an (H, W) array, got shape {pixels.shape}")
    elif pixels.ndim != 3 or pixels.shape[2] != channels:
        raise ValueError(f"{encoding} needs an (H, W, {channels}) array, got {pixels.shape}")
    h, w = pixels.shape[:2]
    data = np.ascontiguousarray(pixels.astype(pixels.dtype.newbyteorder("<"), copy=False))
    return ImageFields(
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=w * channels * depth,
        data=data.tobytes(),
    )
