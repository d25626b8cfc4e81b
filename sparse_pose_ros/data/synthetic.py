"""One synthetic frame with exact labels: sample subject, pose, camera, look; render; composite.

Every random choice of frame ``i`` comes from ``SeedSequence([seed, split_code, i])``, so a frame
depends only on (seed, split, index) — not on worker count, order or earlier frames — which is
what makes generation parallel, resumable and reproducible. Subjects (shape betas, style) come
from ``SeedSequence([seed, split_code, SUBJECT_STREAM, k])``; the split code makes train and test
subjects, poses and seeds disjoint even if the same ``seed`` is given for both. Outfits (clothes,
skin, hair: ``outfit.py``) come from their own stream ``SeedSequence([seed, split_code,
OUTFIT_STREAM, i])``, so turning them on or off changes no other draw: ``synth_v2`` (outfits) has
exactly the poses, cameras, lights and backgrounds of ``synth_v1`` (one-colour bodies, default).

Visibility of a joint = inside the image AND not self-occluded AND not under a pasted occluder.
Self-occlusion: the rendered depth at the joint's pixel is compared with the joint's depth; joint
centres lie inside the body, so the joint counts as hidden only when the surface seen at its pixel
is nearer than the joint by more than that joint's typical body half-thickness along a view ray
(``OCCLUSION_MARGIN_M``: e.g. 22 cm for the pelvis, which sits that deep when the body is seen
from the side; 4 cm for the surface points nose and head top). So a far hip seen through the near
one, or a knee behind the other leg, is "not visible"; a joint inside its own limb is visible.
"""

from __future__ import annotations

import colorsys
import logging
from dataclasses import dataclass, field

import cv2
import numpy as np

from sparse_pose_ros import skeleton
from sparse_pose_ros.data import poses
from sparse_pose_ros.data.backgrounds import BackgroundBank
from sparse_pose_ros.data.body import STYLES, Body
from sparse_pose_ros.data.camera import CameraRanges, project, sample_camera
from sparse_pose_ros.data.outfit import sample_outfit
from sparse_pose_ros.data.render import BodyRenderer, Lighting, Surface

LOG = logging.getLogger(__name__)

SPLIT_CODES: dict[str, int] = {"train": 1, "test": 2}
SUBJECT_STREAM: int = 1_000_003
OUTFIT_STREAM: int = 2_000_003
FAMILY_IDS: dict[str, int] = {name: i for i, name in enumerate(poses.ALL_FAMILIES)}
STYLE_IDS: dict[str, int] = {name: i for i, name in enumerate(STYLES)}

#: Depth (m) a joint centre may lie behind the visible surface and still count as visible.
OCCLUSION_MARGIN_M: dict[str, float] = {
    "pelvis": 0.22, "right_hip": 0.20, "right_knee": 0.09, "right_ankle": 0.08,
    "left_hip": 0.20, "left_knee": 0.09, "left_ankle": 0.08, "spine": 0.22, "thorax": 0.20,
    "neck_nose": 0.04, "head_top": 0.04, "left_shoulder": 0.14, "left_elbow": 0.08,
    "left_wrist": 0.06, "right_shoulder": 0.14, "right_elbow": 0.08, "right_wrist": 0.06,
}
_MARGINS = np.array([OCCLUSION_MARGIN_M[n] for n in skeleton.JOINT_NAMES])


@dataclass(frozen=True)
class SyntheticConfig:
    """What a split looks like. Defaults are the values used for ``synth_v1`` (one-colour
    bodies, what the first synthetic-only checkpoints were trained on); ``outfits=True`` gives
    ``synth_v2``."""

    size: int = 256
    num_subjects: dict[str, int] = field(default_factory=lambda: {"train": 16, "test": 4})
    held_out_fraction: float = 0.3  # share of test frames drawn from HELD_OUT_FAMILIES
    occluder_prob: float = 0.25
    betas_std: float = 1.0
    camera: CameraRanges = CameraRanges()
    outfits: bool = False


