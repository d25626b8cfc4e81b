"""Human3.6M in the widely used preprocessed layout (the one of Moon et al.'s 3DMPPE / I2L-MeshNet
code), protocol-1 subject split, cropped and returned in the same item format as ShardDataset.

Layout under ``root``::

    images/<file_name from data.json>     e.g. s_09_act_02_subact_01_ca_01/..._000001.jpg
    annotations/Human36M_subject<S>_data.json       COCO-like: images[], annotations[]
    annotations/Human36M_subject<S>_camera.json     {cam_idx: {R (3x3), t (3, mm), f, c}}
    annotations/Human36M_subject<S>_joint_3d.json   {action: {subaction: {frame: 17x3 mm}}}

``images[]`` entries carry id, file_name, width, height, subject, action_idx, subaction_idx,
cam_idx, frame_idx; ``annotations[]`` carry image_id and bbox [x, y, w, h]. World -> camera is
``x_cam = R @ x_world + t`` (mm); pixels are ``f * x / z + c``. The 17 joints are already in our
order (Pelvis, R hip/knee/ankle, L hip/knee/ankle, Torso=spine, Neck=thorax, Nose=neck_nose,
Head=head_top, L shoulder/elbow/wrist, R shoulder/elbow/wrist).

Protocol 1: train on S1, S5, S6, S7, S8; test on S9, S11. Frames are sub-sampled like the
reference code (every 5th for training, every 64th for testing) unless ``frame_stride`` is given.
The dataset has no silhouettes in this layout: items carry an all-zero mask with
``mask_valid = 0`` so mask losses can skip them; ``visible`` equals ``in_frame`` (no occlusion
labels).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sparse_pose_ros import skeleton
from sparse_pose_ros.data.shards import to_tensors

LOG = logging.getLogger(__name__)

PROTOCOL1_SUBJECTS: dict[str, tuple[int, ...]] = {"train": (1, 5, 6, 7, 8), "test": (9, 11)}
DEFAULT_STRIDE: dict[str, int] = {"train": 5, "test": 64}
#: Square crop side = this factor x the longer side of the person box.
CROP_SCALE: float = 1.25


def annotation_path(root: Path, subject: int, kind: str) -> Path:
    return Path(root) / "annotations" / f"Human36M_subject{subject}_{kind}.json"


def _load_json(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"Human3.6M annotation file missing: {path}")
    with open(path) as f:
        return json.load(f)


def crop_transform(bbox_xywh: np.ndarray, size: int, scale: float = CROP_SCALE) -> np.ndarray:
    """2x3 affine mapping source pixels to a ``size``-square crop centred on the box."""
    x, y, w, h = (float(v) for v in bbox_xywh)
    if w <= 0 or h <= 0:
        raise ValueError(f"empty bounding box {bbox_xywh}")
    side = scale * max(w, h)
    s = size / side
    centre = np.array([x + w / 2.0, y + h / 2.0])
    t = (size - 1) / 2.0 - s * centre
    return np.array([[s, 0.0, t[0]], [0.0, s, t[1]]])


class H36MDataset:
    """Human3.6M frames as 256x256 crops with camera-frame 3D joints (mm) and adjusted K.

    Args:
        root: folder holding ``images/`` and ``annotations/``.
        split: "train" or "test" (protocol-1 subjects), unless ``subjects`` is given.
        frame_stride: keep frames whose index is a multiple of this (default 5 / 64).
        size: crop side in pixels.
        transform: optional callable on the numpy sample (e.g. ``augment.Augmenter``).
        subjects: explicit subject list (overrides the split's).

    Items have the same keys, dtypes and units as :class:`ShardDataset` items (mask all zero
    with ``mask_valid = 0``, ``family = -1``).
    """

    def __init__(
        self,
        root: Path | str,
        split: str = "train",
        frame_stride: int | None = None,
        size: int = 256,
        transform: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
        subjects: tuple[int, ...] | None = None,
    ) -> None:
        if split not in PROTOCOL1_SUBJECTS:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.root = Path(root)
        self.size = int(size)
        self.transform = transform
        stride = DEFAULT_STRIDE[split] if frame_stride is None else int(frame_stride)
        if stride <= 0:
            raise ValueError(f"frame_stride must be positive, got {stride}")
        self.subjects = PROTOCOL1_SUBJECTS[split] if subjects is None else tuple(subjects)
        self.records: list[dict[str, Any]] = []
        for subject in self.subjects:
            self._load_subject(subject, stride)
        if not self.records:
            raise ValueError(f"no Human3.6M frames for subjects {self.subjects} under {self.root}")
        LOG.info("Human3.6M %s: %d frames from subjects %s", split, len(self.records),
                 self.subjects)

    def _load_subject(self, subject: int, stride: int) -> None:
        data = _load_json(annotation_path(self.root, subject, "data"))
        cameras = _load_json(annotation_path(self.root, subject, "camera"))
        joints = _load_json(annotation_path(self.root, subject, "joint_3d"))
        images = {img["id"]: img for img in data["images"]}
        for ann in data["annotations"]:
            img = images[ann["image_id"]]
            if img["subject"] != subject or img["frame_idx"] % stride != 0:
                continue
            cam = cameras[str(img["cam_idx"])]
            R = np.asarray(cam["R"], dtype=np.float64).reshape(3, 3)
            t = np.asarray(cam["t"], dtype=np.float64).reshape(3)
            world = np.asarray(
                joints[str(img["action_idx"])][str(img["subaction_idx"])][str(img["frame_idx"])],
                dtype=np.float64,
            )
            if world.shape != (skeleton.NUM_JOINTS, 3):
                raise ValueError(f"subject {subject}: expected 17x3 joints, got {world.shape}")
            fx, fy = (float(v) for v in cam["f"])
            cx, cy = (float(v) for v in cam["c"])
            self.records.append({
                "path": self.root / "images" / img["file_name"],
                "joints_cam": world @ R.T + t,
                "K": np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]),
                "bbox": np.asarray(ann["bbox"], dtype=np.float64),
                "index": int(img["id"]),
            })

    def __len__(self) -> int:
        return len(self.records)

    def sample(self, item: int) -> dict[str, np.ndarray]:
        """Frame ``item`` as a numpy sample (crop applied, no transform)."""
        if not 0 <= item < len(self):
            raise IndexError(f"index {item} out of range for {len(self)} frames")
        rec = self.records[item]
        image = cv2.imread(str(rec["path"]), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"Human3.6M image not readable: {rec['path']}")
        M = crop_transform(rec["bbox"], self.size)
        crop = cv2.warpAffine(image, M, (self.size, self.size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        A = np.vstack([M, [0.0, 0.0, 1.0]])
        K = A @ rec["K"]
        j3 = rec["joints_cam"]
        uvw = j3 @ K.T
        j2 = uvw[:, :2] / uvw[:, 2:3]
        in_frame = (
            (j2[:, 0] >= 0) & (j2[:, 0] <= self.size - 1) & (j2[:, 1] >= 0)
            & (j2[:, 1] <= self.size - 1) & (j3[:, 2] > 0)
        ).astype(np.uint8)
        return {
            "image": np.ascontiguousarray(crop[..., ::-1]),
            "mask": np.zeros((self.size, self.size), np.uint8),
            "joints_2d": j2.astype(np.float32),
            "joints_3d": j3.astype(np.float32),
            "visible": in_frame.copy(),
            "in_frame": in_frame,
            "K": K.astype(np.float32),
            "family": np.int64(-1),
            "index": np.int64(rec["index"]),
            "mask_valid": np.float32(0.0),
        }

    def __getitem__(self, item: int) -> dict[str, Any]:
        sample = self.sample(item)
        if self.transform is not None:
            sample = self.transform(sample)
        return to_tensors(sample)
