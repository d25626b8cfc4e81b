"""The network's input tensor straight from a camera frame, compiled (``csrc/area_resample.c``):
an area filter over an image window (past the image: the fill colour), normalised, written
channel-planar into the canvas — what ``letterbox`` / ``crop_window`` + ``normalise`` compute,
in one pass over the frame.

Why: OpenCV's area filter is fast only for whole-number factors. A 1920 x 1080 frame to a
256-px letterbox is a factor of 7.5; halved once by OpenCV's fast path and then averaged by its
general one it took 2.5 ms warm and 4.6 ms in a frame loop (2-core Xeon), and the uint8 canvas
then had to be normalised and transposed (0.5-1.3 ms): a third of a whole frame's estimate,
more than the sparse network's neck and head. The separable filter here reads the window once
(each output row sums its source rows over the window's width, vectorised; then each output
pixel its columns), skips the uint8 rounding of the canvas, and writes the planar float input.

It is plain C compiled with the machine's C compiler (``cc -O3 -march=native``, ~1 s) into a
cache directory keyed by the source, the compiler and the CPU's flags, and loaded with
``ctypes``: no torch headers (the sparse kernel's build takes ~90 s), so every backend's
pipeline can use it from the first frame. Without a compiler :func:`load` returns None and the
callers use OpenCV + :func:`.preprocess.normalise` (the same values within a few uint8 levels:
the two filters differ only in rounding and OpenCV's halving step; ``test_area_resample.py``).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..provenance import cpuinfo_field

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "area_resample.c"
CFLAGS = ("-O3", "-march=native", "-fPIC", "-shared", "-fno-math-errno")
_lib: ctypes.CDLL | None = None
_failed = False

_P_U8 = ctypes.POINTER(ctypes.c_uint8)
_P_F32 = ctypes.POINTER(ctypes.c_float)
_I64 = ctypes.c_int64


def cache_path(compiler: str) -> Path:
    """The shared library's path, keyed by source, flags, compiler and CPU flags."""
    h = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(CFLAGS).encode(), compiler.encode(),
                 (cpuinfo_field("flags") or platform.processor()).encode()):  # fmt: skip
        h.update(part + b"\0")
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return root / "sparse_pose_ros" / "area_resample" / f"{h.hexdigest()[:16]}.so"


def _build(compiler: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # built beside the target and renamed into place: a reader never sees half a library
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([compiler, *CFLAGS, "-o", tmp, str(SOURCE), "-lm"], check=True,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load() -> ctypes.CDLL | None:
    """The compiled resampler (built on first use, then cached); None where it cannot be
    built here (no C compiler), said once in the log."""
    global _lib, _failed
    if _lib is not None or _failed:
        return _lib
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or ""
    try:
        if not compiler:
            raise OSError("no C compiler (cc) on PATH")
        target = cache_path(compiler)
        if not target.exists():
            _build(compiler, target)
        lib = ctypes.CDLL(str(target))
        fn = lib.spr_area_normalise
        fn.restype = ctypes.c_int
        fn.argtypes = [_P_U8, _I64, _I64, _I64, _I64, _I64, _I64, _I64, _P_F32, _I64, _I64,
                       _I64, _I64, _I64, _I64, _P_F32, _P_F32, _P_F32]  # fmt: skip
        _lib = lib
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        log.warning("could not build the compiled input resampler (%s%s); using OpenCV's area "
                    "filter and normalise", exc, f": {detail.strip()[:300]}" if detail else "")
        _failed = True
    return _lib


@functools.lru_cache(maxsize=8)
def _constants(mean: tuple[float, ...], std: tuple[float, ...], fill: tuple[int, ...]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 (scale, offset, fill) of a model's normalisation, made once, not every frame."""
    std32 = np.asarray(std, np.float32)
    out = ((np.float32(1.0 / 255.0) / std32).astype(np.float32),
           (-np.asarray(mean, np.float32) / std32).astype(np.float32),
           np.asarray(fill, np.float32))  # fmt: skip
    for a in out:
        a.flags.writeable = False
    return out


def area_normalise(rgb: np.ndarray, src_rect: tuple[int, int, int, int],
                   out_hw: tuple[int, int], dst_rect: tuple[int, int, int, int],
                   fill: tuple[int, int, int], mean: tuple[float, float, float],
                   std: tuple[float, float, float]) -> np.ndarray | None:
    """(1, 3, S, Wc) float32: the window ``src_rect`` = (x0, y0, w, h) of ``rgb`` (H, W, 3)
    uint8 (``fill`` where it leaves the image) area-averaged onto ``dst_rect`` = (x0, y0, w, h)
    of an ``out_hw`` canvas of ``fill``, then ``(v/255 - mean) / std`` per channel.

    None where this cannot run it: no compiled resampler here, or a window smaller than its
    output on either side (enlarging: OpenCV's bilinear filter does that)."""
    lib = load()
    x0, y0, rw, rh = (int(v) for v in src_rect)
    ox, oy, ow, oh = (int(v) for v in dst_rect)
    s, wc = (int(v) for v in out_hw)
    if lib is None or rw < ow or rh < oh:
        return None
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or rgb.strides[1:] != (3, 1):
        raise ValueError(f"expected (H, W, 3) uint8 RGB with packed rows, got {rgb.shape} "
                         f"{rgb.dtype} strides {rgb.strides}")  # fmt: skip
    if ow < 1 or oh < 1 or ox < 0 or oy < 0 or ox + ow > wc or oy + oh > s:
        raise ValueError(f"output rect {dst_rect} does not fit a {s} x {wc} canvas")
    out = np.empty((1, 3, s, wc), np.float32)
    scale, offset, fill32 = _constants(tuple(map(float, mean)), tuple(map(float, std)),
                                       tuple(map(int, fill)))  # fmt: skip
    rc = lib.spr_area_normalise(
        rgb.ctypes.data_as(_P_U8), rgb.shape[0], rgb.shape[1], rgb.strides[0],
        x0, y0, rw, rh, out.ctypes.data_as(_P_F32), s, wc, ox, oy, ow, oh,
        fill32.ctypes.data_as(_P_F32), scale.ctypes.data_as(_P_F32),
        offset.ctypes.data_as(_P_F32))  # fmt: skip
    if rc != 0:
        raise ValueError(f"the resampler refused window {src_rect} -> {dst_rect} of {out_hw}")
    return out
