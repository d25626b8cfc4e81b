"""Writes a tiny Human3.6M tree in the preprocessed layout read by ``data.h36m`` (test helper).

Each image is a flat grey frame with a red disc drawn where the pelvis projects, so a test can
check that the loader's crop moves the pixels and the labels together.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

IMAGE_W, IMAGE_H = 320, 240
MARKER_RADIUS = 5


def _rotation(yaw: float) -> np.ndarray:
    """World (z up, like Human3.6M) -> camera (x right, y down, z forward) looking along yaw."""
    c, s = np.cos(yaw), np.sin(yaw)
    forward = np.array([c, s, 0.0])
    right = np.array([s, -c, 0.0])
    down = np.array([0.0, 0.0, -1.0])
    return np.stack([right, down, forward])


def _pose(rng: np.random.Generator) -> np.ndarray:
    """17 joints in world mm: a loose standing figure around the origin, 1.7 m tall."""
    heights = np.array([900, 900, 480, 80, 900, 480, 80, 1150, 1400, 1520, 1700, 1400, 1150, 900,
                        1400, 1150, 900], dtype=np.float64)
    sides = np.array([0, -1, -1, -1, 1, 1, 1, 0, 0, 0, 0, 1.8, 2.2, 2.4, -1.8, -2.2, -2.4])
    joints = np.stack([rng.normal(0, 20, 17), sides * 100.0 + rng.normal(0, 20, 17), heights], 1)
    return joints + np.array([rng.normal(0, 200), rng.normal(0, 200), 0.0])


def write_h36m_fixture(root: Path, subjects=(1, 5, 6, 7, 8, 9, 11), frames=(0, 5, 10, 64),
                       seed: int = 0) -> dict[tuple[int, int], np.ndarray]:
    """Write the tree; returns {(subject, frame_idx): joints_cam (17, 3) mm} for checks."""
    rng = np.random.default_rng(seed)
    truth: dict[tuple[int, int], np.ndarray] = {}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    image_id = 0
    for subject in subjects:
        R = _rotation(rng.uniform(0, 2 * np.pi))
        centre = np.array([0.0, 0.0, 900.0])
        cam_pos = centre - 4500.0 * R[2]  # 4.5 m in front of the person
        t = -R @ cam_pos
        f = [300.0 + rng.uniform(-5, 5), 300.0 + rng.uniform(-5, 5)]
        c = [IMAGE_W / 2 + rng.uniform(-6, 6), IMAGE_H / 2 + rng.uniform(-6, 6)]
        cameras = {"1": {"R": R.tolist(), "t": t.tolist(), "f": f, "c": c}}
        joints_world: dict[str, dict[str, dict[str, list]]] = {"2": {"1": {}}}
        images, annotations = [], []
        folder = f"s_{subject:02d}_act_02_subact_01_ca_01"
        for frame in frames:
            world = _pose(rng)
            joints_world["2"]["1"][str(frame)] = world.tolist()
            cam = world @ R.T + t
            uv = cam[:, :2] / cam[:, 2:3] * np.array(f) + np.array(c)
            image = np.full((IMAGE_H, IMAGE_W, 3), 128, np.uint8)
            cv2.circle(image, (int(round(uv[0, 0])), int(round(uv[0, 1]))), MARKER_RADIUS,
                       (0, 0, 255), -1)  # BGR red
            name = f"{folder}/{folder}_{frame + 1:06d}.jpg"
            (root / "images" / folder).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "images" / name), image, [cv2.IMWRITE_JPEG_QUALITY, 100])
            lo, hi = uv.min(axis=0), uv.max(axis=0)
            images.append({
                "id": image_id, "file_name": name, "width": IMAGE_W, "height": IMAGE_H,
                "subject": subject, "action_name": "Directions", "action_idx": 2,
                "subaction_idx": 1, "cam_idx": 1, "frame_idx": frame,
            })
            annotations.append({
                "id": image_id, "image_id": image_id, "keypoints_vis": [True] * 17,
                "bbox": [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])],
            })
            truth[(subject, frame)] = cam
            image_id += 1
        ann = root / "annotations"
        (ann / f"Human36M_subject{subject}_data.json").write_text(
            json.dumps({"images": images, "annotations": annotations}))
        (ann / f"Human36M_subject{subject}_camera.json").write_text(json.dumps(cameras))
        (ann / f"Human36M_subject{subject}_joint_3d.json").write_text(json.dumps(joints_world))
    return truth
