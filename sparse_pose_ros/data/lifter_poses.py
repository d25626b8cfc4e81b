"""Real 3D poses for the depth lifter, seen through virtual cameras.

Why: the lifter (``model.lifter``) reads root-relative depth off the shape of the 2D skeleton,
so it only knows the poses it was trained on. The synthetic renders' poses come from a
procedural sampler (``data.poses``); trained on those alone, the lifter barely moved the
held-out triangulated Pose2Sim error of the shipped dense model (156 -> 151 mm), while adding
the real 3D skeletons the label cache already holds — the triangulated Pose2Sim frames of the
training split (multiview, close to truth) and BlazePose's world landmarks of every training
source (a single-view estimate, but real human poses) — brought it to 130 mm
(``docs/network.md`` §5c, ``models/MODEL_CARD.md``). Held-out sources are never read.

A 3D skeleton gives as many 2D/depth training pairs as there are cameras: each pose is turned
about the vertical axis (any facing), tilted by a camera elevation, placed at a distance and
off the optical axis (perspective, as a person away from the image centre is seen), and
projected with a pinhole. The lifter normalises position and scale away, so the focal length
only sets the pixel units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import skeleton
from .label_cache import LabelSet, triangulated_per_row


@dataclass(frozen=True)
class ViewRanges:
    """Virtual camera draws (uniform in each range).

    Attributes:
        elevation_deg: camera above (> 0, looking down) or below the person; the synthetic
            renders' range (``data.camera.CameraRanges``).
        distance_m: camera to the pelvis along the optical axis.
        off_axis: lateral / vertical offset of the pelvis as a fraction of the distance
            (0.35 ≈ the edge of a 70° field of view).
        focal_px: pinhole focal length (pixel units of the 2D output).
    """

    elevation_deg: tuple[float, float] = (-10.0, 40.0)
    distance_m: tuple[float, float] = (2.5, 8.0)
    off_axis: float = 0.35
    focal_px: float = 1000.0


def real_poses(corpus: dict[str, LabelSet], blazepose_world: bool = True
               ) -> tuple[np.ndarray, dict[str, int]]:
    """(N, 17, 3) root-relative metres (camera-like axes: x right, y down, z forward) of the
    training-split sources, and how many came from each ("<source>:triangulated" per view,
    "<source>:blazepose_world"; "<source>:triangulated_people" where the source has every
    person triangulated, ``data.people_teacher``, which then replaces its one-person
    triangulation). Skeletons with any missing joint are dropped."""
    poses: list[np.ndarray] = []
    counts: dict[str, int] = {}

    def keep(name: str, arr: np.ndarray) -> None:
        arr = np.asarray(arr, np.float64).reshape(-1, skeleton.NUM_JOINTS, 3)
        arr = arr[np.isfinite(arr).all(axis=(1, 2))]
        if len(arr):
            poses.append(arr - arr[:, skeleton.ROOT : skeleton.ROOT + 1])
            counts[name] = len(arr)

    for sid, ls in sorted(corpus.items()):
        if ls.split != "train":
            continue
        tri = ls.triangulated
        people = ls.people
        if people is not None:  # every person of the trial, each view (data.people_teacher)
            keep(f"{sid}:triangulated_people", people["people_cam_m"])
        elif tri is not None and "joints_cam_m" in tri:
            valid = np.asarray(tri.get("valid", np.ones(len(tri["joints_cam_m"]), bool)), bool)
            keep(f"{sid}:triangulated", tri["joints_cam_m"][valid])
        if blazepose_world and "h36m_world_m" in ls.blazepose:
            detected = np.asarray(ls.blazepose["detected"], bool)
            keep(f"{sid}:blazepose_world", ls.blazepose["h36m_world_m"][detected])
    if not poses:
        return np.zeros((0, skeleton.NUM_JOINTS, 3)), counts
    return np.concatenate(poses), counts


def view_skeletons(ls: LabelSet) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(row, (P, 17, 3) camera-frame metres, (3, 3) K) of every frame of a multiview source
    with a complete triangulated skeleton in that frame's own view: every person of the trial
    where ``data.people_teacher`` labelled it (``people_cam_m``), else the one-person
    triangulation. The pixels these skeletons were seen in are the frame's, so a network's 2D
    on that frame pairs with their depth (``training.lifter_network_2d``). Empty for a source
    without calibrated views."""
    tri = ls.triangulated
    if tri is None or "K" not in tri or "views" not in tri:
        return []
    views = [str(v) for v in tri["views"]]
    people = ls.people
    # (N, P, 17, 3): every person where the people teacher ran, else the one-person triangulation
    per_row = (np.asarray(people["people_cam_m"], np.float64) if people is not None
               else triangulated_per_row(ls)[:, None])  # fmt: skip
    out = []
    for row, f in enumerate(ls.manifest["frames"]):
        if f.get("view") not in views:
            continue
        skels = per_row[row].reshape(-1, skeleton.NUM_JOINTS, 3)
        skels = skels[np.isfinite(skels).all(axis=(1, 2)) & (skels[..., 2] > 0).all(axis=1)]
        if len(skels):
            out.append((row, skels, np.asarray(tri["K"][views.index(f["view"])], np.float64)))
    return out


