"""Pose sampler: plausible body poses from named families, clamped to anatomical joint limits.

Each joint's local rotation is parameterised by extrinsic x-y-z Euler angles (degrees) in the
mannequin's rest frame (Y up, body facing +Z, subject's left = +X, T-pose arms along +-X). Limits
are boxes in that space, written for the left side and mirrored for the right side (a mirror in
the YZ plane keeps x and negates y and z). Families set the joints that define them; every other
joint gets small Gaussian noise around neutral; everything is clamped to the box.

Useful signs (left side; the right side is mirrored): hip x < 0 swings the thigh forward, knee
x > 0 bends it, spine x > 0 bends forward, shoulder z < 0 lowers the arm from the T-pose, shoulder
y < 0 swings it forward, elbow y < 0 bends it, collar z > 0 shrugs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

#: SMPL-X joints 1..21 (body_pose rows 0..20).
BODY_JOINTS: tuple[str, ...] = (
    "L_Hip", "R_Hip", "Spine1", "L_Knee", "R_Knee", "Spine2", "L_Ankle", "R_Ankle", "Spine3",
    "L_Foot", "R_Foot", "Neck", "L_Collar", "R_Collar", "Head", "L_Shoulder", "R_Shoulder",
    "L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist",
)
ROW = {name: i for i, name in enumerate(BODY_JOINTS)}

#: Limits for centre and left joints: name -> ((xmin, xmax), (ymin, ymax), (zmin, zmax)), degrees.
_LIMITS_LEFT: dict[str, tuple[tuple[float, float], ...]] = {
    "Hip": ((-125.0, 30.0), (-40.0, 40.0), (-25.0, 60.0)),
    "Knee": ((0.0, 150.0), (-5.0, 5.0), (-5.0, 5.0)),
    "Ankle": ((-30.0, 45.0), (-15.0, 15.0), (-20.0, 20.0)),
    "Foot": ((-10.0, 10.0), (-5.0, 5.0), (-5.0, 5.0)),
    "Collar": ((-10.0, 10.0), (-20.0, 20.0), (-10.0, 30.0)),
    "Shoulder": ((-70.0, 70.0), (-100.0, 45.0), (-95.0, 85.0)),
    "Elbow": ((-60.0, 60.0), (-150.0, 0.0), (-5.0, 5.0)),
    "Wrist": ((-40.0, 40.0), (-30.0, 30.0), (-60.0, 60.0)),
    "Spine1": ((-20.0, 35.0), (-20.0, 20.0), (-15.0, 15.0)),
    "Spine2": ((-15.0, 30.0), (-20.0, 20.0), (-15.0, 15.0)),
    "Spine3": ((-15.0, 30.0), (-20.0, 20.0), (-15.0, 15.0)),
    "Neck": ((-30.0, 40.0), (-45.0, 45.0), (-25.0, 25.0)),
    "Head": ((-25.0, 30.0), (-40.0, 40.0), (-20.0, 20.0)),
}


def _build_limits() -> np.ndarray:
    limits = np.zeros((len(BODY_JOINTS), 3, 2))
    for row, name in enumerate(BODY_JOINTS):
        side, _, base = name.partition("_")
        if not base:
            limits[row] = _LIMITS_LEFT[name]
            continue
        box = np.array(_LIMITS_LEFT[base])
        if side == "R":
            box[1:] = -box[1:, ::-1]
        limits[row] = box
    return limits


#: (21, 3, 2) min/max Euler angles in degrees per body_pose row and axis.
JOINT_LIMITS_DEG: np.ndarray = _build_limits()

#: Families used for training; HELD_OUT_FAMILIES appear only in the test split.
TRAIN_FAMILIES: tuple[str, ...] = (
    "standing", "walking", "reaching", "arms_up", "crouching", "bending", "random",
)
HELD_OUT_FAMILIES: tuple[str, ...] = ("sitting",)
ALL_FAMILIES: tuple[str, ...] = TRAIN_FAMILIES + HELD_OUT_FAMILIES


@dataclass(frozen=True)
class SampledPose:
    """One sampled pose: axis-angle rows for mannequin-x plus its Euler angles and family."""

    body_pose: np.ndarray  # (21, 3) axis-angle, radians
    euler_deg: np.ndarray  # (21, 3) the clamped Euler angles it was built from
    hand_pose: np.ndarray  # (30, 3) axis-angle finger rotations
    family: str


def euler_to_axis_angle(euler_deg: np.ndarray) -> np.ndarray:
    """(..., 3) extrinsic xyz Euler degrees -> axis-angle radians."""
    flat = np.asarray(euler_deg, dtype=np.float64).reshape(-1, 3)
    return Rotation.from_euler("xyz", flat, degrees=True).as_rotvec().reshape(np.shape(euler_deg))


def axis_angle_to_euler(axis_angle: np.ndarray) -> np.ndarray:
    """Inverse of :func:`euler_to_axis_angle`, with y in [-90, 90] (so a 150-degree elbow bend comes
    back as an equivalent triple; compare rotations, not angles)."""
    flat = np.asarray(axis_angle, dtype=np.float64).reshape(-1, 3)
    return Rotation.from_rotvec(flat).as_euler("xyz", degrees=True).reshape(np.shape(axis_angle))


def _set(e: np.ndarray, joint: str, x: float = 0.0, y: float = 0.0, z: float = 0.0) -> None:
    e[ROW[joint]] += (x, y, z)


def _both(e: np.ndarray, base: str, x: float, y: float, z: float) -> None:
    """Same anatomical motion on both sides (mirrored y and z)."""
    _set(e, "L_" + base, x, y, z)
    _set(e, "R_" + base, x, -y, -z)


def _arm(e: np.ndarray, side: str, lower: float, forward: float, bend: float, twist: float) -> None:
    """Arm pose by anatomical quantities for ``side`` in {"L", "R"} (degrees)."""
    mirror = 1.0 if side == "L" else -1.0
    _set(e, side + "_Shoulder", twist, -forward * mirror, -lower * mirror)
    _set(e, side + "_Elbow", 0.0, -bend * mirror, 0.0)


def _relaxed_arms(e: np.ndarray, rng: np.random.Generator) -> None:
    for side in "LR":
        _arm(e, side, rng.uniform(60, 90), rng.uniform(-15, 30), rng.uniform(0, 50),
             rng.uniform(-30, 30))


def _standing(e: np.ndarray, rng: np.random.Generator) -> None:
    _relaxed_arms(e, rng)
    _both(e, "Hip", rng.uniform(-10, 5), 0.0, rng.uniform(0, 12))
    if rng.random() < 0.5:  # weight on one leg
        _set(e, "L_Knee", rng.uniform(0, 25))
    _set(e, "Spine1", rng.uniform(-5, 10), rng.uniform(-10, 10), rng.uniform(-6, 6))


def _walking(e: np.ndarray, rng: np.random.Generator) -> None:
    phase = rng.uniform(0, 2 * np.pi)
    stride = rng.uniform(15, 40)
    run = rng.random() < 0.3
    swing = np.sin(phase)
    _set(e, "L_Hip", -stride * swing)
    _set(e, "R_Hip", stride * swing)
    knee_gain = 90 if run else 45
    _set(e, "L_Knee", knee_gain * max(0.0, np.sin(phase + 1.2)) + 5)
    _set(e, "R_Knee", knee_gain * max(0.0, np.sin(phase + 1.2 + np.pi)) + 5)
    arm_swing = rng.uniform(15, 45)
    bend = rng.uniform(60, 100) if run else rng.uniform(5, 40)
    _arm(e, "L", rng.uniform(65, 85), arm_swing * swing, bend, 0.0)
    _arm(e, "R", rng.uniform(65, 85), -arm_swing * swing, bend, 0.0)
    _set(e, "Spine1", rng.uniform(0, 15 if run else 6), 0.0, 0.0)
    _set(e, "Spine2", 0.0, 8 * swing, 0.0)


def _reaching(e: np.ndarray, rng: np.random.Generator) -> None:
    _relaxed_arms(e, rng)
    sides = ["L", "R"] if rng.random() < 0.35 else [rng.choice(["L", "R"])]
    for side in sides:
        row = ROW[side + "_Shoulder"]
        e[row] = 0.0
        e[ROW[side + "_Elbow"]] = 0.0
        _arm(e, side, rng.uniform(-40, 80), rng.uniform(30, 100), rng.uniform(0, 40),
             rng.uniform(-40, 40))
    _set(e, "Spine1", rng.uniform(0, 25), rng.uniform(-15, 15), rng.uniform(-10, 10))
    _set(e, "Spine2", rng.uniform(0, 15), rng.uniform(-15, 15), 0.0)
    if rng.random() < 0.4:  # step forward
        _set(e, "L_Hip", rng.uniform(-40, -10))
        _set(e, "L_Knee", rng.uniform(10, 50))


def _arms_up(e: np.ndarray, rng: np.random.Generator) -> None:
    for side in "LR":
        if rng.random() < 0.8:
            _arm(e, side, rng.uniform(-85, -30), rng.uniform(-20, 40), rng.uniform(0, 90),
                 rng.uniform(-40, 40))
        else:
            _arm(e, side, rng.uniform(40, 90), rng.uniform(-10, 30), rng.uniform(0, 60), 0.0)
    _both(e, "Collar", 0.0, 0.0, rng.uniform(0, 20))
    _both(e, "Hip", rng.uniform(-10, 5), 0.0, rng.uniform(0, 25))
    _set(e, "Spine1", rng.uniform(-15, 5), 0.0, rng.uniform(-12, 12))
    _set(e, "Neck", rng.uniform(-25, 5))


def _crouching(e: np.ndarray, rng: np.random.Generator) -> None:
    depth = rng.uniform(0.4, 1.0)
    for side in "LR":
        _set(e, side + "_Hip", -120 * depth + rng.uniform(-10, 10), 0.0, 0.0)
        _set(e, side + "_Knee", 145 * depth + rng.uniform(-10, 5))
        _set(e, side + "_Ankle", 40 * depth)
    _both(e, "Hip", 0.0, rng.uniform(-10, 25), rng.uniform(5, 30))
    _set(e, "Spine1", rng.uniform(10, 35))
    _set(e, "Spine2", rng.uniform(0, 20))
    for side in "LR":
        _arm(e, side, rng.uniform(20, 85), rng.uniform(20, 90), rng.uniform(10, 110), 0.0)


def _bending(e: np.ndarray, rng: np.random.Generator) -> None:
    _set(e, "Spine1", rng.uniform(15, 35), rng.uniform(-15, 15), rng.uniform(-10, 10))
    _set(e, "Spine2", rng.uniform(10, 30), rng.uniform(-15, 15), 0.0)
    _set(e, "Spine3", rng.uniform(0, 25), 0.0, 0.0)
    _both(e, "Hip", rng.uniform(-60, -10), 0.0, rng.uniform(0, 20))
    _both(e, "Knee", rng.uniform(0, 30), 0.0, 0.0)
    _set(e, "Neck", rng.uniform(-30, 0))
    for side in "LR":
        _arm(e, side, rng.uniform(50, 90), rng.uniform(0, 80), rng.uniform(0, 60), 0.0)


def _sitting(e: np.ndarray, rng: np.random.Generator) -> None:
    for side in "LR":
        flex = rng.uniform(-100, -75)
        spread = rng.uniform(0, 20) * (1 if side == "L" else -1)
        _set(e, side + "_Hip", flex, 0.0, spread)
        _set(e, side + "_Knee", rng.uniform(60, 110))
    _set(e, "Spine1", rng.uniform(-10, 15))
    for side in "LR":
        _arm(e, side, rng.uniform(55, 90), rng.uniform(10, 60), rng.uniform(20, 100), 0.0)


def _random(e: np.ndarray, rng: np.random.Generator) -> None:
    """Uniform inside the limits for limbs (wide coverage), milder for spine and head."""
    for name in ("L_Hip", "R_Hip", "L_Knee", "R_Knee", "L_Shoulder", "R_Shoulder",
                 "L_Elbow", "R_Elbow"):
        lo, hi = JOINT_LIMITS_DEG[ROW[name], :, 0], JOINT_LIMITS_DEG[ROW[name], :, 1]
        e[ROW[name]] = rng.uniform(lo, hi)
    # Keep legs mostly under the body so the pose stays plausible for a standing person.
    for name in ("L_Hip", "R_Hip"):
        e[ROW[name], 0] *= 0.6


_FAMILY_FUNCS: dict[str, Callable[[np.ndarray, np.random.Generator], None]] = {
    "standing": _standing,
    "walking": _walking,
    "reaching": _reaching,
    "arms_up": _arms_up,
    "crouching": _crouching,
    "bending": _bending,
    "random": _random,
    "sitting": _sitting,
}

#: Standard deviation (degrees) of the per-joint noise added to every family.
NOISE_DEG: float = 6.0


def clamp_to_limits(euler_deg: np.ndarray) -> np.ndarray:
    """Clamp (21, 3) Euler angles into :data:`JOINT_LIMITS_DEG`."""
    return np.clip(euler_deg, JOINT_LIMITS_DEG[..., 0], JOINT_LIMITS_DEG[..., 1])


def sample_pose(rng: np.random.Generator, family: str) -> SampledPose:
    """Sample one pose of ``family`` (see :data:`ALL_FAMILIES`)."""
    if family not in _FAMILY_FUNCS:
        raise ValueError(f"unknown pose family {family!r}; known: {ALL_FAMILIES}")
    euler = rng.normal(0.0, NOISE_DEG, size=(len(BODY_JOINTS), 3))
    _FAMILY_FUNCS[family](euler, rng)
    euler = clamp_to_limits(euler)
    hand = np.zeros((30, 3))
    hand[:, 2] = rng.uniform(-0.3, 0.6) * np.tile([1.0, 1.0, 1.0], 10)  # overall finger curl
    hand[15:, 2] *= -1.0  # mirrored for the right hand
    hand += rng.normal(0.0, 0.08, size=hand.shape)
    return SampledPose(
        body_pose=euler_to_axis_angle(euler),
        euler_deg=euler,
        hand_pose=hand,
        family=family,
    )
