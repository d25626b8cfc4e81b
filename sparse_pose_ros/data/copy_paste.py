"""Copy-paste: teacher-segmented real people pasted onto other images, at chosen scale and place.

The real corpus has few scenes and mostly large people, while sparse execution pays on small
people in big frames. Cutting a person out with the teacher's mask and pasting it, smaller and
elsewhere, onto background photos, other frames or synthetic backgrounds gives many scenes and
many small people with labels carried along: 2D joints move with the paste (scale + offset),
visibility drops for joints a later paste covers, the person mask is the pasted alpha.

3D labels (root-relative) are carried unchanged. That is a weak-perspective approximation: a
smaller paste stands for a farther person seen from the same direction; the few degrees by
which the viewing ray changes with the paste position are ignored.

The teacher's mask is a soft probability map stored at 1/4 resolution; it is upsampled
bilinearly and used as alpha, so edges are soft rather than jagged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..skeleton import NUM_JOINTS, ROOT
from .label_cache import LabelSet, iter_images

#: Alpha above which a pixel counts as person (for boxes, occlusion and the union mask).
ALPHA_PERSON: float = 0.5


@dataclass
class PersonCutout:
    """One person cut out of a labelled frame.

    Attributes:
        rgb: (h, w, 3) uint8 crop around the person.
        alpha: (h, w) float32 in [0, 1], the teacher's mask at full resolution.
        joints_px: (17, 2) joints in crop pixels.
        visibility: (17,) teacher visibility.
        joints_3d: (17, 3) root-relative metres (camera axes of the source view) or None.
        joints_3d_kind: ``triangulated`` | ``blazepose_world`` | None.
        frame_id: the labelled frame it comes from (licence: its source's manifest).
        origin: (x, y) of the crop's corner in the source frame.
    """

    rgb: np.ndarray
    alpha: np.ndarray
    joints_px: np.ndarray
    visibility: np.ndarray
    joints_3d: np.ndarray | None
    joints_3d_kind: str | None
    frame_id: str
    origin: tuple[int, int] = (0, 0)

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def cut_person(
    image: np.ndarray,
    mask_u8: np.ndarray,
    joints_px: np.ndarray,
    visibility: np.ndarray,
    frame_id: str = "",
    joints_3d: np.ndarray | None = None,
    joints_3d_kind: str | None = None,
    margin: float = 0.05,
    min_height_px: int = 24,
) -> PersonCutout | None:
    """Cut the masked person out of ``image``; None when the mask is empty or too small.

    Args:
        mask_u8: (h', w') uint8 person probability (0-255) at any resolution (upsampled).
        margin: share of the box size added on each side, so soft edges are not clipped.
    """
    import cv2

    h, w = image.shape[:2]
    alpha = cv2.resize(mask_u8.astype(np.float32) / 255.0, (w, h),
                       interpolation=cv2.INTER_LINEAR)
    ys, xs = np.nonzero(alpha > ALPHA_PERSON)
    if ys.size == 0 or ys.max() - ys.min() + 1 < min_height_px:
        return None
    bh, bw = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    y0 = max(0, int(ys.min() - margin * bh))
    y1 = min(h, int(ys.max() + 1 + margin * bh))
    x0 = max(0, int(xs.min() - margin * bw))
    x1 = min(w, int(xs.max() + 1 + margin * bw))
    j3 = None
    if joints_3d is not None and np.all(np.isfinite(joints_3d)):
        j3 = np.asarray(joints_3d, np.float64) - np.asarray(joints_3d, np.float64)[ROOT]
    return PersonCutout(
        rgb=np.ascontiguousarray(image[y0:y1, x0:x1]),
        alpha=np.ascontiguousarray(alpha[y0:y1, x0:x1]),
        joints_px=np.asarray(joints_px, np.float64) - [x0, y0],
        visibility=np.nan_to_num(np.asarray(visibility, np.float64)),
        joints_3d=j3,
        joints_3d_kind=joints_3d_kind if j3 is not None else None,
        frame_id=frame_id,
        origin=(x0, y0),
    )


@dataclass
class PastedPerson:
    """A person as it ends up in the composite: joints in composite pixels, visibility with
    joints covered by later pastes (or outside the image) set to 0."""

    joints_px: np.ndarray
    visibility: np.ndarray
    joints_3d: np.ndarray | None
    joints_3d_kind: str | None
    frame_id: str
    scale: float


@dataclass
class Composite:
    """The pasted image, its people (paste order) and the union person mask (float [0, 1])."""

    image: np.ndarray
    people: list[PastedPerson]
    person_mask: np.ndarray


def paste(
    background: np.ndarray, cutout: PersonCutout, scale: float, top_left: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Alpha-blend ``cutout`` scaled by ``scale`` with its crop corner at ``top_left`` (x, y).

    The paste may hang over the border (it is clipped). Returns (image, joints_px in image
    pixels, alpha of this paste over the whole image).
    """
    import cv2

    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    ch, cw = cutout.rgb.shape[:2]
    nw, nh = max(1, round(cw * scale)), max(1, round(ch * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    fg = cv2.resize(cutout.rgb, (nw, nh), interpolation=interp).astype(np.float32)
    a = cv2.resize(cutout.alpha, (nw, nh), interpolation=interp)
    sx, sy = nw / cw, nh / ch  # the exact scale after rounding the size
    H, W = background.shape[:2]
    x, y = top_left
    bx0, by0, bx1, by1 = max(0, x), max(0, y), min(W, x + nw), min(H, y + nh)
    out = background.copy()
    full_alpha = np.zeros((H, W), np.float32)
    if bx0 < bx1 and by0 < by1:
        fa = a[by0 - y:by1 - y, bx0 - x:bx1 - x, None]
        region = out[by0:by1, bx0:bx1].astype(np.float32)
        blended = region * (1 - fa) + fg[by0 - y:by1 - y, bx0 - x:bx1 - x] * fa
        out[by0:by1, bx0:bx1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        full_alpha[by0:by1, bx0:bx1] = fa[..., 0]
    joints = cutout.joints_px * [sx, sy] + [x, y]
    return out, joints, full_alpha


def _inside(joints: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    h, w = shape[:2]
    return (joints[:, 0] >= 0) & (joints[:, 0] < w) & (joints[:, 1] >= 0) & (joints[:, 1] < h)


def composite(
    background: np.ndarray,
    cutouts: Sequence[PersonCutout],
    placements: Sequence[tuple[float, tuple[int, int]]],
) -> Composite:
    """Paste ``cutouts`` in order at ``placements`` ((scale, (x, y)) each); later pastes cover
    earlier ones, and an earlier person's joint under a later paste's person pixels (alpha >
    :data:`ALPHA_PERSON`) becomes invisible, as does any joint outside the image."""
    if len(cutouts) != len(placements):
        raise ValueError("one placement per cutout")
    image = background
    people: list[PastedPerson] = []
    union = np.zeros(background.shape[:2], np.float32)
    for cut, (scale, xy) in zip(cutouts, placements, strict=True):
        image, joints, alpha = paste(image, cut, scale, xy)
        for p in people:
            ij = np.round(p.joints_px).astype(int)
            ok = _inside(p.joints_px, image.shape)
            covered = np.zeros(NUM_JOINTS, bool)
            covered[ok] = alpha[ij[ok, 1], ij[ok, 0]] > ALPHA_PERSON
            p.visibility = np.where(covered, 0.0, p.visibility)
        union = np.maximum(union, alpha)
        vis = np.where(_inside(joints, image.shape), cut.visibility, 0.0)
        people.append(PastedPerson(joints, vis, cut.joints_3d, cut.joints_3d_kind,
                                   cut.frame_id, scale))
    return Composite(image, people, union)


def random_placements(
    rng: np.random.Generator,
    cutouts: Sequence[PersonCutout],
    image_hw: tuple[int, int],
    height_frac: tuple[float, float] = (0.08, 0.6),
) -> list[tuple[float, tuple[int, int]]]:
    """A scale giving a person height drawn log-uniformly from ``height_frac`` of the image
    height (small people as often as large ones, by ratio), and a position keeping the
    cutout's centre inside the image."""
    lo, hi = np.log(height_frac[0]), np.log(height_frac[1])
    H, W = image_hw
    out = []
    for cut in cutouts:
        target = float(np.exp(rng.uniform(lo, hi))) * H
        scale = target / cut.height
        nw, nh = cut.rgb.shape[1] * scale, cut.rgb.shape[0] * scale
        cx, cy = rng.uniform(0, W), rng.uniform(0, H)
        out.append((scale, (int(round(cx - nw / 2)), int(round(cy - nh / 2)))))
    return out


def cutouts_from_label_set(
    ls: LabelSet, min_visibility_joints: int = 8, every: int = 1, allow_heldout: bool = False
) -> Iterator[PersonCutout]:
    """Cutouts of every ``every``-th labelled frame with a mask and at least
    ``min_visibility_joints`` joints of visibility ≥ 0.5. 3D: the triangulated joints of the
    frame's view where they exist (all 17), else BlazePose's world landmarks.

    Raises:
        ValueError: ``ls`` is a held-out source (its people must not reach training) and
            ``allow_heldout`` is False.
    """
    if ls.split == "heldout" and not allow_heldout:
        raise ValueError(f"{ls.manifest['source']['id']} is held out: no training pastes from it")
    bp = ls.blazepose
    tri = ls.triangulated
    tri_row: dict[tuple[str, int], tuple[int, int]] = {}
    if tri is not None:
        views = [str(v) for v in tri["views"]]
        for k, idx in enumerate(tri["frame_index"]):
            for v, name in enumerate(views):
                tri_row[(name, int(idx))] = (k, v)
    frames = ls.manifest["frames"]
    wanted = {r for r in range(0, len(frames), every)
              if bp["detected"][r] and (bp["h36m_visibility"][r] >= 0.5).sum()
              >= min_visibility_joints}
    for row, rgb in iter_images(ls):
        if row not in wanted:
            continue
        fid = frames[row]["id"]
        mask = ls.mask(fid)
        if mask is None:
            continue
        j3, kind = bp["h36m_world_m"][row], "blazepose_world"
        key = (frames[row]["view"], frames[row]["index"])
        if key in tri_row:
            k, v = tri_row[key]
            cand = tri["joints_cam_m"][k, v]
            if tri["valid"][k] and np.all(np.isfinite(cand)):
                j3, kind = cand, "triangulated"
        cut = cut_person(rgb, mask, bp["h36m_px"][row], bp["h36m_visibility"][row], fid,
                         j3, kind)
        if cut is not None:
            yield cut
