"""PoseEstimator around the real torch backend, tiny random checkpoint (no trained weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparse_pose_ros import skeleton
from sparse_pose_ros.backends import create_backend
from sparse_pose_ros.model.checkpoint import save_checkpoint
from sparse_pose_ros.model.network import NetworkConfig, PoseNetwork
from sparse_pose_ros.pipeline.draw import draw_skeleton, mask_overlay
from sparse_pose_ros.pipeline.estimator import PoseEstimator
from sparse_pose_ros.pipeline.lift import Intrinsics
from sparse_pose_ros.pipeline.stats import RollingStats


def _checkpoint(tmp_path, gated: bool, size: int = 64):
    torch.manual_seed(0)
    net = PoseNetwork(NetworkConfig(input_size=size, width_mult=0.35, head_channels=16,
                                    depth_bins=8, gated=gated))
    path = tmp_path / f"tiny_{gated}_{size}.safetensors"
    save_checkpoint(path, net, {"untrained": True})
    return path


@pytest.fixture(scope="module")
def estimator(tmp_path_factory):
    path = _checkpoint(tmp_path_factory.mktemp("m"), gated=True)
    return PoseEstimator(create_backend("torch", path, "cpu"), confidence_threshold=0.0)


def test_estimate_shapes_and_frames(estimator):
    rgb = np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    r = estimator.estimate(rgb)
    j = skeleton.NUM_JOINTS
    assert r.joints_px.shape == (j, 2) and r.joints_m.shape == (j, 3)
    assert r.confidence.shape == (j,) and r.mask.shape == (60, 90) and r.mask.dtype == np.uint8
    assert r.person_found  # threshold 0
    assert r.intrinsics_source == "nominal_fov"
    assert np.all(r.joints_m[:, 2] > 0)
    assert set(r.timings_ms) == {"preprocess", "inference", "postprocess", "total"}
    assert 0.0 < r.density <= 1.05
    # The 3D joints project back onto the 2D joints (the lift only chooses depth along rays).
    np.testing.assert_allclose(Intrinsics.nominal(90, 60).project(r.joints_m), r.joints_px,
                               atol=1e-2)


def test_confidence_threshold_decides_person_found(estimator):
    rgb = np.zeros((32, 32, 3), np.uint8)
    estimator.confidence_threshold = 1.0
    try:
        assert not estimator.estimate(rgb).person_found
    finally:
        estimator.confidence_threshold = 0.0
    with pytest.raises(ValueError):
        estimator.confidence_threshold = 1.5


def test_intrinsics_must_match_the_image(estimator):
    with pytest.raises(ValueError, match="intrinsics are for"):
        estimator.estimate(np.zeros((32, 32, 3), np.uint8), Intrinsics.nominal(64, 48))


def test_dense_model_mask_is_everywhere(tmp_path):
    est = PoseEstimator(create_backend("torch", _checkpoint(tmp_path, gated=False), "cpu"))
    r = est.estimate(np.zeros((30, 50, 3), np.uint8))
    assert r.mask.shape == (30, 50) and (r.mask == 255).all()


def test_drawing_and_overlay():
    rgb = np.zeros((50, 50, 3), np.uint8)
    joints = np.stack([np.linspace(5, 45, 17), np.linspace(5, 45, 17)], 1)
    drawn = draw_skeleton(rgb, joints)
    assert drawn.shape == rgb.shape and drawn.any() and not rgb.any()
    hidden = draw_skeleton(rgb, joints, np.zeros(17), min_confidence=0.5)
    assert not hidden.any()
    mask = np.zeros((50, 50), np.uint8)
    mask[10:20, 10:20] = 255
    over = mask_overlay(np.full((50, 50, 3), 100, np.uint8), mask)
    assert over[15, 15, 0] > over[40, 40, 0]
    with pytest.raises(ValueError):
        mask_overlay(rgb, mask[:10])


def test_rolling_stats():
    s = RollingStats(window=4)
    assert s.summary()["fps"] == 0.0
    for i in range(10):
        s.add(i * 0.1, float(i), 0.5)
    out = s.summary()
    assert out["latency_p50_ms"] == pytest.approx(7.5)  # window holds 6..9
    assert out["fps"] == pytest.approx(10.0)
    assert out["mean_density"] == 0.5
    assert not any(k.endswith("_p50_ms") and k != "latency_p50_ms" for k in out)
    for i in range(4):  # stages: a p50 per name every sample in the window has
        s.add(1.0 + i * 0.1, 10.0, 0.5, stages={"network": float(i), "queue": 1.0,
                                               **({"odd": 1.0} if i % 2 else {})})
    out = s.summary()
    assert out["network_p50_ms"] == pytest.approx(1.5) and out["queue_p50_ms"] == 1.0
    assert "odd_p50_ms" not in out
    with pytest.raises(ValueError):
        RollingStats(window=1)


def test_tracking_crops_around_the_previous_skeleton(tmp_path):
    """With ``track_person`` the frame after a found person is read through a window around
    that skeleton; the joints still come back in image pixels and project through K; a frame
    that finds nobody sends the next one back to the whole image."""
    path = _checkpoint(tmp_path, gated=True)
    est = PoseEstimator(create_backend("torch", path, "cpu"), confidence_threshold=0.0,
                        track_person=True)  # fmt: skip
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    first = est.estimate(rgb)
    assert first.roi is None and first.person_found
    second = est.estimate(rgb)
    lo, hi = first.joints_px.min(axis=0), first.joints_px.max(axis=0)
    assert max(hi - lo) * 1.5 < 320  # the untrained model's skeleton is small: a real zoom
    x0, y0, side = second.roi
    assert side == max(32, round(max(hi - lo) * 1.5))
    assert abs(x0 + side / 2 - (lo[0] + hi[0]) / 2) <= 1
    # the mask is zero outside the window the network saw, set inside it
    outside = np.ones((240, 320), bool)
    outside[max(0, y0) : y0 + side, max(0, x0) : x0 + side] = False
    assert (second.mask[outside] == 0).all() and second.mask[~outside].max() > 0
    np.testing.assert_allclose(Intrinsics.nominal(320, 240).project(second.joints_m),
                               second.joints_px, atol=1e-2)  # fmt: skip
    est.confidence_threshold = 1.0  # nobody found ...
    assert not est.estimate(rgb).person_found
    est.confidence_threshold = 0.0
    assert est.estimate(rgb).roi is None  # ... so the next frame is read whole
    est.estimate(rgb)
    est.reset_tracking()
    assert est.estimate(rgb).roi is None
    # a frame of another size never uses the old window
    assert est.estimate(rng.integers(0, 256, (100, 120, 3), dtype=np.uint8)).roi is None


def test_region_from_the_previous_pose_drives_the_masks(tmp_path):
    """After a found person the gated blocks execute that person's region in the next input
    (their joint box, grown, in stride-16 cells); a frame that finds nobody hands the decision
    back to the masks; dense backends and ``region_from_pose=False`` never use one."""
    from sparse_pose_ros.pipeline.preprocess import letterbox
    from sparse_pose_ros.pipeline.roi import region_cells

    path = _checkpoint(tmp_path, gated=True, size=256)
    backend = create_backend("torch", path, "cpu")
    est = PoseEstimator(backend, confidence_threshold=0.0)
    rgb = np.random.default_rng(2).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    first = est.estimate(rgb)
    assert not first.region_from_pose and first.region_executed
    assert backend._region is not None and bool(backend._region.all())  # cold frame: dense
    second = est.estimate(rgb)
    assert second.region_from_pose and second.region_executed
    _, box = letterbox(rgb, 256)
    cells = region_cells(first.joints_px, box)
    assert cells is not None and 0 < cells.mean() < 1
    # every gated block ran exactly those cells
    assert backend._region is not None
    assert np.array_equal(backend._region[0, 0].numpy(), cells)
    est.confidence_threshold = 1.0
    est.estimate(rgb)  # finds nobody ...
    est.confidence_threshold = 0.0
    third = est.estimate(rgb)
    assert not third.region_from_pose and bool(backend._region.all())  # ... dense again
    own = PoseEstimator(backend, confidence_threshold=0.0, dense_until_found=False)
    cold = own.estimate(rgb)
    assert not cold.region_from_pose and not cold.region_executed
    assert backend._region is None  # without dense_until_found the masks decide cold frames
    off = PoseEstimator(create_backend("torch", path, "cpu"), confidence_threshold=0.0,
                        region_from_pose=False)
    off.estimate(rgb)
    masks_decide = off.estimate(rgb)
    assert not masks_decide.region_from_pose and not masks_decide.region_executed
    dense = PoseEstimator(create_backend("torch", _checkpoint(tmp_path, gated=False), "cpu"),
                          confidence_threshold=0.0)
    dense.estimate(rgb)
    plain = dense.estimate(rgb)
    assert not plain.region_from_pose and not plain.region_executed  # nothing to execute


def test_region_cells_cover_the_grown_joint_box():
    from sparse_pose_ros.model.locator import cells_from_box
    from sparse_pose_ros.pipeline.preprocess import Letterbox
    from sparse_pose_ros.pipeline.roi import region_cells

    box = Letterbox(scale=1.0, pad_x=0.0, pad_y=0.0, input_size=256, image_width=256,
                    image_height=256)
    joints = np.array([[100.0, 60.0], [120.0, 180.0]])
    cells = region_cells(joints, box, expand=1.0, margin=0)
    assert cells is not None
    rows, cols = np.nonzero(cells)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (3, 11, 6, 7)
    grown = region_cells(joints, box, expand=1.3, margin=1)
    assert grown.sum() > cells.sum() and (grown >= cells).all()
    assert region_cells(joints + 1000, box) is None  # outside the input
    assert region_cells(np.full((2, 2), np.nan), box) is None
    assert cells_from_box(None, 64).shape == (4, 4)


def test_region_size_follows_the_estimator_settings(tmp_path):
    """``region_expand`` / ``region_margin`` shape the region handed to the backend (the
    accuracy-vs-MACs knob of the sparse model) and are checked against their ranges."""
    from sparse_pose_ros.pipeline.preprocess import letterbox
    from sparse_pose_ros.pipeline.roi import region_cells

    path = _checkpoint(tmp_path, gated=True, size=256)
    backend = create_backend("torch", path, "cpu")
    rgb = np.random.default_rng(4).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    _, box = letterbox(rgb, 256)
    seen = []
    for expand, margin in ((1.0, 0), (2.0, 2)):
        est = PoseEstimator(backend, confidence_threshold=0.0, region_expand=expand,
                            region_margin=margin)
        first = est.estimate(rgb)
        est.estimate(rgb)
        want = region_cells(first.joints_px, box, expand, margin)
        assert np.array_equal(backend._region[0, 0].numpy(), want)
        seen.append(want.sum())
    assert seen[0] < seen[1]
    for bad in ({"region_expand": 0.9}, {"region_expand": 3.5}, {"region_margin": -1},
                {"region_margin": 5}, {"region_margin": 1.5}):
        with pytest.raises(ValueError, match="region_"):
            PoseEstimator(backend, **bad)


def test_tracking_crops_run_on_the_crop_backend(tmp_path):
    """``crop_backend``: whole frames go through ``backend`` at its size, tracking crops
    through the crop session at its own (each with its own region of the previous pose);
    the joints come back in image pixels either way; another model is refused."""
    from sparse_pose_ros.pipeline.roi import region_cells

    path = _checkpoint(tmp_path, gated=True, size=64)
    whole = create_backend("torch", path, "cpu")
    crop = create_backend("torch", path, "cpu", input_size=96)
    calls: list[int] = []
    for b in (whole, crop):
        inner = b.infer
        b.infer = lambda t, inner=inner: (calls.append(t.shape[-1]), inner(t))[1]
    # no re-check: an untrained crop's confidence may fall below the whole frame's
    est = PoseEstimator(whole, confidence_threshold=0.0, track_person=True, crop_backend=crop,
                        recheck_ratio=0.0)
    assert est.crop_backend is crop
    rgb = np.random.default_rng(3).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    first = est.estimate(rgb)
    second = est.estimate(rgb)
    assert first.roi is None and second.roi is not None
    assert calls == [64, 96]  # the whole frame at 64 px, the crop at 96 px
    # the crop session executed the previous pose's region in its own 96-px grid
    from sparse_pose_ros.pipeline.preprocess import Letterbox

    box = Letterbox.window(320, 240, 96, *second.roi)
    cells = region_cells(first.joints_px, box)
    assert second.region_from_pose and crop._region is not None
    assert np.array_equal(crop._region[0, 0].numpy(), cells)
    np.testing.assert_allclose(Intrinsics.nominal(320, 240).project(second.joints_m),
                               second.joints_px, atol=1e-2)  # fmt: skip
    est.confidence_threshold = 1.0
    est.estimate(rgb)  # nobody: the next frame is whole again, on the whole-frame session
    assert calls[-1] == 96 and est.estimate(rgb).roi is None and calls[-1] == 64
    other = create_backend("torch", _checkpoint(tmp_path, gated=False), "cpu")
    with pytest.raises(ValueError, match="not the model"):
        PoseEstimator(whole, crop_backend=other)
    assert PoseEstimator(whole).crop_backend is whole  # no crop session: one for both
    assert PoseEstimator(whole).backends == (whole,) and est.backends == (whole, crop)
