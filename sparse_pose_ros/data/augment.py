"""Training augmentation that keeps 2D joints, 3D joints, intrinsics and mask consistent.

Every geometric change is one the camera model can express exactly, so after augmentation
``project(joints_3d, K) == joints_2d`` still holds:

- horizontal flip: image column j -> W-1-j; 3D x -> -x; cx -> W-1-cx; left/right joints swapped
  (``skeleton.flip_permutation``).
- in-plane rotation by a about the principal point: 3D joints rotate about the optical axis by
  the same angle (exact when fx == fy, true for the synthetic data; for real cameras with
  fx != fy the 2D labels are transformed exactly and 3D is off by the aspect difference).
- scale s about the principal point: focal length x s, 3D unchanged (a zoom).
- translation t: principal point + t, 3D unchanged.
Colour jitter changes pixels only. ``visible`` is AND-ed with the new in-frame test.

A sample is a dict of numpy arrays: image (H, W, 3) uint8, mask (H, W) uint8, joints_2d (17, 2),
joints_3d (17, 3) mm, visible (17,), in_frame (17,), K (3, 3); other keys are passed through.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sparse_pose_ros import skeleton

from ..framing import person_square

_FLIP = np.array(skeleton.flip_permutation())


def _in_frame(joints_2d: np.ndarray, joints_3d: np.ndarray, width: int, height: int) -> np.ndarray:
    return (
        (joints_2d[:, 0] >= 0) & (joints_2d[:, 0] <= width - 1)
        & (joints_2d[:, 1] >= 0) & (joints_2d[:, 1] <= height - 1) & (joints_3d[:, 2] > 0)
    )


def _check(sample: dict[str, np.ndarray]) -> None:
    for key in ("image", "joints_2d", "joints_3d", "K"):
        if key not in sample:
            raise ValueError(f"sample lacks {key!r}")
    if sample["image"].ndim != 3 or sample["image"].shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got {sample['image'].shape}")


def hflip(sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Mirror the frame horizontally (an involution: applying it twice is the identity)."""
    _check(sample)
    out = dict(sample)
    width = sample["image"].shape[1]
    out["image"] = np.ascontiguousarray(sample["image"][:, ::-1])
    if "mask" in sample:
        out["mask"] = np.ascontiguousarray(sample["mask"][:, ::-1])
    j2 = np.array(sample["joints_2d"], dtype=np.float32)[_FLIP]
    j2[:, 0] = (width - 1) - j2[:, 0]
    j3 = np.array(sample["joints_3d"], dtype=np.float32)[_FLIP]
    j3[:, 0] = -j3[:, 0]
    K = np.array(sample["K"], dtype=np.float32)
    K[0, 2] = (width - 1) - K[0, 2]
    out.update(joints_2d=j2, joints_3d=j3, K=K)
    for key in ("visible", "in_frame"):
        if key in sample:
            out[key] = np.asarray(sample[key])[_FLIP].copy()
    return out