def virtual_views(poses: np.ndarray, per_pose: int, rng: np.random.Generator,
                  ranges: ViewRanges | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``per_pose`` random pinhole views of each (17, 3) root-relative pose: (M, 17, 2) pixel
    joints and (M, 17) root-relative depth in metres (positive = farther)."""
    r = ranges or ViewRanges()
    poses = np.asarray(poses, np.float64)
    n = len(poses) * per_pose
    if n == 0:
        return np.zeros((0, skeleton.NUM_JOINTS, 2)), np.zeros((0, skeleton.NUM_JOINTS))
    src = np.repeat(poses, per_pose, axis=0)
    yaw = rng.uniform(-np.pi, np.pi, n)
    el = np.deg2rad(rng.uniform(*r.elevation_deg, n))
    cy, sy, ce, se = np.cos(yaw), np.sin(yaw), np.cos(el), np.sin(el)
    zero, one = np.zeros(n), np.ones(n)
    turn = np.stack([np.stack([cy, zero, sy], -1), np.stack([zero, one, zero], -1),
                     np.stack([-sy, zero, cy], -1)], -2)  # about the (image) vertical axis
    tilt = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, ce, -se], -1),
                     np.stack([zero, se, ce], -1)], -2)  # camera elevation
    rot = tilt @ turn
    cam = np.einsum("nij,nkj->nki", rot, src)
    dist = rng.uniform(*r.distance_m, n)
    off = rng.uniform(-r.off_axis, r.off_axis, (n, 2)) * dist[:, None]
    cam = cam + np.concatenate([off, dist[:, None]], axis=1)[:, None, :]
    xy = r.focal_px * cam[..., :2] / cam[..., 2:]
    z = cam[..., 2] - cam[:, skeleton.ROOT : skeleton.ROOT + 1, 2]
    return xy, z


def median_bone_lengths(poses: np.ndarray) -> np.ndarray:
    """(B,) median length of each bone (``skeleton.BONES`` order) over (N, 17, 3) skeletons,
    in their units: the body-size prior of a model trained on them (``pipeline.lift``).
    Skeletons with a missing joint are skipped; ValueError when none is left."""
    poses = np.asarray(poses, np.float64).reshape(-1, skeleton.NUM_JOINTS, 3)
    poses = poses[np.isfinite(poses).all(axis=(1, 2))]
    if not len(poses):
        raise ValueError("no complete skeleton to measure bone lengths on")
    bones = np.asarray(skeleton.BONES)
    lengths = np.linalg.norm(poses[:, bones[:, 1]] - poses[:, bones[:, 0]], axis=-1)
    return np.median(lengths, axis=0)

