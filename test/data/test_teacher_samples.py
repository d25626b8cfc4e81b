"""Geometry of the training samples: joints follow the pixels through crop and mirror."""

from __future__ import annotations

import numpy as np

from sparse_pose_ros import skeleton
from sparse_pose_ros.data.teacher_samples import TeacherSample, crop_sample, mirror


def _dot_image() -> tuple[np.ndarray, np.ndarray]:
    """A 200×300 image with one bright pixel per joint."""
    rng = np.random.default_rng(0)
    img = np.zeros((200, 300, 3), np.uint8)
    joints = np.stack([rng.integers(60, 240, skeleton.NUM_JOINTS),
                       rng.integers(40, 160, skeleton.NUM_JOINTS)], 1).astype(np.float64)
    for x, y in joints.astype(int):
        img[y, x] = 255
    return img, joints


def test_crop_maps_joints_onto_their_pixels() -> None:
    img, joints = _dot_image()
    # A window of side 100 at scale 2: every source pixel becomes a 2×2 block whose centre is
    # where the joint must land (pixel centres at integers).
    s = crop_sample(img, np.ones((200, 300), np.float32), joints, np.ones(17), np.zeros(17), 1.0,
                    centre=np.array([150.0, 100.0]), side=100.0, size=200, kind="t", origin="o")
    inside = s.weight > 0
    assert inside.any() and not inside.all()  # the window cuts some joints off
    expect = (joints - [150.0, 100.0]) * 2.0 + 100.0 - 0.5
    assert np.allclose(s.joints_px, expect)
    for x, y in s.joints_px[inside]:
        patch = s.image[int(np.floor(y)) - 1:int(np.ceil(y)) + 2,
                        int(np.floor(x)) - 1:int(np.ceil(x)) + 2]
        assert patch.max() > 100  # the bright pixel is there
    assert s.person.shape == (200, 200) and np.allclose(s.person, 1.0)


def test_mirror_is_an_involution_that_swaps_sides() -> None:
    img, joints = _dot_image()
    s = TeacherSample(img[:, :200].copy(), joints.astype(np.float32) * 0.5,
                      np.linspace(0, 1, 17).astype(np.float32),
                      np.arange(17, dtype=np.float32), 1.0,
                      np.zeros((200, 200), np.float32), "t", "o")
    m = mirror(s)
    names = skeleton.JOINT_NAMES
    left, right = names.index("left_wrist"), names.index("right_wrist")
    assert np.isclose(m.joints_px[left, 0], 199 - s.joints_px[right, 0])
    assert m.depth_mm[left] == s.depth_mm[right] and m.weight[left] == s.weight[right]
    back = mirror(m)
    assert np.allclose(back.joints_px, s.joints_px) and np.array_equal(back.image, s.image)
