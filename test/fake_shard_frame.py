"""A rendered frame as ``data.shards.write_shard`` stores it, with only the fields tests vary,
shared by the tests that write tiny synthetic shards (lifter training, real-frames benchmark)."""

from __future__ import annotations

import numpy as np

from sparse_pose_ros import skeleton


class FakeShardFrame:
    """Image, person mask, 2D / 3D joints and K as given; every joint visible and in frame, the
    renderer's body/outfit fields zero, ``mask_fraction`` in the metadata."""

    def __init__(self, image: np.ndarray, mask: np.ndarray, joints_2d: np.ndarray,
                 joints_3d: np.ndarray, K: np.ndarray, index: int,
                 mask_fraction: float = 0.1) -> None:
        j = skeleton.NUM_JOINTS
        self.image, self.mask, self.K = image, mask, K
        self.joints_2d, self.joints_3d = joints_2d, joints_3d
        self.visible = np.ones(j, np.uint8)
        self.in_frame = np.ones(j, np.uint8)
        self.bbox = np.zeros(4, np.float32)
        self.body_pose = np.zeros((21, 3), np.float32)
        self.betas = np.zeros(10, np.float32)
        self.meta = {"family": 0, "style": 0, "subject": 0, "occluded": 0, "elevation_deg": 0.0,
                     "height_fraction": 0.5, "mask_fraction": mask_fraction, "index": index}
