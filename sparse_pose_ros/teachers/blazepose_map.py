"""BlazePose's 33 landmarks -> our Human3.6M-17 joints (order of :mod:`sparse_pose_ros.skeleton`).

Pure numpy (works with numpy 1.x and 2.x) because it runs in two environments: the peer venv
(mediapipe needs numpy < 2) and the project venv.

Nine H36M joints are BlazePose landmarks as they are (hips, knees, ankles, shoulders, elbows,
wrists of both sides — same anatomical side convention: the subject's own left/right). The rest
are approximations, documented in :data:`APPROXIMATIONS`:

* pelvis = mid-point of the two hips. H36M's pelvis marker sits a few cm lower/behind; BlazePose's
  hip landmarks are hip-joint centres, as are ours, so the mid-point is the natural root.
* thorax = mid-point of the shoulders. H36M's thorax (upper sternum / base of the neck) lies a
  little below and in front of the shoulder line; expect a systematic offset of a few cm.
* spine = mid-point of pelvis and thorax. H36M's spine joint is roughly mid-torso, so this is
  right to within the torso's curvature.
* neck_nose = BlazePose's nose landmark (H36M joint 9 is the nose marker in the 17-joint set; our
  synthetic labels use the front-most head vertex, i.e. also the nose).
* head_top = mid-ears + 1.6 · (mid-eyes − mid-mouth). BlazePose has no crown landmark. The
  mouth→eyes vector is the head's "up" axis in the image; the crown is about 1.6 eye–mouth
  distances above the ear line for an adult head (eye line ≈ half the head height, mouth ≈ 1/3 of
  the way from the eyes to the chin). Foreshortened when the face points at or away from the
  camera; least reliable of the 17.

Visibility of a derived joint is the minimum over the landmarks it uses.
"""

from __future__ import annotations

import numpy as np

from ..skeleton import JOINT_NAMES, NUM_JOINTS

#: BlazePose landmark names, index = landmark id (mediapipe ``PoseLandmark``).
BLAZEPOSE_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye_inner",
    "left_eye",
    "left_eye_outer",
    "right_eye_inner",
    "right_eye",
    "right_eye_outer",
    "left_ear",
    "right_ear",
    "mouth_left",
    "mouth_right",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_pinky",
    "right_pinky",
    "left_index",
    "right_index",
    "left_thumb",
    "right_thumb",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "left_heel",
    "right_heel",
    "left_foot_index",
    "right_foot_index",
)
NUM_LANDMARKS: int = len(BLAZEPOSE_NAMES)
_BP = {name: i for i, name in enumerate(BLAZEPOSE_NAMES)}

#: H36M joints that are one BlazePose landmark each (same name in both sets).
DIRECT: dict[str, int] = {
    name: _BP[name]
    for name in (
        "right_hip",
        "right_knee",
        "right_ankle",
        "left_hip",
        "left_knee",
        "left_ankle",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
        "right_shoulder",
        "right_elbow",
        "right_wrist",
    )
}

#: Coefficient of the head-top extrapolation, in eye–mouth distances above the ear mid-point.
HEAD_TOP_EYE_MOUTH_RATIO: float = 1.6

#: Human-readable rule for every H36M joint (written into every result JSON).
APPROXIMATIONS: dict[str, str] = {
    **{name: f"blazepose[{idx}] {name} (exact)" for name, idx in DIRECT.items()},
    "pelvis": "mid(left_hip[23], right_hip[24]); H36M pelvis marker is a few cm lower",
    "thorax": "mid(left_shoulder[11], right_shoulder[12]); H36M thorax is slightly lower/front",
    "spine": "mid(pelvis, thorax); H36M spine is mid-torso",
    "neck_nose": "blazepose[0] nose",
    "head_top": (
        f"mid(ears[7,8]) + {HEAD_TOP_EYE_MOUTH_RATIO} * (mid(eyes[2,5]) - mid(mouth[9,10])); "
        "no crown landmark in BlazePose, least reliable"
    ),
}

#: Joints whose mapping is a landmark or a plain mid-point (no anatomical guess): the fair set
#: for agreement numbers. head_top and spine are extrapolated/interpolated guesses.
RELIABLE_JOINTS: tuple[str, ...] = tuple(
    n for n in JOINT_NAMES if n not in ("head_top", "spine")
)


def _mid(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 0.5 * (a + b)


def map_to_h36m(
    points: np.ndarray, visibility: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Map BlazePose landmarks to H36M-17.

    Args:
        points: (33, D) landmark coordinates, any D (2 for pixels, 3 for normalised x, y, z or
            world metres). Every rule is affine, so the result is consistent in any frame.
        visibility: (33,) in [0, 1]; ``None`` means all ones.

    Returns:
        ``(joints, joint_visibility)``: (17, D) float64 in skeleton.JOINT_NAMES order and (17,).

    Raises:
        ValueError: wrong shapes or non-finite values.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != NUM_LANDMARKS:
        raise ValueError(f"expected ({NUM_LANDMARKS}, D) landmarks, got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("landmarks contain NaN or inf")
    v = np.ones(NUM_LANDMARKS) if visibility is None else np.asarray(visibility, np.float64)
    if v.shape != (NUM_LANDMARKS,):
        raise ValueError(f"expected ({NUM_LANDMARKS},) visibility, got shape {v.shape}")

    out = np.zeros((NUM_JOINTS, p.shape[1]))
    vis = np.zeros(NUM_JOINTS)
    idx = {n: i for i, n in enumerate(JOINT_NAMES)}
    for name, lm in DIRECT.items():
        out[idx[name]] = p[lm]
        vis[idx[name]] = v[lm]

    def both(a: str, b: str) -> tuple[np.ndarray, float]:
        return _mid(p[_BP[a]], p[_BP[b]]), float(min(v[_BP[a]], v[_BP[b]]))

    pelvis, v_pelvis = both("left_hip", "right_hip")
    thorax, v_thorax = both("left_shoulder", "right_shoulder")
    out[idx["pelvis"]], vis[idx["pelvis"]] = pelvis, v_pelvis
    out[idx["thorax"]], vis[idx["thorax"]] = thorax, v_thorax
    out[idx["spine"]], vis[idx["spine"]] = _mid(pelvis, thorax), min(v_pelvis, v_thorax)
    out[idx["neck_nose"]], vis[idx["neck_nose"]] = p[_BP["nose"]], v[_BP["nose"]]

    ears, v_ears = both("left_ear", "right_ear")
    eyes, v_eyes = both("left_eye", "right_eye")
    mouth, v_mouth = both("mouth_left", "mouth_right")
    out[idx["head_top"]] = ears + HEAD_TOP_EYE_MOUTH_RATIO * (eyes - mouth)
    vis[idx["head_top"]] = min(v_ears, v_eyes, v_mouth)
    return out, vis
