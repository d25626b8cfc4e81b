"""Frame sources for camera_replay and the demo: video, image folder, bundled photos, synthetic.

Each source yields RGB uint8 frames plus the intrinsics that produced them when they are known
(synthetic renders); for recorded media the replay node publishes a nominal-FOV CameraInfo.

``bundled`` needs no files of ours: it uses photos that ship inside installed packages
(scikit-image's astronaut and cameraman, matplotlib's Grace Hopper) and OpenCV's vtest.avi
pedestrian clip when Debian's opencv-doc is installed. Nothing is downloaded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from .lift import Intrinsics

LOG = logging.getLogger(__name__)

VTEST_AVI = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg")

Frame = tuple[np.ndarray, Intrinsics | None]


class SourceError(ValueError):
    """The source spec cannot be opened (names the path or the missing package)."""


def _resize_width(rgb: np.ndarray, width: int) -> np.ndarray:
    if width <= 0 or rgb.shape[1] == width:
        return rgb
    h = max(1, round(rgb.shape[0] * width / rgb.shape[1]))
    interp = cv2.INTER_AREA if width < rgb.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(rgb, (width, h), interpolation=interp)


def _as_rgb(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2))
    return np.ascontiguousarray(img[:, :, :3])


def video_frames(path: Path) -> Iterator[Frame]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SourceError(f"cannot open video {path}")
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                return
            yield np.ascontiguousarray(bgr[:, :, ::-1]), None
    finally:
        cap.release()


def folder_frames(path: Path) -> Iterator[Frame]:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {path}")
    for f in files:
        bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if bgr is None:
            LOG.warning("skipping unreadable image %s", f)
            continue
        yield np.ascontiguousarray(bgr[:, :, ::-1]), None


def image_frames(path: Path) -> Iterator[Frame]:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SourceError(f"cannot read image {path}")
    yield np.ascontiguousarray(bgr[:, :, ::-1]), None


def bundled_photos() -> list[tuple[str, np.ndarray]]:
    """Real photos of people shipped inside installed Python packages (name, RGB)."""
    out: list[tuple[str, np.ndarray]] = []
    try:
        from skimage import data as skdata

        out.append(("skimage astronaut", _as_rgb(skdata.astronaut())))
        out.append(("skimage camera", _as_rgb(skdata.camera())))
    except ImportError:
        LOG.info("scikit-image not installed: no astronaut/camera photos")
    try:
        from matplotlib import cbook

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            bgr = cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR)
        if bgr is not None:
            out.append(("matplotlib grace_hopper", np.ascontiguousarray(bgr[:, :, ::-1])))
    except (ImportError, OSError, ValueError):
        LOG.info("matplotlib sample data not available: no grace_hopper photo")
    return out


def bundled_frames() -> Iterator[Frame]:
    """vtest.avi when installed (real pedestrians, a real clip), else the bundled photos."""
    if VTEST_AVI.is_file():
        yield from video_frames(VTEST_AVI)
        return
    photos = bundled_photos()
    if not photos:
        raise SourceError("no bundled media: install scikit-image or matplotlib, or opencv-doc")
    for _, rgb in photos:
        yield rgb, None


SYNTHETIC_CLIP_FRAMES = 50


def synthetic_frames(width: int, seed: int, cache: list[Frame]) -> Iterator[Frame]:
    """Held-out ("test" split) renders of ``sparse_pose_ros.data.synthetic`` with exact K.

    Frames are independent samples (subject, pose, camera), not a continuous motion. The first
    pass renders ``SYNTHETIC_CLIP_FRAMES`` frames into ``cache``; later passes (``loop``) replay
    the cache so a looping replay does not keep a CPU core busy rendering.

    Raises:
        SourceError: the renderer (data package, pyrender, OSMesa) is not available here.
    """
    if cache:
        yield from cache
        return
    try:
        from ..data.synthetic import SyntheticConfig, SyntheticGenerator
    except (ImportError, OSError, RuntimeError) as exc:
        raise SourceError(f"synthetic source unavailable: {exc}") from exc
    size = width if width > 0 else 256
    try:
        gen = SyntheticGenerator("test", seed, SyntheticConfig(size=size))
    except (ImportError, OSError, RuntimeError, ValueError) as exc:
        raise SourceError(f"synthetic renderer cannot start: {exc}") from exc
    try:
        for i in range(SYNTHETIC_CLIP_FRAMES):
            f = gen.frame(i)
            h, w = f.image.shape[:2]
            item = (np.ascontiguousarray(f.image), Intrinsics.from_k(f.K, w, h))
            cache.append(item)
            yield item
    finally:
        gen.close()


def describe(spec: str) -> str:
    """Human-readable name of what ``spec`` will play (for logs and the demo summary)."""
    if spec == "bundled":
        return str(VTEST_AVI) if VTEST_AVI.is_file() else "bundled photos (" + ", ".join(
            name for name, _ in bundled_photos()) + ")"
    return spec


def is_video(spec: str) -> bool:
    """Whether ``spec`` plays consecutive frames of one scene (a video file, or ``bundled``
    when that is vtest.avi) rather than unrelated stills (renders, photos, image folders):
    person tracking (``PoseEstimator(track_person=True)``) only makes sense for the former."""
    if spec == "bundled":
        return VTEST_AVI.is_file()
    path = Path(spec).expanduser()
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


def open_source(spec: str, width: int = 0, seed: int = 0) -> Callable[[], Iterator[Frame]]:
    """Factory of fresh iterators over ``spec`` (called again to loop).

    ``spec``: a video file, an image folder, "bundled" or "synthetic". ``width`` > 0 resizes
    frames to that width (aspect kept); intrinsics of synthetic frames are scaled with them.
    """
    if spec == "synthetic":
        cache: list[Frame] = []

        def make() -> Iterator[Frame]:
            return synthetic_frames(width, seed, cache)
    elif spec == "bundled":
        def make() -> Iterator[Frame]:
            return bundled_frames()
    else:
        path = Path(spec).expanduser()
        if path.is_dir():
            def make() -> Iterator[Frame]:
                return folder_frames(path)
        elif path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            def make() -> Iterator[Frame]:
                return video_frames(path)
        elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            def make() -> Iterator[Frame]:
                return image_frames(path)
        else:
            raise SourceError(
                f"source {spec!r} is not a video ({', '.join(VIDEO_SUFFIXES)}), an image, an "
                "image folder, 'bundled' or 'synthetic'"
            )

    def resized() -> Iterator[Frame]:
        for rgb, intr in make():
            out = _resize_width(rgb, width)
            if intr is not None and out.shape[1] != rgb.shape[1]:
                s = out.shape[1] / rgb.shape[1]
                intr = Intrinsics(intr.fx * s, intr.fy * s, intr.cx * s, intr.cy * s,
                                  out.shape[1], out.shape[0], intr.source)
            yield out, intr

    return resized
