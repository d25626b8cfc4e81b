"""One Euro smoothing of the 3D joints: the filter's arithmetic and when it starts over."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sparse_pose_ros import skeleton
from sparse_pose_ros.pipeline.estimator import PoseResult
from sparse_pose_ros.pipeline.smoothing import OneEuroFilter, PoseSmoother, SmoothingConfig

J = skeleton.NUM_JOINTS


def _result(joints_m: np.ndarray, found: bool = True) -> PoseResult:
    return PoseResult(
        joints_px=np.zeros((J, 2), np.float32), joints_m=joints_m.astype(np.float32),
        confidence=np.ones(J, np.float32), person_found=found,
        mask_source=lambda: np.zeros((4, 4), np.uint8), density=1.0, block_density=[],
        root_depth_m=float(joints_m[skeleton.ROOT, 2]), fit_residual_m=0.0,
        intrinsics_source="nominal_fov", timings_ms={}, roi=None, region_from_pose=False)


def _alpha(cutoff: float, dt: float) -> float:
    return 1.0 / (1.0 + 1.0 / (2 * math.pi * cutoff * dt))


def test_low_pass_step_with_beta_zero() -> None:
    f = OneEuroFilter(SmoothingConfig(min_cutoff_hz=3.0, beta=0.0))
    np.testing.assert_array_equal(f(np.zeros(3), 0.0), np.zeros(3))  # first sample passes
    out = f(np.ones(3), 1 / 30)
    np.testing.assert_allclose(out, _alpha(3.0, 1 / 30))
    out2 = f(np.ones(3), 2 / 30)
    a = _alpha(3.0, 1 / 30)
    np.testing.assert_allclose(out2, a + a * (1 - a))
    # a constant stays put
    g = OneEuroFilter(SmoothingConfig())
    for k in range(5):
        np.testing.assert_allclose(g(np.full(3, 2.5), k / 30), 2.5)


def test_fast_motion_lags_less_with_beta() -> None:
    """A joint moving at 2 m/s: the speed term raises the cutoff, so the filter keeps up."""
    t = np.arange(30) / 30
    track = np.stack([2.0 * t, np.zeros_like(t), np.zeros_like(t)], 1)
    lag = {}
    for beta in (0.0, 5.0):
        f = OneEuroFilter(SmoothingConfig(min_cutoff_hz=1.0, beta=beta))
        outs = [f(x, s) for x, s in zip(track, t, strict=True)]
        lag[beta] = track[-1, 0] - outs[-1][0]
    assert 0 < lag[5.0] < 0.5 * lag[0.0]


def test_smoother_starts_over_on_a_lost_person_a_gap_or_a_stamp_going_back() -> None:
    sm = PoseSmoother(SmoothingConfig(min_cutoff_hz=2.0, beta=0.0, max_gap_s=0.5))
    a, b = np.zeros((J, 3)), np.ones((J, 3))
    a[:, 2] = b[:, 2] = 3.0
    sm.apply(_result(a), 0.0)
    smoothed = sm.apply(_result(b), 0.1)
    assert 0 < smoothed.joints_m[0, 0] < 1  # pulled towards the previous frame
    assert smoothed.root_depth_m == pytest.approx(float(smoothed.joints_m[skeleton.ROOT, 2]))
    for restart in ((_result(b, found=False), 0.2), (_result(a), 5.0), (_result(b), 4.0),
                    (_result(a), None), (_result(b), 4.05)):
        out = sm.apply(*restart)
        np.testing.assert_array_equal(out.joints_m, restart[0].joints_m)  # raw, filter reset
    nan = b.copy()
    nan[3] = np.nan
    assert np.isnan(sm.apply(_result(nan), 4.1).joints_m[3]).all()  # passed on, not smeared
    np.testing.assert_array_equal(sm.apply(_result(a), 4.2).joints_m, _result(a).joints_m)


def test_off_returns_the_result_unchanged() -> None:
    sm = PoseSmoother(SmoothingConfig(min_cutoff_hz=0.0))
    r = _result(np.ones((J, 3)))
    assert sm.apply(r, 0.0) is r
    assert sm.apply(r, 0.1) is r


@pytest.mark.parametrize("kwargs", [{"min_cutoff_hz": -1.0}, {"min_cutoff_hz": 31.0},
                                    {"beta": -0.1}, {"d_cutoff_hz": 0.0}, {"max_gap_s": 0.0}])
def test_bad_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        SmoothingConfig(**kwargs)
