"""The tracking re-check: a fall in confidence on a tracked frame re-reads it whole, and the
whole frame's answer is kept only when it is more confident and the same person."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sparse_pose_ros import skeleton
from sparse_pose_ros.backends import create_backend
from sparse_pose_ros.model.checkpoint import save_checkpoint
from sparse_pose_ros.model.network import NetworkConfig, PoseNetwork
from sparse_pose_ros.pipeline.estimator import PoseEstimator, PoseResult
from sparse_pose_ros.pipeline.recheck import (
    RECHECK_RATIO,
    TrackConfidence,
    joint_box_iou,
    recheck_ratio_value,
)

J = skeleton.NUM_JOINTS


def _skeleton(x0: float, y0: float, w: float = 40.0, h: float = 100.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 1, (J, 2)) * [w, h] + [x0, y0]
    pts[0], pts[1] = (x0, y0), (x0 + w, y0 + h)  # the box is exactly (x0, y0, w, h)
    return pts.astype(np.float32)


def test_joint_box_iou():
    a = _skeleton(0, 0)
    assert joint_box_iou(a, a) == pytest.approx(1.0)
    assert joint_box_iou(a, _skeleton(20, 0)) == pytest.approx(20 * 100 / (2 * 4000 - 2000))
    assert joint_box_iou(a, _skeleton(100, 0)) == 0.0
    assert joint_box_iou(a, np.full((J, 2), np.nan)) == 0.0
    assert joint_box_iou(a, np.zeros((J, 2))) == 0.0  # a collapsed skeleton has no area


def test_track_confidence_rule():
    t = TrackConfidence(0.75)
    assert not t.due(0.1, tracked=True, found=True)  # no level yet
    t.update(0.6, found=True, tracked=False)  # a whole frame starts the level
    assert t.level == pytest.approx(0.6)
    assert not t.due(0.46, tracked=True, found=True) and t.due(0.44, tracked=True, found=True)
    assert not t.due(0.1, tracked=False, found=True)  # a whole frame is never re-read
    assert not t.due(0.1, tracked=True, found=False)  # lost: the next frame is read whole
    t.update(0.5, found=True, tracked=True)  # a tracked frame moves it by a fifth
    assert t.level == pytest.approx(0.8 * 0.6 + 0.2 * 0.5)
    t.update(0.9, found=True, tracked=False)
    assert t.level == pytest.approx(0.9)
    t.update(0.2, found=False, tracked=True)  # nobody: the track ends
    assert t.level is None
    t.update(0.6, found=True, tracked=False)
    t.reset()
    assert t.level is None
    off = TrackConfidence(0.0)
    off.update(0.6, found=True, tracked=False)
    assert not off.due(0.0, tracked=True, found=True)


def test_ratio_range():
    assert recheck_ratio_value(0.0) == 0.0 and recheck_ratio_value(RECHECK_RATIO) == RECHECK_RATIO
    for bad in (-0.1, 0.96, 1.0):
        with pytest.raises(ValueError, match="recheck_ratio"):
            recheck_ratio_value(bad)


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    torch.manual_seed(0)
    net = PoseNetwork(NetworkConfig(input_size=64, width_mult=0.35, head_channels=16,
                                    depth_bins=8))
    path = tmp_path_factory.mktemp("m") / "tiny.safetensors"
    save_checkpoint(path, net, {"untrained": True})
    return create_backend("torch", path, "cpu")


class Script:
    """Stands in for the estimator's one pass: the answers of the crop and of the whole frame
    come from lists, and the pass records its track as the real one does."""

    def __init__(self, est: PoseEstimator, crops: list[tuple[float, np.ndarray]],
                 wholes: list[tuple[float, np.ndarray]]) -> None:
        self.est, self.crops, self.wholes, self.reads = est, crops, wholes, []

    def __call__(self, rgb, intrinsics) -> PoseResult:
        tracked = self.est._previous is not None
        conf, joints = (self.crops if tracked else self.wholes).pop(0)
        self.reads.append("crop" if tracked else "whole")
        found = conf >= self.est.confidence_threshold
        h, w = rgb.shape[:2]
        self.est._previous = (joints.copy(), (w, h)) if found else None
        return PoseResult(
            joints_px=joints, joints_m=np.zeros((J, 3), np.float32),
            confidence=np.full(J, conf, np.float32), person_found=found,
            mask_source=lambda: np.zeros((h, w), np.uint8), density=1.0, block_density=[],
            root_depth_m=3.0, fit_residual_m=0.0, intrinsics_source="nominal_fov",
            timings_ms={"inference": 5.0, "total": 7.0},
            roi=(0, 0, 100) if tracked else None)


RGB = np.zeros((240, 320, 3), np.uint8)


def _scripted(backend, crops, wholes, ratio=RECHECK_RATIO):
    est = PoseEstimator(backend, confidence_threshold=0.3, track_person=True,
                        recheck_ratio=ratio)
    script = Script(est, crops, wholes)
    est._read = script  # type: ignore[method-assign]
    return est, script


def test_a_fall_in_confidence_takes_the_whole_frames_answer_for_the_same_person(backend):
    here, gone_wrong = _skeleton(100, 50), _skeleton(110, 40, 60, 120)
    est, script = _scripted(backend, crops=[(0.6, here), (0.4, gone_wrong), (0.6, here)],
                            wholes=[(0.6, here), (0.55, here)])
    assert not est.estimate(RGB).rechecked  # whole frame: the track starts at 0.6
    assert not est.estimate(RGB).rechecked  # tracked at the same level
    r = est.estimate(RGB)  # 0.4 < 0.75 x 0.6: read whole as well; same person, more sure
    assert r.rechecked and r.roi is None and r.mean_confidence == pytest.approx(0.55)
    assert r.timings_ms == {"inference": 10.0, "total": 14.0}  # both reads
    np.testing.assert_array_equal(est._previous[0], here)  # the next crop follows it
    assert est._track.level == pytest.approx(0.55)
    assert not est.estimate(RGB).rechecked
    assert script.reads == ["whole", "crop", "crop", "whole", "crop"]


@pytest.mark.parametrize("whole", ["another person", "less confident"])
def test_the_crops_answer_and_track_stay_when_the_whole_frame_is_no_better(backend, whole):
    here, low = _skeleton(100, 50), _skeleton(105, 55)
    other = (0.7, _skeleton(250, 50)) if whole == "another person" else (0.35, here)
    est, script = _scripted(backend, crops=[(0.6, here), (0.4, low), (0.6, low)],
                            wholes=[(0.6, here), other])
    est.estimate(RGB)
    est.estimate(RGB)
    r = est.estimate(RGB)
    assert r.rechecked and r.roi is not None and r.mean_confidence == pytest.approx(0.4)
    np.testing.assert_array_equal(est._previous[0], low)  # still tracking the crop's skeleton
    assert est.estimate(RGB).roi is not None
    assert script.reads == ["whole", "crop", "crop", "whole", "crop"]


def test_no_recheck_when_off_or_after_a_reset(backend):
    here = _skeleton(100, 50)
    est, script = _scripted(backend, crops=[(0.6, here), (0.4, here)], wholes=[(0.6, here)],
                            ratio=0.0)
    est.estimate(RGB)
    est.estimate(RGB)
    assert not est.estimate(RGB).rechecked
    assert script.reads == ["whole", "crop", "crop"]
    est, script = _scripted(backend, crops=[], wholes=[(0.9, here)] * 2)
    est.estimate(RGB)
    est.reset_tracking()
    assert est._track.level is None and est.estimate(RGB).roi is None
    est.recheck_ratio = 0.5
    assert est.recheck_ratio == 0.5
    with pytest.raises(ValueError, match="recheck_ratio"):
        est.recheck_ratio = 1.0


def test_the_real_pass_runs_twice_on_a_recheck(backend):
    """Unscripted: the tiny network itself, its track's level set high so the tracked frame
    falls below it; the frame is read whole as well and reports both reads' time."""
    est = PoseEstimator(backend, confidence_threshold=0.0, track_person=True)
    rgb = np.random.default_rng(1).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    first = est.estimate(rgb)
    assert first.roi is None and not first.rechecked
    est._track.level = 10.0  # any confidence is a fall from here
    second = est.estimate(rgb)
    assert second.rechecked
    assert dataclasses.asdict(second).keys() == dataclasses.asdict(first).keys()
    assert second.timings_ms["total"] >= second.timings_ms["inference"] > 0


def test_a_crop_that_lost_the_person_is_not_read_twice(backend):
    """Below confidence_threshold the person is lost: the next frame is read whole anyway, so
    this one is not re-read (two passes on every lost frame)."""
    here = _skeleton(100, 50)
    est, script = _scripted(backend, crops=[(0.6, here), (0.2, here)],
                            wholes=[(0.6, here), (0.6, here)])
    est.estimate(RGB)
    est.estimate(RGB)
    lost = est.estimate(RGB)
    assert not lost.rechecked and not lost.person_found
    assert est.estimate(RGB).roi is None  # the next frame: whole
    assert script.reads == ["whole", "crop", "crop", "whole"]