@dataclass
class Frame:
    """One labelled frame. Units: pixels, millimetres (camera frame: x right, y down, z forward)."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    mask: np.ndarray  # (H, W) uint8 {0,1}: visible person pixels (depth > 0, not occluded)
    joints_2d: np.ndarray  # (17, 2) float32 px, pixel centres at integer coordinates
    joints_3d: np.ndarray  # (17, 3) float32 mm, camera frame
    visible: np.ndarray  # (17,) uint8
    in_frame: np.ndarray  # (17,) uint8
    K: np.ndarray  # (3, 3) float32
    bbox: np.ndarray  # (4,) float32 x0, y0, x1, y1 of the full (unoccluded) silhouette
    meta: dict[str, float | int]  # family, style, subject, occluded, elevation_deg, ...
    body_pose: np.ndarray  # (21, 3) float32 axis-angle
    betas: np.ndarray  # (10,) float32


def frame_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator that decides everything about frame ``index`` of ``split``."""
    return np.random.default_rng(np.random.SeedSequence([seed, SPLIT_CODES[split], index]))


def choose_family(rng: np.random.Generator, split: str, held_out_fraction: float) -> str:
    """Pose family of one frame: training families only for "train"; for "test" the held-out
    families with probability ``held_out_fraction``, else a training family."""
    if split == "test" and rng.random() < held_out_fraction:
        return str(rng.choice(poses.HELD_OUT_FAMILIES))
    return str(rng.choice(poses.TRAIN_FAMILIES))


def _surface(rng: np.random.Generator, style: str) -> Surface:
    if style == "wooden" and rng.random() < 0.7:
        hue, sat, val = rng.uniform(0.05, 0.12), rng.uniform(0.25, 0.7), rng.uniform(0.45, 1.0)
    else:
        hue, sat, val = rng.random(), rng.uniform(0.0, 0.9), rng.uniform(0.15, 1.0)
    colour = np.array(colorsys.hsv_to_rgb(hue, sat, val))
    return Surface(colour=colour, roughness=float(rng.uniform(0.3, 0.9)),
                   metallic=float(rng.uniform(0.0, 0.3)))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _lighting(rng: np.random.Generator) -> Lighting:
    key = _unit(np.array([rng.uniform(-1, 1), rng.uniform(-0.2, 1.0), rng.uniform(0.3, 1.5)]))
    fill = _unit(np.array([rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0.0, 1.0)]))
    warm = rng.uniform(-0.15, 0.15)
    return Lighting(
        key_direction=key,
        key_intensity=float(rng.uniform(1.5, 5.0)),
        key_colour=np.clip(np.array([1 + warm, 1.0, 1 - warm]), 0, 1),
        fill_direction=fill,
        fill_intensity=float(rng.uniform(0.0, 1.5)),
        ambient=float(rng.uniform(0.1, 0.5)),
    )


