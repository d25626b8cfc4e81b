"""COCO-17 (MoveNet) -> H36M-17: direct joints, agreement with the BlazePose rules, scores."""

from __future__ import annotations

import numpy as np
import pytest

from sparse_pose_ros.evaluation.movenet_agreement import COCO_TO_BLAZEPOSE
from sparse_pose_ros.model.movenet_head import COCO_KEYPOINTS
from sparse_pose_ros.skeleton import JOINT_NAMES
from sparse_pose_ros.teachers import blazepose_map
from sparse_pose_ros.teachers.movenet_map import (
    APPROXIMATIONS,
    BLAZEPOSE_OF_COCO,
    DIRECT,
    HEAD_TOP_FACE_RATIO,
    HEAD_TOP_NECK_RATIO,
    map_to_h36m,
)

C = {n: i for i, n in enumerate(COCO_KEYPOINTS)}
J = {n: i for i, n in enumerate(JOINT_NAMES)}


def test_every_joint_has_a_rule_and_twelve_are_keypoints() -> None:
    assert set(APPROXIMATIONS) == set(JOINT_NAMES)
    assert len(DIRECT) == 12
    kp = np.random.default_rng(0).uniform(0, 500, (17, 2))
    joints, _ = map_to_h36m(kp)
    for name, k in DIRECT.items():
        assert COCO_KEYPOINTS[k] == name
        np.testing.assert_array_equal(joints[J[name]], kp[k])
    np.testing.assert_array_equal(joints[J["neck_nose"]], kp[C["nose"]])


def test_blazepose_landmark_of_each_keypoint() -> None:
    assert BLAZEPOSE_OF_COCO == COCO_TO_BLAZEPOSE  # the agreement evaluation's own list
    assert all(blazepose_map.BLAZEPOSE_NAMES[b] == n
               for b, n in zip(BLAZEPOSE_OF_COCO, COCO_KEYPOINTS, strict=True))


def test_same_as_blazepose_rules_except_head_top() -> None:
    """BlazePose's landmarks at the COCO keypoints give the same 16 joints as blazepose_map."""
    rng = np.random.default_rng(1)
    lm = rng.uniform(0, 800, (33, 2))
    vis = rng.uniform(0, 1, 33)
    bp_joints, bp_vis = blazepose_map.map_to_h36m(lm, vis)
    joints, scores = map_to_h36m(lm[list(COCO_TO_BLAZEPOSE)], vis[list(COCO_TO_BLAZEPOSE)])
    others = [J[n] for n in JOINT_NAMES if n != "head_top"]
    np.testing.assert_allclose(joints[others], bp_joints[others], atol=1e-9)
    np.testing.assert_allclose(scores[others], bp_vis[others], atol=1e-12)


def test_head_top_on_an_upright_face_and_its_score() -> None:
    """Image coordinates, y down: a frontal upright head above the shoulders."""
    kp = np.zeros((17, 2))
    kp[C["nose"]] = (100, 100)
    kp[C["left_eye"]], kp[C["right_eye"]] = (110, 90), (90, 90)
    kp[C["left_ear"]], kp[C["right_ear"]] = (120, 95), (80, 95)
    kp[C["left_shoulder"]], kp[C["right_shoulder"]] = (140, 145), (60, 145)
    scores = np.full(17, 0.9)
    scores[C["right_ear"]] = 0.3
    joints, sc = map_to_h36m(kp, scores)
    # mid-ears (100, 95) + 1.3 * (0, -10) + 0.3 * (0, -50): straight up, above the eyes
    expected_y = 95 - 10 * HEAD_TOP_FACE_RATIO - 50 * HEAD_TOP_NECK_RATIO
    np.testing.assert_allclose(joints[J["head_top"]], (100, expected_y))
    assert joints[J["head_top"], 1] < kp[C["left_eye"], 1]
    assert sc[J["head_top"]] == pytest.approx(0.3)  # the least certain input
    assert sc[J["pelvis"]] == pytest.approx(0.9)


def test_batched_and_nan_rows() -> None:
    rng = np.random.default_rng(2)
    kp = rng.uniform(0, 300, (4, 17, 2))
    kp[2] = np.nan  # a frame without a person
    scores = rng.uniform(0, 1, (4, 17))
    joints, sc = map_to_h36m(kp, scores)
    assert joints.shape == (4, 17, 2) and sc.shape == (4, 17)
    for i in (0, 1, 3):
        one, one_sc = map_to_h36m(kp[i], scores[i])
        np.testing.assert_allclose(joints[i], one)
        np.testing.assert_allclose(sc[i], one_sc)
    assert np.isnan(joints[2]).all()


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="keypoints"):
        map_to_h36m(np.zeros((33, 2)))
    with pytest.raises(ValueError, match="scores"):
        map_to_h36m(np.zeros((17, 2)), np.zeros(16))
