"""Sampled cameras frame the person as requested."""

from __future__ import annotations

import numpy as np

from sparse_pose_ros.data import poses
from sparse_pose_ros.data.body import Body
from sparse_pose_ros.data.camera import CameraRanges, project, sample_camera


def test_person_size_and_placement():
    body = Body("convex", lod=2)
    rng = np.random.default_rng(5)
    ranges = CameraRanges(truncation_prob=0.0)
    met = 0
    for i in range(40):
        posed = body.pose(poses.sample_pose(rng, poses.TRAIN_FAMILIES[i % 7]).body_pose)
        verts = posed.vertices - posed.joints[0]
        cam = sample_camera(rng, verts, 256, 256, ranges)
        uv = project(cam.to_camera(verts), cam.K)
        assert (uv >= -1.0).all() and (uv <= 256.0).all()  # fully in frame
        height, width = np.ptp(uv[:, 1]) / 256, np.ptp(uv[:, 0]) / 256
        assert ranges.height_fraction[0] - 0.03 < height < ranges.height_fraction[1] + 0.03
        # The requested height is met unless the width cap (arms spread) or the minimum camera
        # distance (wide lens, large request) made the person smaller.
        met += abs(height - cam.height_fraction) < 0.03
        assert height < cam.height_fraction + 0.03 or width > 0.9
        # R is a rotation; the camera looks at the person (positive depth).
        assert np.allclose(cam.R @ cam.R.T, np.eye(3), atol=1e-9)
        assert (cam.to_camera(verts)[:, 2] > 0.5).all()
    assert met >= 30
