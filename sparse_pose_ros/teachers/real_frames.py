"""The real-image frame set: every real photo/video with people that exists offline here.

There is no real 3D ground truth anywhere on this machine (see /work/shared/DATA.md), so real
frames serve one purpose: checking that a model trained on synthetic renders still finds people
in camera images, by agreement with a peer (BlazePose). The set:

* ``astronaut`` — scikit-image ``data.astronaut()`` (512×512, upper body, one person);
* ``camera`` — scikit-image ``data.camera()`` (512×512 greyscale → RGB, standing man);
* ``grace_hopper`` — matplotlib ``mpl-data/sample_data/grace_hopper.jpg`` (512×600, upper body);
* ``vtest_fNNNNN`` — every ``step``-th frame of OpenCV's ``vtest.avi`` (768×576, 10 fps, several
  walking pedestrians), from the Debian package ``opencv-doc``; skipped when not installed.

Ids are stable across runs and machines (frame ids carry the frame index), so results from
different models/checkpoints can be joined on them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LOG = logging.getLogger(__name__)

#: Installed by the Debian package ``opencv-doc`` (795 frames, 768×576, 10 fps).
VTEST_PATH = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
VTEST_ID = "vtest"
DEFAULT_VTEST_STEP = 20
STILL_IDS: tuple[str, ...] = ("astronaut", "camera", "grace_hopper")


@dataclass(frozen=True)
class RealFrame:
    """One real frame.

    Attributes:
        id: stable id (``astronaut``, ``camera``, ``grace_hopper``, ``vtest_f00020`` …).
        image: (H, W, 3) uint8 RGB, C-contiguous.
        source: where the pixels come from (package + path), for result files.
        sequence: frames of one video share it; a still photo is its own sequence.
        index: frame index within the video, None for stills.
    """

    id: str
    image: np.ndarray
    source: str
    sequence: str
    index: int | None = None


def video_frame_id(video_id: str, index: int) -> str:
    """Stable id of a video frame (``tools/peer/blazepose_runner.py`` uses the same rule)."""
    return f"{video_id}_f{index:05d}"


def grace_hopper_path() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected (H, W) or (H, W, 3) pixels, got {image.shape}")
    return np.ascontiguousarray(image)


def load_still(still_id: str) -> RealFrame:
    """One of :data:`STILL_IDS` as a :class:`RealFrame`."""
    if still_id == "astronaut":
        from skimage import data

        return RealFrame(still_id, _as_rgb(data.astronaut()), "skimage.data.astronaut()", still_id)
    if still_id == "camera":
        from skimage import data

        return RealFrame(still_id, _as_rgb(data.camera()), "skimage.data.camera()", still_id)
    if still_id == "grace_hopper":
        import cv2

        path = grace_hopper_path()
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"matplotlib sample image missing or unreadable: {path}")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return RealFrame(still_id, _as_rgb(rgb), f"matplotlib {path}", still_id)
    raise ValueError(f"unknown still id {still_id!r}; expected one of {STILL_IDS}")


def vtest_available(path: Path = VTEST_PATH) -> bool:
    return path.is_file()


def video_frame_count(path: Path) -> int:
    """Frame count from the container header (vtest.avi: 795)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open video {path}")
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()


def vtest_indices(step: int, max_frames: int | None, total: int) -> list[int]:
    """Frame indices 0, step, 2·step … below ``total``, at most ``max_frames`` of them."""
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    if max_frames is not None and max_frames < 0:
        raise ValueError(f"max_frames must be >= 0, got {max_frames}")
    idx = list(range(0, total, step))
    return idx if max_frames is None else idx[:max_frames]


def iter_video_frames(
    path: Path, indices: list[int], video_id: str = VTEST_ID
) -> Iterator[RealFrame]:
    """Decode ``path`` sequentially and yield the requested frames (seeking is inexact)."""
    import cv2

    if not indices:
        return
    if min(indices) < 0:
        raise ValueError(f"frame indices must be >= 0, got {min(indices)}")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open video {path}")
    wanted = set(indices)
    last = max(indices)
    try:
        for i in range(last + 1):
            ok, bgr = cap.read()
            if not ok:
                raise ValueError(f"{path} ended after {i} frames; frame {last} was requested")
            if i in wanted:
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                yield RealFrame(video_frame_id(video_id, i), rgb, f"opencv-doc {path}", video_id, i)
    finally:
        cap.release()


def load_real_frames(
    vtest_step: int = DEFAULT_VTEST_STEP,
    vtest_max_frames: int | None = None,
    include_stills: bool = True,
    include_video: bool = True,
    vtest_path: Path = VTEST_PATH,
) -> list[RealFrame]:
    """The frame set, stills first, then video frames in index order.

    A missing ``vtest.avi`` is logged (install the Debian package ``opencv-doc``) and skipped;
    the stills come with packages of the project venv and are always there.
    """
    frames: list[RealFrame] = []
    if include_stills:
        frames += [load_still(s) for s in STILL_IDS]
    if include_video:
        if vtest_available(vtest_path):
            total = video_frame_count(vtest_path)
            indices = vtest_indices(vtest_step, vtest_max_frames, total)
            frames += list(iter_video_frames(vtest_path, indices))
        else:
            LOG.warning("%s not found (Debian package opencv-doc): no video frames", vtest_path)
    return frames