def affine(
    sample: dict[str, np.ndarray], angle_deg: float, scale: float, shift: tuple[float, float]
) -> dict[str, np.ndarray]:
    """Rotate by ``angle_deg`` (clockwise on screen, i.e. +angle about the camera z axis which
    points into the image) and scale by ``scale`` about the principal point, then shift by
    ``shift`` pixels; output keeps the input size."""
    _check(sample)
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    height, width = sample["image"].shape[:2]
    K = np.array(sample["K"], dtype=np.float64)
    c = K[:2, 2]
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    A = scale * rot
    t = c + np.asarray(shift, dtype=np.float64) - A @ c
    M = np.hstack([A, t[:, None]])
    out = dict(sample)
    out["image"] = cv2.warpAffine(sample["image"], M, (width, height), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT_101)
    if "mask" in sample:
        out["mask"] = cv2.warpAffine(sample["mask"], M, (width, height), flags=cv2.INTER_NEAREST,
                                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    j2 = np.asarray(sample["joints_2d"], dtype=np.float64) @ A.T + t
    R3 = np.eye(3)
    R3[:2, :2] = rot
    j3 = np.asarray(sample["joints_3d"], dtype=np.float64) @ R3.T
    K_new = K.copy()
    K_new[0, 0] *= scale
    K_new[1, 1] *= scale
    K_new[:2, 2] = c + np.asarray(shift, dtype=np.float64)
    out.update(joints_2d=j2.astype(np.float32), joints_3d=j3.astype(np.float32),
               K=K_new.astype(np.float32))
    in_frame = _in_frame(j2, j3, width, height)
    out["in_frame"] = in_frame.astype(np.uint8)
    if "visible" in sample:
        out["visible"] = (np.asarray(sample["visible"]).astype(bool) & in_frame).astype(np.uint8)
    return out


def person_crop(
    sample: dict[str, np.ndarray], angle_deg: float, side: float, jitter: tuple[float, float]
) -> tuple[float, tuple[float, float]]:
    """(scale, shift) for :func:`affine` that put a square of ``side`` × the joints' box (larger
    side) centred on the box (+ ``jitter`` × that square) in the middle of the output, filling
    it. Scale is kept within [0.5, 4] (a far-away person is not blown up beyond 4×)."""
    height, width = sample["image"].shape[:2]
    centre, crop = person_square(sample["joints_2d"], side, 8.0)
    centre = centre + np.asarray(jitter) * crop
    scale = float(np.clip(max(width, height) / crop, 0.5, 4.0))
    c = np.asarray(sample["K"], dtype=np.float64)[:2, 2]
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    middle = np.array([(width - 1) / 2, (height - 1) / 2])
    shift = middle - c - scale * rot @ (centre - c)
    return scale, (float(shift[0]), float(shift[1]))


def colour_jitter(
    sample: dict[str, np.ndarray], rng: np.random.Generator, strength: float = 1.0
) -> dict[str, np.ndarray]:
    """Brightness, contrast, saturation and per-channel gain; labels untouched."""
    f32 = np.float32
    image = sample["image"].astype(f32)
    gain, offset = 1 + strength * rng.uniform(-0.3, 0.3), strength * rng.uniform(-20, 20)
    image = image * f32(gain) + f32(offset)
    mean = image.mean()
    image = (image - mean) * f32(1 + strength * rng.uniform(-0.3, 0.3)) + mean
    grey = image.mean(axis=2, keepdims=True)
    image = grey + (image - grey) * f32(1 + strength * rng.uniform(-0.4, 0.4))
    image = image * (1 + strength * rng.uniform(-0.08, 0.08, size=3)).astype(f32)
    out = dict(sample)
    out["image"] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return out


@dataclass
class Augmenter:
    """Random augmentation for training (pass as ``ShardDataset(transform=...)``).

    Args:
        flip_prob: chance of a horizontal flip.
        max_rotation_deg: rotation drawn uniformly from +-this.
        scale_range: zoom factor range.
        max_shift_frac: shift drawn from +-this fraction of the image size.
        colour_strength: 0 disables colour jitter.
        person_crop_prob: chance of zooming onto the person instead of the random scale and
            shift: the frame is warped so a square of ``person_crop_scale`` × the joints' box
            (larger side) around the person, centre jittered by ±10 % of it, fills the output.
            Why: the node tracks the person and feeds the network a crop around the previous
            frame's skeleton (``pipeline.roi``), so the network must know people that fill the
            frame as well as the small ones of a full camera frame.
        person_crop_scale: range of the crop side as a multiple of the joints' box.
        seed: seed of the augmenter's generator. Inside DataLoader workers the generator is
            re-seeded from (seed, the worker's torch seed) on first use, so workers and epochs
            do not repeat each other's augmentations.
    """

    flip_prob: float = 0.5
    max_rotation_deg: float = 30.0
    scale_range: tuple[float, float] = (0.75, 1.25)
    max_shift_frac: float = 0.08
    colour_strength: float = 1.0
    seed: int = 0
    person_crop_prob: float = 0.0
    person_crop_scale: tuple[float, float] = (1.2, 1.8)

    def __post_init__(self) -> None:
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1], got {self.flip_prob}")
        if not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"scale_range must be 0 < lo <= hi, got {self.scale_range}")
        if not 0.0 <= self.person_crop_prob <= 1.0:
            raise ValueError(f"person_crop_prob must be in [0, 1], got {self.person_crop_prob}")
        if not 0 < self.person_crop_scale[0] <= self.person_crop_scale[1]:
            raise ValueError(
                f"person_crop_scale must be 0 < lo <= hi, got {self.person_crop_scale}"
            )
        self.rng = np.random.default_rng(self.seed)
        self._worker_key: tuple[int, int] | None = None

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def _follow_worker(self) -> None:
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        key = None if info is None else (info.id, info.seed)
        if key != self._worker_key:
            self._worker_key = key
            if info is not None:
                self.rng = np.random.default_rng([self.seed, info.seed % 2**63])

    def __call__(self, sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.photometric(self.geometric(sample))

    def geometric(self, sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Flip, rotation, scale and shift (labels follow)."""
        self._follow_worker()
        rng = self.rng
        if rng.random() < self.flip_prob:
            sample = hflip(sample)
        height, width = sample["image"].shape[:2]
        angle = rng.uniform(-self.max_rotation_deg, self.max_rotation_deg)
        # The crop draw only exists when crops are on, so older configs keep their stream.
        if self.person_crop_prob > 0 and rng.random() < self.person_crop_prob:
            side = rng.uniform(*self.person_crop_scale)
            jitter = rng.uniform(-0.1, 0.1, size=2)
            scale, shift = person_crop(sample, angle, side, (float(jitter[0]), float(jitter[1])))
            return affine(sample, angle, scale, shift)
        scale = rng.uniform(*self.scale_range)
        shift = rng.uniform(-self.max_shift_frac, self.max_shift_frac, size=2) * (width, height)
        return affine(sample, angle, scale, (float(shift[0]), float(shift[1])))

    def photometric(self, sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Colour jitter (pixels only). Split from :meth:`geometric` so a pipeline can run it
        after shrinking the frame to the network input: it is per-pixel arithmetic, 4x cheaper
        at 128 px than at the rendered 256 px, and was the largest cost of a training sample."""
        self._follow_worker()
        if self.colour_strength > 0:
            sample = colour_jitter(sample, self.rng, self.colour_strength)
        return sample
