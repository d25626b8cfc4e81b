"""The lifter on exact 2D: a planar skeleton facing the camera is lifted exactly by a lifter
that answers depth 0, with the true root depth and with the fit to its own bone lengths; the
Human3.6M prior then misplaces it. And the breakdown the real held-out CLI writes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparse_pose_ros import skeleton
from sparse_pose_ros.evaluation import real_heldout as rh
from sparse_pose_ros.evaluation.lift_ceiling import lift_from_true_2d, triangulated_views
from sparse_pose_ros.model.checkpoint import save_checkpoint
from sparse_pose_ros.model.lifter import PoseLifter
from sparse_pose_ros.model.network import NetworkConfig, PoseNetwork
from sparse_pose_ros.training.train_lifter import attach

J = skeleton.NUM_JOINTS
K = np.array([[800.0, 0, 320], [0, 800, 240], [0, 0, 1]])


def _flat_lifter() -> PoseLifter:
    """A lifter that answers depth 0 for every joint (all weights zero)."""
    lifter = PoseLifter(8)
    with torch.no_grad():
        for p in lifter.parameters():
            p.zero_()
    return lifter.eval()


def _planar_people(n: int, depth: float) -> np.ndarray:
    """(n, J, 3) random skeletons with every joint at the same depth (camera metres)."""
    rng = np.random.default_rng(0)
    xy = rng.normal(0.0, 0.4, (n, J, 2)) + rng.normal(0.0, 0.3, (n, 1, 2))
    return np.concatenate([xy, np.full((n, J, 1), depth)], axis=-1)


def _bones(pose: np.ndarray) -> tuple[float, ...]:
    b = np.asarray(skeleton.BONES)
    return tuple(np.median(np.linalg.norm(pose[:, b[:, 1]] - pose[:, b[:, 0]], axis=-1), 0))


def test_exact_depth_and_own_bones_lift_exactly_and_h36m_bones_do_not() -> None:
    cam = _planar_people(1, 3.0)
    k = K[None]
    got = lift_from_true_2d(_flat_lifter(), _bones(cam), 1000.0, cam, k)
    assert got["frames"] == 1 and got["bone_lengths"] == "model"
    assert got["mpjpe_mm_true_root"] == pytest.approx(0.0, abs=1e-6)
    assert got["pa_mpjpe_mm"] == pytest.approx(0.0, abs=1e-3)
    assert got["mpjpe_mm_fitted_root"] == pytest.approx(0.0, abs=0.5)
    assert got["mpjpe_mm_fitted_root_h36m_bones"] > 10.0
    # without the model's bones the node fits Human3.6M's: both numbers are that fit
    plain = lift_from_true_2d(_flat_lifter(), (), 1000.0, cam, k)
    assert plain["mpjpe_mm_fitted_root"] == plain["mpjpe_mm_fitted_root_h36m_bones"]
    assert plain["bone_lengths"] == "Human3.6M means"
    with pytest.raises(ValueError, match="no triangulated"):
        lift_from_true_2d(_flat_lifter(), (), 1000.0, cam[:0], k[:0])


def test_triangulated_views_keeps_valid_complete_frames_with_their_view_k() -> None:
    cam = _planar_people(3 * 2, 3.0).reshape(3, 2, J, 3)
    cam[1, 0, 4] = np.nan  # one view of frame 1 lacks a joint
    ks = np.stack([K, K * [[2], [2], [1]]])
    tri = {"valid": np.array([True, True, False]), "joints_cam_m": cam, "K": ks}
    got, k = triangulated_views(tri)
    assert len(got) == 3  # frame 0's two views, frame 1's second; frame 2 is not valid
    np.testing.assert_allclose(got[2], cam[1, 1])
    np.testing.assert_allclose(k[[0, 1, 2]], ks[[0, 1, 1]])


def test_breakdown_reads_a_checkpoints_lifter_and_bones(tmp_path) -> None:
    cfg = NetworkConfig(input_size=64, width_mult=0.35, head_channels=16, gated=False)
    cam = _planar_people(2 * 2, 3.0).reshape(2, 2, J, 3)
    net = attach(PoseNetwork(cfg).eval(), _flat_lifter(), 8, midpoint_torso=True,
                 bone_lengths_mm=tuple(v * 1000 for v in _bones(cam.reshape(-1, J, 3))))
    path = tmp_path / "lifted.safetensors"
    save_checkpoint(path, net, {})

    class Source:
        triangulated = {"valid": np.ones(2, bool), "joints_cam_m": cam, "K": np.stack([K, K])}

    class NoTriangulation:
        triangulated = None

    got = rh.lift_breakdown(path, {"views": Source(), "stills": NoTriangulation()})
    assert set(got) == {"views"} and got["views"]["frames"] == 4
    assert got["views"]["mpjpe_mm_true_root"] == pytest.approx(0.0, abs=1e-6)
    save_checkpoint(tmp_path / "plain.safetensors", PoseNetwork(cfg), {})
    assert rh.lift_breakdown(tmp_path / "plain.safetensors", {"views": Source()}) is None
    assert rh.lift_breakdown(tmp_path / "model.onnx", {"views": Source()}) is None
