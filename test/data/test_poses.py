"""The pose sampler stays inside its anatomical joint limits and covers its families."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from sparse_pose_ros.data import poses


@pytest.mark.parametrize("family", poses.ALL_FAMILIES)
def test_samples_respect_joint_limits(family):
    rng = np.random.default_rng(11)
    lo, hi = poses.JOINT_LIMITS_DEG[..., 0], poses.JOINT_LIMITS_DEG[..., 1]
    for _ in range(40):
        s = poses.sample_pose(rng, family)
        assert s.body_pose.shape == (21, 3) and s.hand_pose.shape == (30, 3)
        assert (s.euler_deg >= lo - 1e-9).all() and (s.euler_deg <= hi + 1e-9).all()
        # body_pose really is the rotation of those limited angles.
        built = Rotation.from_rotvec(s.body_pose)
        limited = Rotation.from_euler("xyz", s.euler_deg, degrees=True)
        assert np.allclose((built.inv() * limited).magnitude(), 0.0, atol=1e-6)


def test_limits_are_mirrored_left_right():
    L = poses.JOINT_LIMITS_DEG[poses.ROW["L_Shoulder"]]
    R = poses.JOINT_LIMITS_DEG[poses.ROW["R_Shoulder"]]
    np.testing.assert_array_equal(R[0], L[0])
    np.testing.assert_array_equal(R[1:], -L[1:, ::-1])


def test_families_differ_where_they_should():
    rng = np.random.default_rng(0)
    knee = poses.ROW["L_Knee"]
    crouch = [poses.sample_pose(rng, "crouching").euler_deg[knee, 0] for _ in range(30)]
    stand = [poses.sample_pose(rng, "standing").euler_deg[knee, 0] for _ in range(30)]
    assert np.mean(crouch) > np.mean(stand) + 40.0
    shoulder = poses.ROW["L_Shoulder"]
    up = [poses.sample_pose(rng, "arms_up").euler_deg[shoulder, 2] for _ in range(30)]
    assert np.mean(up) > 0.0  # raised above the T-pose on average (+z raises the left arm)


def test_unknown_family_is_rejected():
    with pytest.raises(ValueError, match="unknown pose family"):
        poses.sample_pose(np.random.default_rng(0), "cartwheel")
