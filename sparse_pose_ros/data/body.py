"""mannequin-x body -> Human3.6M-17 joints (HEMlets order, see ``skeleton.py``).

mannequin-x gives SMPL-X-style joint centres but no nose or head-top joint, so two joints come from
surface vertices: head top = the highest rest-pose vertex that moves rigidly with the Head joint,
nose = the front-most such vertex near Head height. "Moves rigidly with Head" is found at start-up
by turning the head and checking which vertices follow the Head transform exactly, which works for
both the skinned ("wooden") and the rigid ("convex") mannequin and for any shape, without relying
on the package's private skin-weight arrays or on hard-coded vertex ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from mannequin import Mannequin

from sparse_pose_ros import skeleton
from sparse_pose_ros.data.outfit import label_regions

Style = Literal["wooden", "convex"]
STYLES: tuple[str, ...] = ("wooden", "convex")

#: SMPL-X joint names used by mannequin-x (0..23).
SMPLX_NAMES: tuple[str, ...] = (
    "Pelvis", "L_Hip", "R_Hip", "Spine1", "L_Knee", "R_Knee", "Spine2", "L_Ankle", "R_Ankle",
    "Spine3", "L_Foot", "R_Foot", "Neck", "L_Collar", "R_Collar", "Head", "L_Shoulder",
    "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist", "L_Hand", "R_Hand",
)
HEAD = SMPLX_NAMES.index("Head")

#: For each H36M-17 joint (skeleton.JOINT_NAMES order) the SMPL-X joint index, or a vertex source.
_H36M_FROM_SMPLX: dict[str, int | str] = {
    "pelvis": 0,
    "right_hip": 2,
    "right_knee": 5,
    "right_ankle": 8,
    "left_hip": 1,
    "left_knee": 4,
    "left_ankle": 7,
    "spine": 6,
    "thorax": 12,
    "neck_nose": "nose",
    "head_top": "head_top",
    "left_shoulder": 16,
    "left_elbow": 18,
    "left_wrist": 20,
    "right_shoulder": 17,
    "right_elbow": 19,
    "right_wrist": 21,
}


@dataclass(frozen=True)
class PosedBody:
    """One posed body in the mannequin's world frame (Y up, metres)."""

    vertices: np.ndarray  # (V, 3) float64
    faces: np.ndarray  # (F, 3) int
    joints: np.ndarray  # (17, 3) float64, H36M-17 order


def head_rigid_vertices(model: Mannequin, tolerance: float = 1e-6) -> np.ndarray:
    """Indices of vertices that follow the Head joint rigidly (skin weight 1 on Head)."""
    rest = model.rest_pose(dtype=np.float64)
    rest_v = model.vertices(rest)
    rest_t = model.joint_transforms(rest)[HEAD]
    rigid = np.ones(len(rest_v), dtype=bool)
    for axis_angle in ((0.6, 0.0, 0.0), (0.0, 0.7, 0.3)):
        turned = model.rest_pose(dtype=np.float64)
        turned["body_pose"][HEAD - 1] = axis_angle
        moved_v = model.vertices(turned)
        moved_t = model.joint_transforms(turned)[HEAD]
        relative = moved_t @ np.linalg.inv(rest_t)
        expected = rest_v @ relative[:3, :3].T + relative[:3, 3]
        rigid &= np.linalg.norm(moved_v - expected, axis=1) < tolerance
        rigid &= np.linalg.norm(moved_v - rest_v, axis=1) > 1e-4
    indices = np.flatnonzero(rigid)
    if len(indices) == 0:
        raise ValueError("no vertex follows the Head joint rigidly; unexpected mannequin model")
    return indices


def head_vertex_ids(model: Mannequin, head: np.ndarray | None = None) -> tuple[int, int]:
    """(head_top, nose) vertex indices for this model, computed from its rest pose.

    ``head``: the Head-rigid vertex indices when the caller already has them."""
    head = head_rigid_vertices(model) if head is None else head
    rest = model.rest_pose(dtype=np.float64)
    verts = model.vertices(rest)[head]
    head_y = model.joint_transforms(rest)[HEAD, 1, 3]
    top = int(head[np.argmax(verts[:, 1])])
    # Nose: front-most (+Z) head vertex within 4 cm of a level 4 cm above the Head joint (the
    # SMPL-X Head joint sits at the skull base, the nose a little higher).
    band = np.abs(verts[:, 1] - (head_y + 0.04)) < 0.04
    if not band.any():
        band = np.ones(len(verts), dtype=bool)
    candidates = np.flatnonzero(band)
    nose = int(head[candidates[np.argmax(verts[candidates, 2])]])
    return top, nose


class Body:
    """A mannequin of one style and shape that maps poses to vertices and H36M-17 joints.

    Args:
        style: "wooden" (skinned, 24k vertices) or "convex" (rigid links).
        betas: 10 SMPL-X shape coefficients.
        lod: level of detail for the convex style (0 finest .. 2 coarsest); ignored for wooden.
    """

    def __init__(self, style: Style, betas: np.ndarray | None = None, lod: int = 0) -> None:
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        self.style = style
        betas = np.zeros(10) if betas is None else np.asarray(betas, dtype=np.float64)
        if betas.shape != (10,):
            raise ValueError(f"betas must have shape (10,), got {betas.shape}")
        if style == "wooden":
            self.model = Mannequin("wooden", shape=betas)
        else:
            self.model = Mannequin("convex", lod=lod, shape=betas)
        self.betas = betas
        self.faces = np.asarray(self.model.faces)
        head = head_rigid_vertices(self.model)
        self.head_top_vertex, self.nose_vertex = head_vertex_ids(self.model, head)
        rest = self.model.rest_pose(dtype=np.float64)
        #: Per-vertex ``outfit.Region`` labels (face, hair, torso, ...), fixed for this body.
        self.regions = label_regions(
            self.model.vertices(rest), self.model.joint_transforms(rest)[:, :3, 3], head)
        sources = [_H36M_FROM_SMPLX[name] for name in skeleton.JOINT_NAMES]
        self._joint_ids = np.array([v if isinstance(v, int) else 0 for v in sources])

    def pose(self, body_pose: np.ndarray, hand_pose: np.ndarray | None = None) -> PosedBody:
        """Pose the body. ``body_pose`` is (21, 3) axis-angle (entry k drives SMPL-X joint k+1)."""
        body_pose = np.asarray(body_pose, dtype=np.float64)
        if body_pose.shape != (21, 3):
            raise ValueError(f"body_pose must be (21, 3), got {body_pose.shape}")
        params = self.model.rest_pose(dtype=np.float64)
        params["body_pose"] = body_pose
        if hand_pose is not None:
            params["hand_pose"] = np.asarray(hand_pose, dtype=np.float64)
        transforms = self.model.joint_transforms(params)
        vertices = self.model.vertices(params)
        joints = transforms[self._joint_ids, :3, 3].copy()
        names = skeleton.JOINT_NAMES
        joints[names.index("head_top")] = vertices[self.head_top_vertex]
        joints[names.index("neck_nose")] = vertices[self.nose_vertex]
        return PosedBody(vertices=vertices, faces=self.faces, joints=joints)
