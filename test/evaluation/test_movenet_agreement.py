"""The MoveNet-vs-BlazePose agreement protocol: crops, keypoint mapping and PCK."""

from __future__ import annotations

import numpy as np

from sparse_pose_ros.evaluation.movenet_agreement import COCO_TO_BLAZEPOSE, pck_table, square_crop
from sparse_pose_ros.model.movenet_head import COCO_KEYPOINTS


def test_coco_to_blazepose_is_the_same_joint_order():
    # BlazePose: 0 nose, 2/5 eyes, 7/8 ears, 11-16 arms, 23-28 legs; left before right.
    assert len(COCO_TO_BLAZEPOSE) == len(COCO_KEYPOINTS) == 17
    assert COCO_TO_BLAZEPOSE[COCO_KEYPOINTS.index("left_wrist")] == 15
    assert COCO_TO_BLAZEPOSE[COCO_KEYPOINTS.index("right_ankle")] == 28


def test_square_crop_centres_the_visible_landmarks_and_zero_pads():
    img = np.full((100, 200, 3), 255, np.uint8)
    lms = np.zeros((33, 4))
    lms[:, 3] = 0.9
    lms[:, 0] = np.linspace(0.0, 0.1, 33)  # x 0..20 px: the person is at the left border
    lms[:, 1] = np.linspace(0.2, 0.6, 33)  # y 20..60 px
    pixels, (x0, y0), side = square_crop(img, lms, 1.5, 64)
    assert side == 60 and pixels.shape == (64, 64, 3)
    assert x0 == -20 and y0 == 10
    assert pixels[:, :16].max() == 0 and pixels[:, 40:].min() == 255  # zero pad left of x=0
    lms[:, 3] = 0.1
    assert square_crop(img, lms, 1.5, 64) is None  # nothing visible: no crop


def test_pck_counts_only_visible_keypoints_relative_to_the_reference_box():
    ref = np.zeros((2, 17, 2))
    ref[:, :, 0] = np.arange(17) * 10.0  # box side 160 px
    vis = np.ones((2, 17))
    vis[1, 5:] = 0.0  # second crop: only 5 visible keypoints (box 40 px)
    pred = ref.copy()
    pred[0, 0, 1] += 15.0  # 15/160 = 0.094: within 0.1
    pred[0, 1, 1] += 20.0  # 0.125: outside 0.1, within 0.2
    pred[1, 0, 1] += 5.0  # 5/40 = 0.125
    pred[1, 10, 1] += 1000.0  # not visible: not counted
    t = pck_table(pred, ref, vis)
    assert t["keypoints_counted"] == 17 + 5
    assert t["pck@0.1"] == round((22 - 2) / 22, 4)
    assert t["pck@0.2"] == 1.0
    assert t["per_keypoint_pck@0.1"]["nose"] == 0.5