def _colour_jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Whole-frame photometric jitter (float32 0..255 in, out)."""
    image = image.astype(np.float32) * np.float32(rng.uniform(0.7, 1.3)) + np.float32(
        rng.uniform(-20, 20))
    mean = image.mean()
    image = (image - mean) * np.float32(rng.uniform(0.7, 1.3)) + mean
    grey = image.mean(axis=2, keepdims=True)
    image = grey + (image - grey) * np.float32(rng.uniform(0.5, 1.4))
    image = image * rng.uniform(0.9, 1.1, size=3).astype(np.float32)
    gamma = np.float32(rng.uniform(0.8, 1.25))
    image = np.float32(255.0) * (np.clip(image, 0, 255) / np.float32(255.0)) ** gamma
    if rng.random() < 0.15:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, 1.0))
    sigma = np.float32(rng.uniform(0.0, 6.0))
    image = image + sigma * rng.standard_normal(size=image.shape, dtype=np.float32)
    return np.clip(image, 0, 255)


class SyntheticGenerator:
    """Renders frames of one split. Holds the GL context and a cache of subjects (bodies).

    Args:
        split: "train" or "test".
        seed: base seed; with the split code it fully determines every frame.
        config: sampling ranges.
    """

    def __init__(self, split: str, seed: int, config: SyntheticConfig = SyntheticConfig()) -> None:
        if split not in SPLIT_CODES:
            raise ValueError(f"split must be one of {tuple(SPLIT_CODES)}, got {split!r}")
        self.split = split
        self.seed = int(seed)
        self.config = config
        self.backgrounds = BackgroundBank(split, config.size)
        self.renderer = BodyRenderer(config.size, config.size)
        self._bodies: dict[int, Body] = {}

    def subject(self, k: int) -> Body:
        """Subject ``k`` of this split: its style, convex level of detail and shape betas."""
        if k not in self._bodies:
            rng = np.random.default_rng(
                np.random.SeedSequence([self.seed, SPLIT_CODES[self.split], SUBJECT_STREAM, k])
            )
            betas = np.clip(rng.normal(0.0, self.config.betas_std, 10), -2.5, 2.5)
            style = STYLES[k % len(STYLES)]
            lod = int(rng.integers(0, 2))
            self._bodies[k] = Body(style, betas, lod=lod)
        return self._bodies[k]


    def frame(self, index: int) -> Frame:
        """Render frame ``index`` (deterministic in seed, split and index)."""
        rng = frame_rng(self.seed, self.split, index)
        size = self.config.size
        subject_id = int(rng.integers(self.config.num_subjects[self.split]))
        body = self.subject(subject_id)
        family = choose_family(rng, self.split, self.config.held_out_fraction)
        sampled = poses.sample_pose(rng, family)
        posed = body.pose(sampled.body_pose, sampled.hand_pose)

        # Body yaw 0-360 degrees and a small lean, about the pelvis.
        yaw = rng.uniform(0, 2 * np.pi)
        lean = rng.normal(0, np.deg2rad(4), size=2)
        rot = _rot_y(yaw) @ _rot_x(lean[0]) @ _rot_z(lean[1])
        pelvis = posed.joints[skeleton.ROOT]
        verts_w = (posed.vertices - pelvis) @ rot.T
        joints_w = (posed.joints - pelvis) @ rot.T

        camera = sample_camera(rng, verts_w, size, size, self.config.camera)
        verts_c = camera.to_camera(verts_w)
        joints_c = camera.to_camera(joints_w)
        surface = _surface(rng, body.style)
        if self.config.outfits:
            outfit_rng = np.random.default_rng(np.random.SeedSequence(
                [self.seed, SPLIT_CODES[self.split], OUTFIT_STREAM, index]))
            # The mannequin colour drawn above only tints the outfit a little (material sheen):
            # the draw stays so every later draw is the same as with outfits off.
            tint = 0.85 + 0.15 * surface.colour
            surface = Surface(colour=tint, roughness=surface.roughness,
                              metallic=surface.metallic,
                              vertex_colours=sample_outfit(outfit_rng).vertex_colours(body.regions))
        lighting = _lighting(rng)
        rgb, depth = self.renderer.render(verts_c, posed.faces, camera.K, surface, lighting)
        silhouette = depth > 0

        background = self.backgrounds.sample(rng)
        alpha = cv2.GaussianBlur(silhouette.astype(np.float32), (0, 0), 0.6)[..., None]
        image = alpha * rgb.astype(np.float32) + (1.0 - alpha) * background

        bbox = _bbox(silhouette)
        occluder = np.zeros_like(silhouette)
        if silhouette.any() and rng.random() < self.config.occluder_prob:
            occluder = self.backgrounds.occluder(rng, tuple(bbox))
            fill = (self.backgrounds.photo_crop(rng) if rng.random() < 0.5
                    else self.backgrounds.texture(rng))
            image[occluder] = fill[occluder]
        image = _colour_jitter(image, rng)

        joints_2d = project(joints_c, camera.K)
        in_frame = (
            (joints_2d[:, 0] >= 0) & (joints_2d[:, 0] <= size - 1)
            & (joints_2d[:, 1] >= 0) & (joints_2d[:, 1] <= size - 1) & (joints_c[:, 2] > 0)
        )
        px = np.clip(np.rint(joints_2d).astype(int), 0, size - 1)
        surface_depth = depth[px[:, 1], px[:, 0]]
        self_occluded = (surface_depth > 0) & (surface_depth < joints_c[:, 2] - _MARGINS)
        under_occluder = occluder[px[:, 1], px[:, 0]]
        visible = in_frame & ~self_occluded & ~under_occluder
        mask = silhouette & ~occluder

        meta = {
            "family": FAMILY_IDS[family],
            "style": STYLE_IDS[body.style],
            "subject": subject_id,
            "occluded": int(occluder.any()),
            "elevation_deg": camera.elevation_deg,
            "height_fraction": camera.height_fraction,
            "mask_fraction": float(mask.mean()),
            "index": int(index),
        }
        return Frame(
            image=np.rint(image).astype(np.uint8),
            mask=mask.astype(np.uint8),
            joints_2d=joints_2d.astype(np.float32),
            joints_3d=(joints_c * 1000.0).astype(np.float32),
            visible=visible.astype(np.uint8),
            in_frame=in_frame.astype(np.uint8),
            K=camera.K.astype(np.float32),
            bbox=bbox,
            meta=meta,
            body_pose=sampled.body_pose.astype(np.float32),
            betas=body.betas.astype(np.float32),
        )

    def close(self) -> None:
        self.renderer.close()


def _bbox(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return np.zeros(4, np.float32)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float32)


def _rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
