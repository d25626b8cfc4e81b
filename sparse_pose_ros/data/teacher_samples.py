"""Training samples at the network's input size from the three kinds of labelled data.

One sample format for every source, so the frozen-feature recipe (``training.frozen_recipe``)
treats them alike:

- **real crops**: a labelled real frame (``data.label_cache``) cut to a square around the
  teacher's person, zoomed out by a random factor so the person fills from most of the input
  down to a fifth of it (the small people sparse execution is for), jittered, maybe mirrored.
  Multi-person frames keep the labelled person at the centre, which is also how MoveNet picks
  its person (the centre prior), so the target is never ambiguous.
- **pastes**: a teacher-segmented person (``data.copy_paste``) pasted at a random size onto a
  background photo or texture of the synthetic bank: new scenes, many small people.
- **synthetic**: a rendered frame (``data.shards``, exact 2D/3D and silhouette), zoomed out the
  same way.

Depth labels are root-relative millimetres along the camera's forward axis with a weight that
says how much to trust them: 1 for synthetic and triangulated (Pose2Sim) joints, lower for
BlazePose's world landmarks (a single-view estimate; ``DEPTH_WEIGHT``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from ..framing import person_square
from ..skeleton import NUM_JOINTS, ROOT, flip_permutation
from .copy_paste import PersonCutout, composite
from .label_cache import LabelSet, iter_images

#: Trust in each kind of depth label (weight of its L_3D z term).
DEPTH_WEIGHT: dict[str, float] = {"synthetic": 1.0, "triangulated": 1.0, "blazepose_world": 0.3}
_FLIP = np.array(flip_permutation())
#: Teacher visibility below which a joint's 2D label is not used.
MIN_VISIBILITY = 0.5


@dataclass
class TeacherSample:
    """One training input and its labels.

    Attributes:
        image: (S, S, 3) uint8 RGB.
        joints_px: (17, 2) input pixels, pixel centres at integer coordinates.
        weight: (17,) 2D label weight in [0, 1] (0 = no label: invisible or outside).
        depth_mm: (17,) root-relative depth in mm (camera forward), NaN where unknown.
        depth_weight: trust in ``depth_mm`` (``DEPTH_WEIGHT``), 0 when there is none.
        person: (S, S) float32 person mask in [0, 1] (teacher segmentation or silhouette).
        kind: "real_crop", "paste" or "synthetic".
        origin: the frame id (real) or shard index (synthetic) it was made from.
    """

    image: np.ndarray
    joints_px: np.ndarray
    weight: np.ndarray
    depth_mm: np.ndarray
    depth_weight: float
    person: np.ndarray
    kind: str
    origin: str


def _window_matrix(centre: np.ndarray, side: float, size: int) -> np.ndarray:
    """2×3 affine taking the square window (centre, side) of the image onto a size² input."""
    s = size / side  # pixel centres at integers: p' = s (p - c) + size/2 - 1/2
    return np.array([[s, 0.0, size / 2.0 - 0.5 - s * centre[0]],
                     [0.0, s, size / 2.0 - 0.5 - s * centre[1]]])


def _warp(image: np.ndarray, mat: np.ndarray, size: int, fill: int | tuple[int, ...],
          interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    return cv2.warpAffine(image, mat, (size, size), flags=interpolation,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=fill)


def _apply(mat: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ mat[:, :2].T + mat[:, 2]


def mirror(sample: TeacherSample) -> TeacherSample:
    """Left-right mirror: image and masks flipped, joints mirrored and their sides swapped
    (the subject's left becomes the mirrored subject's right); depth is unchanged."""
    size = sample.image.shape[1]
    joints = sample.joints_px[_FLIP].copy()
    joints[:, 0] = size - 1 - joints[:, 0]
    return TeacherSample(
        image=np.ascontiguousarray(sample.image[:, ::-1]),
        joints_px=joints,
        weight=sample.weight[_FLIP].copy(),
        depth_mm=sample.depth_mm[_FLIP].copy(),
        depth_weight=sample.depth_weight,
        person=np.ascontiguousarray(sample.person[:, ::-1]),
        kind=sample.kind,
        origin=sample.origin,
    )


def _inside(joints: np.ndarray, size: int) -> np.ndarray:
    return np.all((joints >= 0) & (joints <= size - 1), axis=1)


def zoomed_window(rng: np.random.Generator, joints_px: np.ndarray, visible: np.ndarray,
                  zoom: tuple[float, float], jitter: float) -> tuple[np.ndarray, float]:
    """A square around the visible joints (``framing.person_square`` with side factor 1.25),
    zoomed out by a log-uniform factor in ``zoom`` and shifted by up to ``jitter`` × side."""
    pts = joints_px[visible] if visible.sum() >= 2 else joints_px
    centre, side = person_square(pts, 1.25, 16.0)
    side *= float(np.exp(rng.uniform(np.log(zoom[0]), np.log(zoom[1]))))
    centre = centre + rng.uniform(-jitter, jitter, 2) * side
    return centre, side


def crop_sample(image: np.ndarray, person: np.ndarray, joints_px: np.ndarray,
                weight: np.ndarray, depth_mm: np.ndarray, depth_weight: float,
                centre: np.ndarray, side: float, size: int, kind: str, origin: str
                ) -> TeacherSample:
    """Cut the square window (centre, side) out of a labelled image at ``size``² (grey fill
    outside the image); joints outside the window lose their weight."""
    mat = _window_matrix(centre, side, size)
    img = _warp(image, mat, size, (128, 128, 128))
    if person.shape != image.shape[:2]:
        person = cv2.resize(person, (image.shape[1], image.shape[0]),
                            interpolation=cv2.INTER_LINEAR)
    msk = _warp(person.astype(np.float32), mat, size, 0)
    joints = _apply(mat, np.asarray(joints_px, np.float64))
    w = np.where(_inside(joints, size), weight, 0.0)
    return TeacherSample(img, joints.astype(np.float32), w.astype(np.float32),
                         depth_mm.astype(np.float32), depth_weight, msk, kind, origin)


def _depth_mm(joints_3d_m: np.ndarray | None) -> tuple[np.ndarray, bool]:
    if joints_3d_m is None or not np.all(np.isfinite(joints_3d_m)):
        return np.full(NUM_JOINTS, np.nan), False
    z = np.asarray(joints_3d_m, np.float64)[:, 2]
    return (z - z[ROOT]) * 1000.0, True


def triangulated_lookup(ls: LabelSet) -> dict[tuple[str, int], np.ndarray]:
    """(view, frame index) -> (17, 3) camera-frame metres of the valid triangulated frames."""
    tri = ls.triangulated
    out: dict[tuple[str, int], np.ndarray] = {}
    if tri is None:
        return out
    views = [str(v) for v in tri["views"]]
    for k, idx in enumerate(tri["frame_index"]):
        if not tri["valid"][k]:
            continue
        for v, name in enumerate(views):
            cand = tri["joints_cam_m"][k, v]
            if np.all(np.isfinite(cand)):
                out[(name, int(idx))] = cand
    return out


def real_crops(ls: LabelSet, rng: np.random.Generator, size: int, per_frame: int,
               zoom: tuple[float, float] = (1.0, 3.5), jitter: float = 0.08,
               flip: float = 0.5, min_joints: int = 8) -> Iterator[TeacherSample]:
    """``per_frame`` random crops of every frame where the teacher found a person with at
    least ``min_joints`` visible joints. Refuses held-out sources (they must not train)."""
    if ls.split == "heldout":
        raise ValueError(f"{ls.manifest['source']['id']} is held out: not for training")
    bp = ls.blazepose
    frames = ls.manifest["frames"]
    tri = triangulated_lookup(ls)
    for row, rgb in iter_images(ls):
        vis = np.nan_to_num(bp["h36m_visibility"][row])
        if not bp["detected"][row] or (vis >= MIN_VISIBILITY).sum() < min_joints:
            continue
        fid = frames[row]["id"]
        mask_u8 = ls.mask(fid)
        person = (np.zeros(rgb.shape[:2], np.float32) if mask_u8 is None
                  else mask_u8.astype(np.float32) / 255.0)
        j3 = tri.get((frames[row]["view"], frames[row]["index"]))
        kind3 = "triangulated" if j3 is not None else "blazepose_world"
        if j3 is None:
            j3 = bp["h36m_world_m"][row]
        depth, ok = _depth_mm(j3)
        dw = DEPTH_WEIGHT[kind3] if ok else 0.0
        joints = bp["h36m_px"][row]
        weight = (vis >= MIN_VISIBILITY).astype(np.float32) * np.clip(vis, 0, 1)
        for _ in range(per_frame):
            centre, side = zoomed_window(rng, joints, vis >= MIN_VISIBILITY, zoom, jitter)
            s = crop_sample(rgb, person, joints, weight, depth, dw, centre, side, size,
                            "real_crop", fid)
            yield mirror(s) if rng.random() < flip else s


def paste_sample(rng: np.random.Generator, background: np.ndarray, cut: PersonCutout,
                 height_frac: tuple[float, float] = (0.15, 0.85), flip: float = 0.5
                 ) -> TeacherSample:
    """``cut`` pasted onto ``background`` (size², uint8) with a log-uniform height fraction
    and its centre within the middle half of the input."""
    size = background.shape[0]
    h = float(np.exp(rng.uniform(np.log(height_frac[0]), np.log(height_frac[1])))) * size
    scale = h / cut.height
    nw, nh = cut.rgb.shape[1] * scale, cut.rgb.shape[0] * scale
    cx, cy = rng.uniform(0.3, 0.7, 2) * size
    comp = composite(background, [cut], [(scale, (int(round(cx - nw / 2)),
                                                  int(round(cy - nh / 2))))])
    p = comp.people[0]
    depth, ok = _depth_mm(p.joints_3d)
    kind3 = p.joints_3d_kind or "blazepose_world"
    w = np.where(p.visibility >= MIN_VISIBILITY, np.clip(p.visibility, 0, 1), 0.0)
    w = np.where(_inside(p.joints_px, size), w, 0.0)
    s = TeacherSample(comp.image, p.joints_px.astype(np.float32), w.astype(np.float32),
                      depth.astype(np.float32), DEPTH_WEIGHT[kind3] if ok else 0.0,
                      comp.person_mask.astype(np.float32), "paste", p.frame_id)
    return mirror(s) if rng.random() < flip else s


def synthetic_sample(rng: np.random.Generator, frame: dict[str, np.ndarray], size: int,
                     index: int, zoom: tuple[float, float] = (1.0, 3.0), jitter: float = 0.08,
                     flip: float = 0.5) -> TeacherSample:
    """A rendered frame (``ShardDataset.sample``) re-framed like the real crops."""
    joints = np.asarray(frame["joints_2d"], np.float64)
    weight = (np.asarray(frame["visible"]) > 0).astype(np.float32)
    depth = np.asarray(frame["joints_3d"], np.float64)[:, 2]
    depth = depth - depth[ROOT]
    centre, side = zoomed_window(rng, joints, np.asarray(frame["in_frame"]) > 0, zoom, jitter)
    s = crop_sample(frame["image"], frame["mask"].astype(np.float32), joints, weight, depth,
                    DEPTH_WEIGHT["synthetic"], centre, side, size, "synthetic", f"synth_{index}")
    return mirror(s) if rng.random() < flip else s
