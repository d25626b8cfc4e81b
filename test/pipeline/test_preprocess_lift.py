"""Letterbox geometry and the metric lift (root-depth fit) on exact synthetic skeletons."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sparse_pose_ros import skeleton
from sparse_pose_ros.pipeline.lift import (
    REFERENCE_BONE_LENGTHS_M,
    Intrinsics,
    fit_root_depth,
    lift,
)
from sparse_pose_ros.pipeline.preprocess import Letterbox, letterbox, mean_fill, normalise


@pytest.mark.parametrize(("w", "h"), [(640, 480), (480, 640), (300, 300), (1, 900)])
def test_letterbox_round_trip(w, h):
    box = Letterbox.fit(w, h, 256)
    px = np.array([[0.0, 0.0], [w, h], [w / 3, h / 5]])
    np.testing.assert_allclose(box.normalised_to_image(box.image_to_normalised(px)), px,
                               atol=1e-9)
    x0, y0, x1, y1 = box.content_box()
    assert 0 <= x0 <= x1 <= 256 and 0 <= y0 <= y1 <= 256
    assert max(x1 - x0, y1 - y0) == 256


def test_letterbox_pads_with_mean_and_normalises_pad_to_zero():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    rgb = np.full((40, 80, 3), 200, np.uint8)
    canvas, box = letterbox(rgb, 64, mean_fill(mean))
    assert canvas.shape == (64, 64, 3) and (box.pad_x, box.pad_y) == (0, 16)
    x = normalise(canvas, mean, std)
    assert x.shape == (1, 3, 64, 64) and x.dtype == np.float32 and x.flags.c_contiguous
    assert np.abs(x[0, :, 0, 0]).max() < 0.01  # padding normalises to ~0
    np.testing.assert_allclose(x[0, :, 32, 32], (200 / 255 - np.array(mean)) / std, rtol=1e-5)
    with pytest.raises(ValueError):
        letterbox(rgb[:, :, 0], 64)


@pytest.mark.parametrize("hw", [(64, 64), (64, 24), (31, 57)])
@pytest.mark.parametrize(("mean", "std"), [((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
                                           ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
def test_normalise_is_the_arithmetic_per_channel_in_planar_layout(hw, mean, std):
    """The table lookup gives exactly ``(v/255 - mean) / std`` in float32, channel-planar,
    for every pixel (a swapped channel, a transposed plane or a stale table would not)."""
    rgb = np.random.default_rng(hw[1]).integers(0, 256, (*hw, 3), dtype=np.uint8)
    x = rgb.astype(np.float32) * np.float32(1.0 / 255.0)
    want = ((x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).transpose(2, 0, 1)
    got = normalise(rgb, mean, std)
    assert got.shape == (1, 3, *hw) and got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got[0], want)
    with pytest.raises(ValueError):
        normalise(rgb.astype(np.float32), mean, std)
    with pytest.raises(ValueError):
        normalise(rgb[:, :, :2], mean, std)


def _reference_skeleton(lengths: np.ndarray | None = None) -> np.ndarray:
    """A standing person (m, optical frame, pelvis at origin) with exactly the reference bones
    (or ``lengths``)."""
    dirs = {  # unit directions parent -> child in the optical frame (y down)
        "right_hip": (-1, 0, 0), "right_knee": (0, 1, 0), "right_ankle": (0, 1, 0),
        "left_hip": (1, 0, 0), "left_knee": (0, 1, 0), "left_ankle": (0, 1, 0),
        "spine": (0, -1, 0), "thorax": (0, -1, 0), "neck_nose": (0, -1, 0.3),
        "head_top": (0, -1, 0), "left_shoulder": (1, 0, 0), "left_elbow": (0.3, 1, 0.4),
        "left_wrist": (0, 1, -0.5), "right_shoulder": (-1, 0, 0), "right_elbow": (0, 1, 0),
        "right_wrist": (-0.2, 0.2, -1),
    }
    pts = np.zeros((skeleton.NUM_JOINTS, 3))
    lengths = REFERENCE_BONE_LENGTHS_M if lengths is None else lengths
    for (p, c), length in zip(skeleton.BONES, lengths, strict=True):
        d = np.array(dirs[skeleton.JOINT_NAMES[c]], float)
        pts[c] = pts[p] + length * d / np.linalg.norm(d)
    return pts


def _network_output(points: np.ndarray, intr: Intrinsics, box: Letterbox, depth_range_m: float):
    px = intr.project(points)
    xy = box.image_to_normalised(px)
    z = (points[:, 2] - points[0, 2]) / depth_range_m
    return np.concatenate([xy, z[:, None]], 1)


@pytest.mark.parametrize("root_depth", [1.5, 3.0, 8.0])
def test_lift_recovers_metric_pose_from_exact_projection(root_depth):
    intr = Intrinsics.from_k([500, 0, 330, 0, 510, 250, 0, 0, 1], 640, 480)
    box = Letterbox.fit(640, 480, 256)
    truth = _reference_skeleton() + np.array([0.3, -0.1, root_depth])
    joints = _network_output(truth, intr, box, 1.0)
    out = lift(joints, np.ones(skeleton.NUM_JOINTS), box, intr, 1.0)
    assert out.root_depth_m == pytest.approx(root_depth, rel=1e-4)
    np.testing.assert_allclose(out.points_m, truth, atol=1e-3)
    assert out.fit_residual_m < 1e-3
    np.testing.assert_allclose(out.pixels, intr.project(truth), atol=1e-3)


def test_lift_fits_the_models_bone_lengths_when_given():
    """A person with other proportions than Human3.6M's (the teacher labels' thorax-nose bone
    is about twice as long): the fit to the default reference misplaces them in depth, the fit
    to their own bone lengths recovers the depth."""
    intr = Intrinsics.nominal(640, 480)
    box = Letterbox.fit(640, 480, 256)
    ref = np.array(REFERENCE_BONE_LENGTHS_M)
    own = ref * np.linspace(0.8, 1.2, skeleton.NUM_BONES)
    own[skeleton.BONES.index((skeleton.JOINT_NAMES.index("thorax"),
                              skeleton.JOINT_NAMES.index("neck_nose")))] = 0.225
    truth = _reference_skeleton(own) + np.array([0.1, 0.0, 3.0])
    joints = _network_output(truth, intr, box, 1.0)
    conf = np.ones(skeleton.NUM_JOINTS)
    fitted = lift(joints, conf, box, intr, 1.0, tuple(own))
    assert fitted.root_depth_m == pytest.approx(3.0, rel=1e-4)
    assert abs(lift(joints, conf, box, intr, 1.0).root_depth_m - 3.0) > 0.05
    assert lift(joints, conf, box, intr, 1.0, ()).root_depth_m == pytest.approx(
        lift(joints, conf, box, intr, 1.0).root_depth_m)  # empty = the default
    with pytest.raises(ValueError, match="bone lengths"):
        lift(joints, conf, box, intr, 1.0, tuple(own[:3]))


def test_low_confidence_bones_do_not_pull_the_fit():
    intr = Intrinsics.nominal(640, 480)
    box = Letterbox.fit(640, 480, 256)
    truth = _reference_skeleton() + np.array([0.0, 0.0, 4.0])
    joints = _network_output(truth, intr, box, 1.0)
    joints[13, :2] += 0.2  # a wildly wrong left wrist ...
    conf = np.ones(skeleton.NUM_JOINTS)
    conf[13] = 0.0  # ... that the network is not confident about
    out = lift(joints, conf, box, intr, 1.0)
    assert out.root_depth_m == pytest.approx(4.0, rel=1e-3)


def test_fit_stays_in_front_of_the_camera_and_in_bounds():
    rays = np.zeros((skeleton.NUM_JOINTS, 3))
    rays[:, 2] = 1.0  # every joint on the optical axis: no lateral extent at all
    dz = np.linspace(-0.5, 0.5, skeleton.NUM_JOINTS)
    z, _ = fit_root_depth(rays, dz, np.ones(skeleton.NUM_BONES))
    assert 0.2 <= z <= 50.0
    assert (z + dz).min() > 0.0


def test_fit_finds_the_minimum_of_the_explicit_bone_error():
    """The fit's closed-form bone lengths (a quadratic in Z per bone) agree with bones measured
    between the back-projected joints: its answer is the minimum a brute-force search of that
    explicit error finds, on noisy skeletons whose bones match no reference."""
    rng = np.random.default_rng(3)
    parents = np.array([p for p, _ in skeleton.BONES])
    children = np.array([c for _, c in skeleton.BONES])
    ref = np.asarray(REFERENCE_BONE_LENGTHS_M)
    for depth in np.linspace(1.0, 9.0, 12):
        truth = _reference_skeleton(ref * rng.uniform(0.8, 1.2, skeleton.NUM_BONES))
        truth = truth + rng.normal(0.0, 0.03, truth.shape) + np.array([0.3, 0.2, depth])
        rays = truth / truth[:, 2:]
        dz = truth[:, 2] - truth[skeleton.ROOT, 2]
        w = rng.uniform(0.1, 1.0, skeleton.NUM_BONES)
        z, residual = fit_root_depth(rays, dz, w)

        def explicit(root: float, rays=rays, dz=dz, w=w) -> float:
            points = rays * (root + dz)[:, None]
            bones = np.linalg.norm(points[children] - points[parents], axis=1)
            return float((w / w.sum() * (bones - ref) ** 2).sum())

        coarse = np.geomspace(max(0.2, 0.05 - dz.min()), 50.0, 4001)
        start = coarse[int(np.argmin([explicit(g) for g in coarse]))]
        fine = np.linspace(start * 0.995, start * 1.005, 4001)
        best = fine[int(np.argmin([explicit(g) for g in fine]))]
        assert z == pytest.approx(best, rel=2e-5)
        assert residual == pytest.approx(math.sqrt(explicit(z)), rel=1e-9)


def test_intrinsics_validation_and_nominal_fov():
    with pytest.raises(ValueError, match="NaN"):
        Intrinsics.from_k([math.nan] * 9, 640, 480)
    with pytest.raises(ValueError, match="focal"):
        Intrinsics.from_k([0.0] * 9, 640, 480)
    with pytest.raises(ValueError, match="principal point"):
        Intrinsics.from_k([500, 0, 1e5, 0, 500, 240, 0, 0, 1], 640, 480)
    with pytest.raises(ValueError, match="9 entries"):
        Intrinsics.from_k([1.0, 2.0], 640, 480)


@pytest.mark.parametrize(("k", "reason"), [
    ([1e12, 0, 320, 0, 1e12, 240, 0, 0, 1], "field of view"),  # every ray on the optical axis
    ([0.5, 0, 320, 0, 0.5, 240, 0, 0, 1], "field of view"),  # beyond 179°
    ([-500, 0, 320, 0, 500, 240, 0, 0, 1], "non-positive"),
    ([500, 0, 320, 0, 50, 240, 0, 0, 1], "fx/fy"),
    ([500, 0, 1.8 * 640, 0, 500, 240, 0, 0, 1], "principal point"),
    ([500, 0, 320, 0, 500, -0.8 * 480, 0, 0, 1], "principal point"),
    ([500, 0, 320, 0, 500, 240, 0, 0, 0], "last row"),
])
def test_absurd_intrinsics_are_rejected_with_the_reason(k, reason):
    with pytest.raises(ValueError, match=reason):
        Intrinsics.from_k(k, 640, 480)


@pytest.mark.parametrize("k", [
    [60.0, 0, 320, 0, 60.0, 240, 0, 0, 1],  # fisheye-like, 158° horizontal
    [20000.0, 0, 320, 0, 20000.0, 240, 0, 0, 1],  # long telephoto, 1.8°
    [500.0, 0, 700, 0, 500.0, 240, 0, 0, 1],  # shifted sensor: principal point off the image
])
def test_plausible_extreme_intrinsics_are_kept(k):
    assert Intrinsics.from_k(k, 640, 480).fx == k[0]
    nominal = Intrinsics.nominal(640, 480, 60.0)
    assert nominal.source == "nominal_fov"
    assert nominal.fx == pytest.approx(320 / math.tan(math.radians(30)))
    assert (nominal.cx, nominal.cy) == (320, 240)


def test_lift_rejects_bad_joints():
    box, intr = Letterbox.fit(64, 64, 64), Intrinsics.nominal(64, 64)
    with pytest.raises(ValueError, match="NaN"):
        lift(np.full((17, 3), np.nan), np.ones(17), box, intr, 1.0)
    with pytest.raises(ValueError, match=r"\(17, 3\)"):
        lift(np.zeros((16, 3)), np.ones(16), box, intr, 1.0)


def test_window_crops_and_maps_back():
    """A window reaching past the image's corner: the canvas holds the image part (scaled) and
    the fill elsewhere; normalised <-> image coordinates round-trip through the window."""
    from sparse_pose_ros.pipeline.preprocess import crop_window
    from sparse_pose_ros.pipeline.roi import RoiConfig, roi_window

    rgb = np.zeros((100, 200, 3), np.uint8)
    rgb[:, :, 0] = np.arange(200)[None, :]  # red = x
    box = Letterbox.window(200, 100, 32, x0=-8, y0=60, side=64)
    canvas = crop_window(rgb, box, (7, 7, 7))
    assert canvas.shape == (32, 32, 3)
    assert (canvas[:, :4] == 7).all()  # x < 0: fill
    assert (canvas[21:, :] == 7).all()  # y >= 100: fill
    assert abs(int(canvas[5, 20, 0]) - 32) <= 2  # input x 20.5 -> image x 33 (pixel 32/33)
    px = np.array([[10.0, 70.0], [50.0, 99.0]])
    np.testing.assert_allclose(box.normalised_to_image(box.image_to_normalised(px)), px)
    assert box.content_box() == (4, 0, 32, 20)
    # roi: square around the joints, side 1.5 x the larger extent, None when it would not zoom
    joints = np.array([[100.0, 40.0], [120.0, 80.0]])
    win = roi_window(joints, 200, 100, 32)
    assert round(32 / win.scale) == 60 and round(-win.pad_x / win.scale) == 80
    assert roi_window(np.array([[0.0, 0.0], [190.0, 10.0]]), 200, 100, 32) is None
    assert roi_window(np.array([[np.nan, 0.0], [1.0, 1.0]]), 200, 100, 32) is None
    with pytest.raises(ValueError):
        RoiConfig(side_factor=0.5)
    with pytest.raises(ValueError, match="window is for"):
        crop_window(np.zeros((10, 10, 3), np.uint8), box)


def test_window_crop_equals_the_padded_copy_and_the_mask_stays_in_the_window():
    """The crop is read from a view of the image (OpenCV pads only where the window leaves it):
    the same pixels as padding a copy of the window first, for windows inside, across the edge
    and off the image; the execution-mask picture is the window's, zero elsewhere."""

    from sparse_pose_ros.pipeline.estimator import execution_mask
    from sparse_pose_ros.pipeline.preprocess import crop_window, shrink

    rgb = np.random.default_rng(4).integers(0, 256, (120, 90, 3), dtype=np.uint8)
    fill = (7, 8, 9)
    for x0, y0, side in ((10, 20, 50), (-15, 80, 70), (60, -5, 40), (200, 200, 30)):
        box = Letterbox.window(90, 120, 32, x0=x0, y0=y0, side=side)
        region = np.empty((side, side, 3), np.uint8)
        region[:] = fill
        sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(90, x0 + side), min(120, y0 + side)
        if sx1 > sx0 and sy1 > sy0:
            region[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
        np.testing.assert_array_equal(crop_window(rgb, box, fill), shrink(region, 32, 32))
        for masks in ([], [np.ones((2, 2), np.uint8), np.eye(2, dtype=np.uint8)]):
            img = execution_mask(masks, box, (120, 90))
            inside = np.zeros((120, 90), bool)
            inside[sy0:max(sy0, sy1), sx0:max(sx0, sx1)] = True
            assert img.shape == (120, 90) and img.dtype == np.uint8
            assert (img[~inside] == 0).all()
            if inside.any():
                assert (img[inside] == 255).all() if not masks else img[inside].max() == 255


def test_shrink_halves_first_without_moving_the_picture(monkeypatch):
    """``shrink`` (crops and letterboxes): an even-sided source at least twice the output is
    halved exactly first, so the picture stays where it was — a ramp of one level per source
    pixel reads each output pixel's own source interval — and the values stay within a few
    levels of OpenCV's single area resize; an odd side falls back to that resize exactly."""
    import cv2

    from sparse_pose_ros.pipeline.preprocess import shrink

    ramp = np.zeros((256, 256, 3), np.uint8)
    ramp[:, :, 0] = np.arange(256)[None, :]  # red = x
    ramp[:, :, 1] = np.arange(256)[:, None]  # green = y
    out = shrink(ramp, 32, 16).astype(float)
    want_x = 8 * np.arange(32) + 3.5  # the mean of x over output pixel i's 8 source columns
    want_y = 16 * np.arange(16) + 7.5
    assert np.abs(out[:, :, 0] - want_x[None, :]).max() <= 1.0
    assert np.abs(out[:, :, 1] - want_y[:, None]).max() <= 1.0
    assert abs(float((out[:, :, 0] - want_x[None, :]).mean())) < 0.6
    smooth = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (1000, 560, 3),
                                                                dtype=np.uint8), (9, 9), 3)
    for size in ((128, 224), (96, 224), (256, 144)):
        one = cv2.resize(smooth, size, interpolation=cv2.INTER_AREA).astype(int)
        diff = np.abs(shrink(smooth, *size).astype(int) - one)
        assert diff.max() <= 4 and diff.mean() < 0.6, (size, diff.max(), diff.mean())
    odd = smooth[:999]
    np.testing.assert_array_equal(shrink(odd, 96, 224),
                                  cv2.resize(odd, (96, 224), interpolation=cv2.INTER_AREA))
    import sparse_pose_ros.pipeline.preprocess as preprocess

    steps: list[tuple[int, int]] = []
    real = cv2.resize
    monkeypatch.setattr(preprocess.cv2, "resize", lambda src, size, interpolation: (
        steps.append(src.shape[:2]), real(src, size, interpolation=interpolation))[1])
    shrink(np.zeros((1080, 1920, 3), np.uint8), 256, 144)  # an HD frame's letterbox
    assert steps == [(1080, 1920), (540, 960)]  # halved once, then the area resize
    monkeypatch.undo()
    small = smooth[:100, :60]  # enlarged: bilinear, as before
    np.testing.assert_array_equal(shrink(small, 120, 200),
                                  cv2.resize(small, (120, 200), interpolation=cv2.INTER_LINEAR))
