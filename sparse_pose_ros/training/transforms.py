"""Fit a numpy sample (``ShardDataset.sample`` format) to the network's square input size.

Frames are rendered at 256×256 while the tiny networks run at 128 or 160: resizing the image
alone would leave the labels in the old pixel grid. This transform resizes the image (area
filter: no aliasing when shrinking), the person mask (nearest: stays binary) and maps the 2D
joints and the intrinsics with the same pixel-centre convention as the renderer (pixel i's centre
at coordinate i): u' = (u + 0.5)·s − 0.5 with s = S / W. 3D joints are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

Sample = dict[str, Any]


def fit_to_input(sample: Sample, size: int) -> Sample:
    """Resize a square sample to ``size``×``size``; labels follow. Non-square input is an error."""
    image = sample["image"]
    h, w = image.shape[:2]
    if h != w:
        raise ValueError(f"expected a square frame, got {w}x{h}")
    if h == size:
        return sample
    s = size / w
    out = dict(sample)
    interp = cv2.INTER_AREA if size < w else cv2.INTER_LINEAR
    out["image"] = cv2.resize(image, (size, size), interpolation=interp)
    out["mask"] = cv2.resize(
        np.ascontiguousarray(sample["mask"], dtype=np.uint8),
        (size, size),
        interpolation=cv2.INTER_NEAREST,
    )
    out["joints_2d"] = ((np.asarray(sample["joints_2d"], np.float64) + 0.5) * s - 0.5).astype(
        np.float32
    )
    k = np.asarray(sample["K"], np.float64).copy()
    k[0, 0] *= s
    k[1, 1] *= s
    k[0, 2] = (k[0, 2] + 0.5) * s - 0.5
    k[1, 2] = (k[1, 2] + 0.5) * s - 0.5
    out["K"] = k.astype(np.float32)
    if "in_frame" in sample:
        uv = out["joints_2d"]
        inside = (
            (uv[:, 0] >= -0.5)
            & (uv[:, 0] <= size - 0.5)
            & (uv[:, 1] >= -0.5)
            & (uv[:, 1] <= size - 0.5)
        )
        out["in_frame"] = (np.asarray(sample["in_frame"]) > 0) & inside
        out["in_frame"] = out["in_frame"].astype(np.uint8)
    return out


class Pipeline:
    """Optional augmentation followed by :func:`fit_to_input`.

    Geometric augmentation runs at the frame's resolution (no detail is lost before the warp);
    an augmenter that splits off its pixel-only part (``geometric`` / ``photometric``, as
    ``data.augment.Augmenter`` does) gets that part after the resize, where it is cheaper.
    Picklable, so DataLoader workers can use it.
    """

    def __init__(self, size: int, augment: Callable[[Sample], Sample] | None = None) -> None:
        self.size = size
        self.augment = augment

    def __call__(self, sample: Sample) -> Sample:
        augment = self.augment
        if augment is None:
            return fit_to_input(sample, self.size)
        if hasattr(augment, "geometric") and hasattr(augment, "photometric"):
            return augment.photometric(fit_to_input(augment.geometric(sample), self.size))
        return fit_to_input(augment(sample), self.size)


class PersonCrop:
    """Warp a frame so a square around the person fills it (the evaluation twin of the node's
    person tracking, ``pipeline.roi``).

    The box comes from ``joints_by_index[sample["index"]]`` (2D joints in the frame's pixels,
    e.g. a first full-frame pass's predictions) or, when that is None, from the sample's own
    ground-truth joints (the usual Human3.6M protocol of evaluating on ground-truth boxes). The
    square's side is ``side`` × the joints' box (larger side). Labels and intrinsics follow the
    warp exactly (``data.augment.affine``), so the crop is a virtual camera with the same centre
    and orientation: camera-frame 3D joints are unchanged.
    """

    def __init__(self, side: float = 1.5, joints_by_index: dict[int, Any] | None = None) -> None:
        if side <= 0:
            raise ValueError(f"side must be > 0, got {side}")
        self.side = side
        self.joints_by_index = joints_by_index

    def __call__(self, sample: Sample) -> Sample:
        from ..data.augment import affine, person_crop

        box_joints = sample["joints_2d"]
        if self.joints_by_index is not None:
            box_joints = self.joints_by_index[int(sample["index"])]
        probe = {"image": sample["image"], "joints_2d": box_joints, "K": sample["K"]}
        scale, shift = person_crop(probe, 0.0, self.side, (0.0, 0.0))
        return affine(sample, 0.0, scale, shift)
