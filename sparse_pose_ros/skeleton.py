"""The one joint set used everywhere: Human3.6M-17 in HEMlets order.

Every module (targets, losses, data, drawing, messages) indexes joints through this file, so the
order published on ``/pose3d`` is defined exactly once.
"""

from __future__ import annotations

JOINT_NAMES: tuple[str, ...] = (
    "pelvis",
    "right_hip",
    "right_knee",
    "right_ankle",
    "left_hip",
    "left_knee",
    "left_ankle",
    "spine",
    "thorax",
    "neck_nose",
    "head_top",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
)
NUM_JOINTS: int = len(JOINT_NAMES)
ROOT: int = 0

#: Parent of each joint (-1 for the root). Bones are parent -> child.
PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)

#: Skeletal parts (parent, child); HEMlets builds one heatmap triplet per part.
BONES: tuple[tuple[int, int], ...] = tuple(
    (p, c) for c, p in enumerate(PARENTS) if p >= 0
)
NUM_BONES: int = len(BONES)

#: Left/right joint pairs swapped by a horizontal image flip.
FLIP_PAIRS: tuple[tuple[int, int], ...] = ((1, 4), (2, 5), (3, 6), (11, 14), (12, 15), (13, 16))


def flip_permutation() -> list[int]:
    """Index permutation that maps joints to their mirror joints (used by flip augmentation)."""
    perm = list(range(NUM_JOINTS))
    for a, b in FLIP_PAIRS:
        perm[a], perm[b] = b, a
    return perm


def _side(name: str) -> str:
    if name.startswith("left"):
        return "left"
    if name.startswith("right"):
        return "right"
    return "centre"


#: RGB colours (0..1) per side, so left/right are readable in RViz and in PNGs.
SIDE_COLOURS: dict[str, tuple[float, float, float]] = {
    "left": (0.15, 0.55, 1.0),
    "right": (1.0, 0.35, 0.15),
    "centre": (0.2, 0.85, 0.3),
}
JOINT_COLOURS: tuple[tuple[float, float, float], ...] = tuple(
    SIDE_COLOURS[_side(n)] for n in JOINT_NAMES
)
#: A bone takes the colour of its child joint (the limb it describes).
BONE_COLOURS: tuple[tuple[float, float, float], ...] = tuple(JOINT_COLOURS[c] for _, c in BONES)


#: Torso joints defined as mid-points, in the order they are computed (joint, a, b): the
#: pelvis between the hips, the thorax between the shoulders, the spine between those two —
#: how the teacher labels define them (``teachers.blazepose_map``), and so the real 3D labels
#: (triangulated Pose2Sim, BlazePose world). A network trained on both those and the synthetic
#: renders' SMPL-X joint centres (a pelvis a few cm lower, a neck above the shoulder line)
#: answers a mix of the two; ``NetworkConfig.midpoint_torso`` makes its output follow this
#: one definition (``docs/network.md`` §5c has the measured effect).
MIDPOINT_JOINTS: tuple[tuple[int, int, int], ...] = (
    (JOINT_NAMES.index("pelvis"), JOINT_NAMES.index("left_hip"), JOINT_NAMES.index("right_hip")),
    (JOINT_NAMES.index("thorax"), JOINT_NAMES.index("left_shoulder"),
     JOINT_NAMES.index("right_shoulder")),
    (JOINT_NAMES.index("spine"), JOINT_NAMES.index("pelvis"), JOINT_NAMES.index("thorax")),
)


def midpoint_matrix() -> list[list[float]]:
    """(J, J) linear map M with ``M @ joints`` = the joints with :data:`MIDPOINT_JOINTS`
    replaced by their mid-points (every other joint unchanged). Linear, so one matrix product
    serves numpy, PyTorch and an exported graph alike."""
    rows = [[1.0 if i == j else 0.0 for j in range(NUM_JOINTS)] for i in range(NUM_JOINTS)]
    for joint, a, b in MIDPOINT_JOINTS:  # later rows may read earlier ones (spine)
        rows[joint] = [0.5 * (x + y) for x, y in zip(rows[a], rows[b], strict=True)]
    return rows
