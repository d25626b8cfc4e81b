"""Metrics on hand-made cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from sparse_pose_ros import skeleton
from sparse_pose_ros.training import metrics


def _skeletons(n: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 300.0, size=(n, skeleton.NUM_JOINTS, 3)) + np.array([0, 0, 4000.0])


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def test_mpjpe_of_a_known_offset_of_one_joint() -> None:
    gt = _skeletons()
    pred = gt.copy()
    pred[:, 5] += np.array([30.0, 40.0, 0.0])  # 50 mm on one of 17 joints
    assert metrics.mpjpe(pred, gt) == pytest.approx(50.0 / skeleton.NUM_JOINTS)
    per_joint = metrics.joint_errors_3d(pred, gt).mean(axis=0)
    assert per_joint[5] == pytest.approx(50.0)
    assert np.delete(per_joint, 5) == pytest.approx(0.0)


def test_mpjpe_ignores_a_global_translation_because_it_is_root_relative() -> None:
    gt = _skeletons()
    assert metrics.mpjpe(gt + np.array([100.0, -50.0, 700.0]), gt) == pytest.approx(0.0, abs=1e-9)


def test_mpjpe_of_an_offset_of_all_but_the_root() -> None:
    gt = _skeletons()
    pred = gt.copy()
    pred[:, 1:] += np.array([0.0, 0.0, 100.0])
    expected = 100.0 * (skeleton.NUM_JOINTS - 1) / skeleton.NUM_JOINTS
    assert metrics.mpjpe(pred, gt) == pytest.approx(expected)


def test_pa_mpjpe_of_a_rotated_scaled_translated_copy_is_zero() -> None:
    gt = _skeletons()
    rot = _rotation(np.array([0.3, 1.0, -0.2]), 0.9)
    pred = 1.7 * (gt @ rot.T) + np.array([50.0, 20.0, -300.0])
    assert metrics.mpjpe(pred, gt) > 100.0
    assert metrics.pa_mpjpe(pred, gt) == pytest.approx(0.0, abs=1e-6)


def test_pa_mpjpe_does_not_undo_a_mirror_image() -> None:
    gt = _skeletons()
    mirrored = gt * np.array([-1.0, 1.0, 1.0])
    assert metrics.pa_mpjpe(mirrored, gt) > 10.0


def test_pa_mpjpe_never_exceeds_mpjpe_for_noisy_predictions() -> None:
    gt = _skeletons(n=16)
    pred = gt + np.random.default_rng(1).normal(0, 40.0, gt.shape)
    assert 0.0 < metrics.pa_mpjpe(pred, gt) <= metrics.mpjpe(pred, gt)


def test_pck_counts_joints_within_alpha_times_the_box() -> None:
    gt = np.zeros((1, 4, 2))
    gt[0] = [[0, 0], [100, 0], [0, 200], [100, 200]]  # box 100 x 200 -> size 200, threshold 20
    pred = gt.copy()
    pred[0, 1] += [19.0, 0.0]  # inside
    pred[0, 2] += [0.0, 21.0]  # outside
    pred[0, 3] += [15.0, 15.0]  # 21.2 px: outside
    overall, per_joint = metrics.pck_2d(pred, gt, alpha=0.1)
    assert overall == pytest.approx(0.5)
    assert per_joint.tolist() == [1.0, 1.0, 0.0, 0.0]


def test_pck_ignores_invisible_joints_and_takes_an_explicit_box() -> None:
    gt = np.zeros((1, 3, 2))
    pred = gt + np.array([[[5.0, 0.0], [50.0, 0.0], [500.0, 0.0]]])
    vis = np.array([[True, True, False]])
    overall, per_joint = metrics.pck_2d(pred, gt, alpha=0.1, box=np.array([100.0]), visible=vis)
    assert overall == pytest.approx(0.5)
    assert np.isnan(per_joint[2])


def test_mask_stats_recall_precision_density() -> None:
    sil = np.zeros((1, 8, 8), np.uint8)
    sil[0, 0:4, 0:4] = 1  # 16 person pixels in the top-left quadrant
    block = np.zeros((1, 4, 4), np.uint8)  # one cell = a 2x2 patch of the silhouette
    block[0, 0:2, 0:1] = 1  # covers columns 0-1 of rows 0-3: 8 of the 16 person pixels
    block[0, 3, 3] = 1  # 4 pixels of background
    stats = metrics.MaskStats()
    stats.update(block, sil)
    assert stats.recall == pytest.approx(0.5)
    assert stats.precision == pytest.approx(8 / 12)
    assert stats.density == pytest.approx(3 / 16)


def test_accumulator_summary_names_joints() -> None:
    gt = _skeletons(n=3)
    acc = metrics.PoseAccumulator()
    acc.update(gt, gt, gt[..., :2], gt[..., :2])
    out = acc.summary()
    assert out["samples"] == 3
    assert out["mpjpe_mm"] == pytest.approx(0.0)
    assert out["pck@0.1"] == pytest.approx(1.0)
    assert set(out["per_joint_mpjpe_mm"]) == set(skeleton.JOINT_NAMES)


def test_accumulator_reports_the_spread_of_per_frame_errors() -> None:
    """Nine exact frames and one 100 mm off at every non-root joint: the mean moves by a
    tenth of it, the median not at all, the 90th percentile part of the way."""
    gt = _skeletons(n=10)
    pred = gt.copy()
    pred[9, 1:] += np.array([100.0, 0.0, 0.0])
    acc = metrics.PoseAccumulator()
    acc.update(pred, gt, gt[..., :2], gt[..., :2])
    out = acc.summary()
    off = 100.0 * (skeleton.NUM_JOINTS - 1) / skeleton.NUM_JOINTS  # the root's error is 0
    assert out["mpjpe_mm"] == pytest.approx(off / 10)
    assert out["mpjpe_frame_median_mm"] == pytest.approx(0.0)
    assert out["mpjpe_frame_p90_mm"] == pytest.approx(np.percentile([0.0] * 9 + [off], 90))


def test_shape_mismatch_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        metrics.mpjpe(np.zeros((2, 17, 3)), np.zeros((2, 16, 3)))
    with pytest.raises(ValueError):
        metrics.pck_2d(np.zeros((2, 17, 2)), np.zeros((2, 17, 2)), alpha=0.0)


def test_mean_pose_baseline_is_zero_when_every_pose_is_the_mean() -> None:
    pose = _skeletons(n=1)
    train = np.repeat(pose, 5, axis=0) + np.arange(5)[:, None, None] * 10.0  # shifted copies
    test = np.repeat(pose, 3, axis=0)
    out = metrics.mean_pose_baseline(train, test)
    assert out["mpjpe_mm"] == pytest.approx(0.0, abs=1e-9)
    other = metrics.mean_pose_baseline(train, _skeletons(n=3, seed=5))
    assert other["mpjpe_mm"] > 100.0


def test_mirror_tolerant_mpjpe_forgives_exactly_the_front_back_mirror() -> None:
    gt = _skeletons(n=3)
    mirrored = metrics.mirrored_pose(gt) + gt[:, :1]  # back in the camera frame
    assert metrics.mpjpe(mirrored, gt) > 50.0
    assert metrics.mirror_tolerant_mpjpe(mirrored, gt) == pytest.approx(0.0, abs=1e-9)
    assert metrics.mirror_tolerant_mpjpe(gt, gt) == pytest.approx(0.0, abs=1e-9)
    noisy = gt + np.random.default_rng(1).normal(0.0, 20.0, gt.shape)
    assert metrics.mirror_tolerant_mpjpe(noisy, gt) <= metrics.mpjpe(noisy, gt) + 1e-9


def test_left_right_separation_is_one_for_truth_and_zero_for_midpoints() -> None:
    gt = _skeletons(n=3)[..., :2]
    assert metrics.left_right_separation_ratio(gt, gt) == pytest.approx(1.0)
    collapsed = gt.copy()
    for a, b in skeleton.FLIP_PAIRS:
        mid = 0.5 * (gt[:, a] + gt[:, b])
        collapsed[:, a] = mid
        collapsed[:, b] = mid
    assert metrics.left_right_separation_ratio(collapsed, gt) == pytest.approx(0.0)
    acc = metrics.PoseAccumulator()
    acc.update(_skeletons(n=3), _skeletons(n=3), collapsed, gt)
    assert acc.summary()["diag_left_right_separation"] == pytest.approx(0.0)


def test_midpoint_labels_follow_the_networks_torso_definition() -> None:
    import torch

    from sparse_pose_ros import skeleton
    from sparse_pose_ros.training.evaluation import midpoint_labels

    idx = {n: i for i, n in enumerate(skeleton.JOINT_NAMES)}
    torch.manual_seed(0)
    cam, px = torch.randn(2, skeleton.NUM_JOINTS, 3), torch.randn(2, skeleton.NUM_JOINTS, 2)
    vis = torch.ones(2, skeleton.NUM_JOINTS, dtype=torch.bool)
    vis[0, idx["left_shoulder"]] = False
    c, p, v = midpoint_labels(cam, px, vis)
    torch.testing.assert_close(c[:, idx["pelvis"]],
                               (cam[:, idx["left_hip"]] + cam[:, idx["right_hip"]]) / 2)
    torch.testing.assert_close(p[:, idx["spine"]], (p[:, idx["pelvis"]] + p[:, idx["thorax"]]) / 2)
    torch.testing.assert_close(c[:, idx["left_wrist"]], cam[:, idx["left_wrist"]])
    # a mid-point is seen when both its ends are: the thorax and the spine above it are not
    assert not v[0, idx["thorax"]] and not v[0, idx["spine"]] and v[0, idx["pelvis"]]
    assert v[1].all() and vis[0, idx["thorax"]]  # the input is not modified
