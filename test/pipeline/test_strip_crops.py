"""Tracking crops read as strips: the network reads only the central columns of the square
crop (``Letterbox.input_width``), its joints come back in the square's frame
(``model.heads.strip_to_square``), and the estimator picks the narrowest strip that holds the
person. Tiny random checkpoints, real torch backend."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparse_pose_ros import skeleton
from sparse_pose_ros.backends import create_backend
from sparse_pose_ros.backends.base import BackendError
from sparse_pose_ros.model.checkpoint import save_checkpoint
from sparse_pose_ros.model.heads import strip_to_square
from sparse_pose_ros.model.network import NetworkConfig, PoseNetwork
from sparse_pose_ros.pipeline.estimator import PoseEstimator, execution_mask
from sparse_pose_ros.pipeline.lift import Intrinsics
from sparse_pose_ros.pipeline.preprocess import Letterbox, crop_window, strip_side_multiple
from sparse_pose_ros.pipeline.roi import (
    CROP_INPUT_WIDTHS,
    STRIP_MARGIN,
    RoiConfig,
    roi_window,
    strip_fits,
)


def _net(gated: bool = False) -> PoseNetwork:
    torch.manual_seed(0)
    return PoseNetwork(NetworkConfig(input_size=64, width_mult=0.35, head_channels=16,
                                     depth_bins=8, gated=gated)).eval()


@pytest.fixture(scope="module")
def dense_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "dense.safetensors"
    save_checkpoint(path, _net(), {"untrained": True})
    return path


def test_strip_to_square_maps_into_the_squares_middle_columns():
    j = torch.tensor([[[0.0, 0.0, 0.3], [1.0, 1.0, -0.2], [0.5, 0.25, 0.0]]])
    out = strip_to_square(j, 64, 32)  # a 64-tall, 32-wide map: the square's columns 16..48
    np.testing.assert_allclose(out[0, :, 0].numpy(), [0.25, 0.75, 0.5])
    np.testing.assert_allclose(out[0, :, 1:].numpy(), j[0, :, 1:].numpy())  # y and z as given
    assert strip_to_square(j, 48, 48) is j  # a square map: untouched
    wide = strip_to_square(j, 32, 64)  # landscape: the rows shrink instead
    np.testing.assert_allclose(wide[0, :, 1].numpy(), [0.25, 0.75, 0.375])


def test_the_network_returns_a_strips_joints_in_the_squares_frame():
    """The soft-argmax lies inside its map, so a strip's x must land within the square's
    central columns; and the lifter reads the mapped joints (forward = refine(mapped head))."""
    net = _net()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        out = net(x)
        feats, skips, masks = net.backbone(x)
        y = net.neck(feats, skips)
        if net.head_pre is not None:
            y = net.head_pre(y)
        _, _, head_joints, _ = net.head(y, None)
        expected = net.refine_joints(strip_to_square(head_joints, 16, 8))
    xs = out.joints[..., 0]
    assert float(xs.min()) >= 0.25 and float(xs.max()) <= 0.75
    torch.testing.assert_close(out.joints, expected)


def test_a_strip_window_reads_the_central_columns_of_the_square_crop():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    assert strip_side_multiple(64, 32) == 4 and strip_side_multiple(192, 128) == 6
    assert strip_side_multiple(64, 64) == 1
    square = Letterbox.window(400, 300, 64, 50, 40, 128)
    strip = Letterbox.window(400, 300, 64, 50, 40, 128, input_width=32)
    assert strip.input_hw == (64, 32) and square.input_hw == (64, 64)
    assert strip.strip_rect() == (82, 40, 64, 128) and square.strip_rect() == (50, 40, 128, 128)
    full, part = crop_window(rgb, square), crop_window(rgb, strip)
    assert part.shape == (64, 32, 3)
    np.testing.assert_array_equal(part, full[:, 16:48])  # 2x area filter: the same pixels
    # a joint at strip column c (normalised to the strip) lands where the strip shows it
    xs = torch.tensor([[[0.1, 0.5, 0.0], [0.9, 0.2, 0.0]]])
    sq = strip_to_square(xs, 64, 32)[0, :, :2].numpy()
    px = strip.normalised_to_image(sq)
    np.testing.assert_allclose(px[:, 0], 82 + xs[0, :, 0].numpy() * 64)
    np.testing.assert_allclose(px[:, 1], 40 + xs[0, :, 1].numpy() * 128)
    with pytest.raises(ValueError, match="multiple of 4"):
        Letterbox.window(400, 300, 64, 50, 40, 130, input_width=32)
    with pytest.raises(ValueError, match="input_width"):
        Letterbox.window(400, 300, 64, 50, 40, 128, input_width=80)
    # what executed: the strip only
    mask = execution_mask([], strip, (300, 400))
    assert mask[40:168, 82:146].min() == 255 and mask.sum() == 255 * 64 * 128


def _upright(h: float = 200.0, w: float = 60.0, cx: float = 200.0, cy: float = 150.0):
    pts = np.zeros((skeleton.NUM_JOINTS, 2))
    pts[:, 0] = cx + np.linspace(-w / 2, w / 2, skeleton.NUM_JOINTS)
    pts[:, 1] = cy + np.linspace(-h / 2, h / 2, skeleton.NUM_JOINTS)
    return pts


def test_strip_fits_only_a_person_narrow_enough_for_it():
    roi = RoiConfig(strip_margin=1.5)  # the square crop's own margin
    assert strip_fits(_upright(w=60), 192, 96, roi)  # 0.3 as wide as tall: the 1/2 strip
    assert not strip_fits(_upright(w=120), 192, 96, roi)  # 0.6: not the 1/2 strip ...
    assert strip_fits(_upright(w=120), 192, 128, roi)  # ... but the 2/3 one
    assert not strip_fits(_upright(h=100, w=200), 192, 160, roi)  # lying down: the square
    assert not strip_fits(np.full((17, 2), np.nan), 192, 128, roi)
    # a smaller strip_margin lets a wider person into the strip; out of range is refused
    assert strip_fits(_upright(w=120), 192, 96, RoiConfig(strip_margin=1.2))
    with pytest.raises(ValueError, match="strip_margin"):
        RoiConfig(strip_margin=0.9)
    # the strip chosen for the next frame holds the joints with the margin on both sides, so a
    # strip that cut a hand (the hand predicted at its edge) is followed by one at least the
    # margin wider, until the hand is inside or the square is read
    for margin in (1.05, STRIP_MARGIN, 1.5):
        cfg = RoiConfig(strip_margin=margin)
        for w in (20.0, 60.0, 120.0, 180.0):
            person = _upright(h=200.0, w=w, cx=320.0, cy=240.0)
            fits = [s for s in CROP_INPUT_WIDTHS if strip_fits(person, 224, s, cfg)]
            if not fits:
                continue
            x0, _, width, _ = roi_window(person, 640, 480, 224, cfg, fits[0]).strip_rect()
            assert width >= margin * w - 2, (margin, w, fits[0])
            assert x0 <= 320.0 - margin * w / 2 + 1 and x0 + width >= 320.0 + margin * w / 2 - 1
            # the hand reaches that strip's edges: the next strip is wider by the margin
            reaching = _upright(h=200.0, w=width, cx=320.0, cy=240.0)
            wider = [s for s in CROP_INPUT_WIDTHS if strip_fits(reaching, 224, s, cfg)]
            if wider:
                nxt = roi_window(reaching, 640, 480, 224, cfg, wider[0]).strip_rect()[2]
                assert nxt >= margin * width - 2, (margin, w, width, nxt)
    box = roi_window(_upright(), 640, 480, 192, roi, input_width=128)
    _, _, side = box.window_rect()
    assert side % 6 == 0 and abs(side - 300) <= 3 and box.input_width == 128


def test_estimator_reads_the_narrowest_strip_that_holds_the_person(dense_path):
    whole = create_backend("torch", dense_path, "cpu")
    crop = create_backend("torch", dense_path, "cpu", input_size=96)
    strips = [create_backend("torch", dense_path, "cpu", input_size=96, input_width=w)
              for w in (64, 32)]
    assert PoseEstimator(whole, strip_backends=()).strip_margin == STRIP_MARGIN
    est = PoseEstimator(whole, confidence_threshold=0.0, track_person=True, crop_backend=crop,
                        strip_backends=strips, strip_margin=1.5,
                        recheck_ratio=0.0)  # untrained: a crop's confidence may fall
    assert [b.info.input_width for b in est.strip_backends] == [32, 64]  # narrowest first
    assert est.strip_margin == 1.5
    with pytest.raises(ValueError, match="strip_margin"):
        est.strip_margin = 5.0
    assert est.strip_margin == 1.5
    assert est.backends == (whole, crop, *est.strip_backends)
    rgb = np.random.default_rng(3).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    intr = Intrinsics.nominal(320, 240)
    est.estimate(rgb, intr)
    for joints, want in ((_upright(100, 20, 160, 120), (96, 32)),
                         (_upright(100, 60, 160, 120), (96, 64)),
                         (_upright(100, 95, 160, 120), (96, 96))):
        est._previous = (joints, (320, 240))
        r = est.estimate(rgb, intr)
        assert r.input_hw == want and r.roi is not None
        x0, y0, side = r.roi
        assert side % strip_side_multiple(96, want[1]) == 0
        # the joints come back in the image, inside the part the network read
        rx0 = x0 + (side - side * want[1] // 96) // 2
        assert r.joints_px[:, 0].min() >= rx0 - 1e-3
        assert r.joints_px[:, 0].max() <= rx0 + side * want[1] // 96 + 1e-3
        np.testing.assert_allclose(intr.project(r.joints_m), r.joints_px, atol=1e-2)
    # with a smaller margin the 0.6-wide person goes into the 64-px strip, not the square
    est.strip_margin = 1.2
    est._previous = (_upright(100, 80, 160, 120), (320, 240))
    assert est.estimate(rgb, intr).input_hw == (96, 64)
    est.strip_margin = 1.5
    est._previous = (_upright(100, 80, 160, 120), (320, 240))
    assert est.estimate(rgb, intr).input_hw == (96, 96)
    # the budget's floor (pipeline.strip_budget): strips narrower than floor x side are
    # skipped, so a thin person reads the next strip above it, or the square; never a strip
    # narrower than the margin allows
    assert est.strip_floor == 0.0
    thin = _upright(100, 20, 160, 120)
    for floor, want in ((0.0, 32), (0.34, 64), (0.5, 64), (0.7, 96), (1.0, 96)):
        est.strip_floor = floor
        est._previous = (thin, (320, 240))
        r = est.estimate(rgb, intr)
        assert r.input_hw == (96, want), floor
        # whether the floor, not the person, set the width (what the budget is fed on)
        assert r.strip_floor_bound == (floor > 0), floor
    est.strip_floor = 0.34
    est._previous = (_upright(100, 95, 160, 120), (320, 240))  # too wide for any strip
    r = est.estimate(rgb, intr)
    assert r.input_hw == (96, 96) and not r.strip_floor_bound  # the skipped strip held nobody
    est.reset_tracking()
    r = est.estimate(rgb, intr)
    assert r.roi is None and not r.strip_floor_bound  # a whole frame reads no strip
    with pytest.raises(ValueError, match="strip_floor"):
        est.strip_floor = 1.5
    assert est.strip_floor == 0.34


def test_strips_must_be_the_crop_models_and_narrower(dense_path, tmp_path):
    crop = create_backend("torch", dense_path, "cpu", input_size=96)
    other_size = create_backend("torch", dense_path, "cpu", input_size=64, input_width=32)
    with pytest.raises(ValueError, match="96 px tall"):
        PoseEstimator(crop, crop_backend=crop, strip_backends=[other_size])
    with pytest.raises(ValueError, match="96 px tall"):
        PoseEstimator(crop, strip_backends=[crop])  # a square is not a strip
    other = tmp_path / "other.safetensors"
    torch.manual_seed(1)
    save_checkpoint(other, PoseNetwork(NetworkConfig(input_size=64, width_mult=0.35,
                                                     head_channels=16, depth_bins=8,
                                                     gated=False)), {"untrained": True})
    with pytest.raises(ValueError, match="not the crop model"):
        PoseEstimator(crop, strip_backends=[create_backend("torch", other, "cpu",
                                                           input_size=96, input_width=64)])


def test_backends_take_a_strip_only_for_dense_models(dense_path, tmp_path):
    b = create_backend("torch", dense_path, "cpu", input_size=64, input_width=32)
    assert b.info.input_hw == (64, 32) and b.geometry.input_width == 32
    r = b.infer(np.zeros((1, 3, 64, 32), np.float32))
    assert r.joints.shape == (skeleton.NUM_JOINTS, 3) and r.density == pytest.approx(1.0)
    with pytest.raises(ValueError, match="64, 32"):
        b.infer(np.zeros((1, 3, 64, 64), np.float32))
    b.warmup(1)  # warms up at its own shape
    gated = tmp_path / "gated.safetensors"
    save_checkpoint(gated, _net(gated=True), {"untrained": True})
    with pytest.raises(BackendError, match="dense models only"):
        create_backend("torch", gated, "cpu", input_size=64, input_width=32)
    with pytest.raises(ValueError, match="at most input_size"):
        create_backend("torch", dense_path, "cpu", input_size=64, input_width=96)
    with pytest.raises(ValueError, match="input_width"):
        create_backend("torch", dense_path, "cpu", input_size=64, input_width=40)
    # the same width as the size is a square
    assert create_backend("torch", dense_path, "cpu", input_size=64,
                          input_width=64).info.input_width == 0


def test_tracking_sessions_are_opened_as_the_node_opens_them(dense_path, tmp_path):
    """open_tracking_sessions (evaluation and benchmarks): a crop session only at another size,
    strips below the crop's side, narrowest first, none for a gated model; when one session
    cannot be opened, those already open are closed."""
    from sparse_pose_ros.pipeline.estimator import open_tracking_sessions

    opened = []

    def open_at(path):
        def at(size, width):
            b = create_backend("torch", path, "cpu", input_size=size, input_width=width)
            opened.append(b)
            return b
        return at

    whole, crop, strips = open_tracking_sessions(open_at(dense_path), None, 96, (64, 32, 96, 128))
    assert whole.info.input_size == 64 and crop.info.input_size == 96
    assert [b.info.input_hw for b in strips] == [(96, 64), (96, 32)]
    whole, crop, strips = open_tracking_sessions(open_at(dense_path), None, 64, (32,))
    assert crop is None and [b.info.input_hw for b in strips] == [(64, 32)]
    gated_path = tmp_path / "gated.safetensors"
    save_checkpoint(gated_path, _net(gated=True), {"untrained": True})
    whole, crop, strips = open_tracking_sessions(open_at(gated_path), None, 96, (32, 64))
    assert whole.info.gated and crop is not None and strips == []

    closed = []

    def failing(size, width):
        if width == 64:
            raise BackendError("no such strip")
        b = create_backend("torch", dense_path, "cpu", input_size=size, input_width=width)
        b.close = lambda b=b: closed.append(b)  # type: ignore[method-assign]
        return b

    with pytest.raises(BackendError, match="no such strip"):
        open_tracking_sessions(failing, None, 96, (32, 64))
    assert [b.info.input_hw for b in closed] == [(64, 64), (96, 96), (96, 32)]
