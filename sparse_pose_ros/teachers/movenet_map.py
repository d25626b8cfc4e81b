"""MoveNet's 17 COCO keypoints -> our Human3.6M-17 joints (order of ``skeleton.JOINT_NAMES``).

The counterpart of :mod:`.blazepose_map` for the MoveNet teacher (``data.movenet_teacher``).
Twelve H36M joints are COCO keypoints as they are (hips, knees, ankles, shoulders, elbows,
wrists of both sides; COCO's left/right is the subject's own, as ours). The rest are derived,
each by an affine rule (valid for pixels and for normalised coordinates), documented in
:data:`APPROXIMATIONS`:

* pelvis = mid-point of the two hips; thorax = mid-point of the shoulders; spine = mid-point of
  pelvis and thorax; neck_nose = the nose. The same rules as for BlazePose, with the same costs
  (``blazepose_map``): given BlazePose's own landmarks at the COCO keypoints, these 16 joints
  are identical to ``blazepose_map``'s.
* head_top = mid-ears + 1.3 · (mid-eyes − nose) + 0.3 · (mid-ears − mid-shoulders). COCO has no
  crown and, unlike BlazePose, no mouth, so BlazePose's rule (mid-ears + 1.6 · (mid-eyes −
  mid-mouth)) cannot be copied. The face's eyes − nose vector gives the head's "up" in the
  image but is short and, seen from the side, points backwards (the nose sticks out); the
  neck's ears − shoulders vector adds the body's up. The two coefficients are a least-squares
  fit of BlazePose's rule on BlazePose's 2D landmarks of the train-split label corpus (912
  frames, fit 1.31 / 0.31, rounded), so both teachers label the *same* point: measured on those
  landmarks, this rule is a median 4.2 px (p90 10.6 px) from BlazePose's head top on the train
  split and 4.0 px (p90 7.2 px) on the held-out split, ≈ 2 % of the shoulder–hip distance
  (eyes − nose alone: 11–13 px; ears − shoulders alone: 11–15 px). It is fitted in the image
  plane: on BlazePose's 3D world landmarks it is a median 38 mm off (the nose's forward offset
  enters eyes − nose), so do not apply it to 3D points. It inherits BlazePose's rule's bias
  (no crown landmark in either) and is the least reliable of the 17 joints, with spine.

A derived joint's score is the minimum of its inputs' scores (as visibility in
``blazepose_map``). Pure numpy; works on one pose (17, D) or a batch (..., 17, D).
"""

from __future__ import annotations

import numpy as np

from ..model.movenet_head import COCO_KEYPOINTS, NUM_KEYPOINTS
from ..skeleton import JOINT_NAMES, NUM_JOINTS
from .blazepose_map import BLAZEPOSE_NAMES

_COCO = {name: i for i, name in enumerate(COCO_KEYPOINTS)}
#: BlazePose's landmark at each COCO keypoint (same name), to compare the two teachers.
BLAZEPOSE_OF_COCO: tuple[int, ...] = tuple(BLAZEPOSE_NAMES.index(n) for n in COCO_KEYPOINTS)

#: H36M joints that are one COCO keypoint each (same name in both sets).
DIRECT: dict[str, int] = {
    name: _COCO[name]
    for name in (
        "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
        "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow",
        "right_wrist",
    )
}  # fmt: skip

#: head_top = mid-ears + FACE · (mid-eyes − nose) + NECK · (mid-ears − mid-shoulders).
HEAD_TOP_FACE_RATIO: float = 1.3
HEAD_TOP_NECK_RATIO: float = 0.3

#: Human-readable rule for every H36M joint (written into the label cache's manifest).
APPROXIMATIONS: dict[str, str] = {
    **{name: f"coco[{idx}] {name} (exact)" for name, idx in DIRECT.items()},
    "pelvis": "mid(left_hip[11], right_hip[12]); H36M pelvis marker is a few cm lower",
    "thorax": "mid(left_shoulder[5], right_shoulder[6]); H36M thorax is slightly lower/front",
    "spine": "mid(pelvis, thorax); H36M spine is mid-torso",
    "neck_nose": "coco[0] nose",
    "head_top": (
        f"mid(ears[3,4]) + {HEAD_TOP_FACE_RATIO} * (mid(eyes[1,2]) - nose[0]) + "
        f"{HEAD_TOP_NECK_RATIO} * (mid(ears[3,4]) - mid(shoulders[5,6])); image plane only; "
        "fitted to BlazePose's head_top rule (median 4 px apart on the corpus), least reliable"
    ),
}


def map_to_h36m(
    points: np.ndarray, scores: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Map COCO-17 keypoints to H36M-17.

    Args:
        points: (..., 17, D) keypoint coordinates in COCO order (D = 2 for pixels; every rule is
            affine, but head_top is meant for the image plane only).
        scores: (..., 17) keypoint scores in [0, 1]; ``None`` means all ones.

    Returns:
        ``(joints, joint_scores)``: (..., 17, D) float64 in skeleton.JOINT_NAMES order and
        (..., 17). NaN inputs give NaN outputs where they are used (a frame without a person).

    Raises:
        ValueError: wrong shapes.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim < 2 or p.shape[-2] != NUM_KEYPOINTS:
        raise ValueError(f"expected (..., {NUM_KEYPOINTS}, D) keypoints, got shape {p.shape}")
    s = np.ones(p.shape[:-1]) if scores is None else np.asarray(scores, np.float64)
    if s.shape != p.shape[:-1]:
        raise ValueError(f"expected scores of shape {p.shape[:-1]}, got {s.shape}")

    out = np.zeros((*p.shape[:-2], NUM_JOINTS, p.shape[-1]))
    sc = np.zeros((*p.shape[:-2], NUM_JOINTS))
    idx = {n: i for i, n in enumerate(JOINT_NAMES)}
    for name, k in DIRECT.items():
        out[..., idx[name], :] = p[..., k, :]
        sc[..., idx[name]] = s[..., k]

    def both(a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
        return (0.5 * (p[..., _COCO[a], :] + p[..., _COCO[b], :]),
                np.minimum(s[..., _COCO[a]], s[..., _COCO[b]]))

    pelvis, s_pelvis = both("left_hip", "right_hip")
    thorax, s_thorax = both("left_shoulder", "right_shoulder")
    out[..., idx["pelvis"], :], sc[..., idx["pelvis"]] = pelvis, s_pelvis
    out[..., idx["thorax"], :], sc[..., idx["thorax"]] = thorax, s_thorax
    out[..., idx["spine"], :] = 0.5 * (pelvis + thorax)
    sc[..., idx["spine"]] = np.minimum(s_pelvis, s_thorax)
    out[..., idx["neck_nose"], :] = p[..., _COCO["nose"], :]
    sc[..., idx["neck_nose"]] = s[..., _COCO["nose"]]

    ears, s_ears = both("left_ear", "right_ear")
    eyes, s_eyes = both("left_eye", "right_eye")
    nose, s_nose = p[..., _COCO["nose"], :], s[..., _COCO["nose"]]
    out[..., idx["head_top"], :] = (ears + HEAD_TOP_FACE_RATIO * (eyes - nose)
                                    + HEAD_TOP_NECK_RATIO * (ears - thorax))
    sc[..., idx["head_top"]] = np.minimum.reduce([s_ears, s_eyes, s_nose, s_thorax])
    return out, sc
