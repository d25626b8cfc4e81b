"""BlazePose-33 -> H36M-17 mapping on hand-made landmark sets."""

from __future__ import annotations

import numpy as np
import pytest

from sparse_pose_ros.skeleton import JOINT_NAMES, NUM_JOINTS
from sparse_pose_ros.teachers.blazepose_map import (
    APPROXIMATIONS,
    BLAZEPOSE_NAMES,
    HEAD_TOP_EYE_MOUTH_RATIO,
    NUM_LANDMARKS,
    RELIABLE_JOINTS,
    map_to_h36m,
)

BP = {n: i for i, n in enumerate(BLAZEPOSE_NAMES)}
J = {n: i for i, n in enumerate(JOINT_NAMES)}


def _random_landmarks(dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (NUM_LANDMARKS, dim))


def test_direct_joints_copy_their_landmark() -> None:
    lm = _random_landmarks(2)
    joints, _ = map_to_h36m(lm)
    for side in ("left", "right"):
        for part in ("hip", "knee", "ankle", "shoulder", "elbow", "wrist"):
            name = f"{side}_{part}"
            np.testing.assert_array_equal(joints[J[name]], lm[BP[name]])


def test_torso_and_head_rules() -> None:
    lm = _random_landmarks(3, seed=1)
    joints, _ = map_to_h36m(lm)
    pelvis = (lm[BP["left_hip"]] + lm[BP["right_hip"]]) / 2
    thorax = (lm[BP["left_shoulder"]] + lm[BP["right_shoulder"]]) / 2
    np.testing.assert_allclose(joints[J["pelvis"]], pelvis)
    np.testing.assert_allclose(joints[J["thorax"]], thorax)
    np.testing.assert_allclose(joints[J["spine"]], (pelvis + thorax) / 2)
    np.testing.assert_array_equal(joints[J["neck_nose"]], lm[BP["nose"]])


def test_head_top_is_above_an_upright_face() -> None:
    """Upright face in image coordinates (y down): crown = ears - 1.6 * eye-mouth distance."""
    lm = np.zeros((NUM_LANDMARKS, 2))
    lm[BP["left_ear"]], lm[BP["right_ear"]] = (110, 100), (90, 100)
    lm[BP["left_eye"]], lm[BP["right_eye"]] = (105, 100), (95, 100)
    lm[BP["mouth_left"]], lm[BP["mouth_right"]] = (103, 110), (97, 110)
    joints, _ = map_to_h36m(lm)
    np.testing.assert_allclose(joints[J["head_top"]], (100, 100 - HEAD_TOP_EYE_MOUTH_RATIO * 10))


def test_visibility_is_min_of_used_landmarks() -> None:
    vis = np.full(NUM_LANDMARKS, 0.9)
    vis[BP["right_hip"]] = 0.2
    vis[BP["mouth_left"]] = 0.4
    _, jv = map_to_h36m(_random_landmarks(2), vis)
    assert jv[J["right_hip"]] == pytest.approx(0.2)
    assert jv[J["pelvis"]] == pytest.approx(0.2)
    assert jv[J["spine"]] == pytest.approx(0.2)
    assert jv[J["head_top"]] == pytest.approx(0.4)
    assert jv[J["left_hip"]] == pytest.approx(0.9)
    assert jv[J["thorax"]] == pytest.approx(0.9)


@pytest.mark.parametrize(
    "points, vis",
    [
        (np.zeros((17, 2)), None),
        (np.zeros((33,)), None),
        (np.full((33, 2), np.nan), None),
        (np.zeros((33, 2)), np.ones(17)),
    ],
)
def test_bad_input_raises_value_error(points: np.ndarray, vis: np.ndarray | None) -> None:
    with pytest.raises(ValueError):
        map_to_h36m(points, vis)


def test_every_joint_has_a_documented_rule() -> None:
    assert set(APPROXIMATIONS) == set(JOINT_NAMES)
    assert len(RELIABLE_JOINTS) == NUM_JOINTS - 2
    assert "head_top" not in RELIABLE_JOINTS and "spine" not in RELIABLE_JOINTS
