"""The budget's knob on whole frames: levels map onto the ladder of whole-frame sizes, the
controller's direction holds (over budget → a smaller whole frame, spare time → back to the
model's own), and the estimator reads a whole frame through the session the cap picks — and
tracked frames never through those. Tiny random checkpoints, real torch backend."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparse_pose_ros.backends import create_backend
from sparse_pose_ros.backends.base import BackendError
from sparse_pose_ros.control.latency_budget import LatencyBudgetController
from sparse_pose_ros.model.checkpoint import save_checkpoint
from sparse_pose_ros.model.network import NetworkConfig, PoseNetwork
from sparse_pose_ros.pipeline.estimator import (
    PoseEstimator,
    checked_wholes,
    open_whole_sessions,
)
from sparse_pose_ros.pipeline.strip_budget import LEVEL_BOUNDS
from sparse_pose_ros.pipeline.whole_budget import (
    level_for_size,
    size_for_level,
    whole_budget_config,
)


def _save(path, gated: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    save_checkpoint(path, PoseNetwork(NetworkConfig(
        input_size=64, width_mult=0.35, head_channels=16, depth_bins=8, gated=gated)).eval(),
        {"untrained": True})
    return path


@pytest.fixture(scope="module")
def dense_path(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("m") / "dense.safetensors")


def _at(path, size=None, width=None):
    return create_backend("torch", path, "cpu", input_size=size, input_width=width)


def test_levels_map_onto_the_ladder_of_sizes() -> None:
    lo, hi = LEVEL_BOUNDS
    ladder = (224, 256, 192)  # any order, the model's own size among them
    assert size_for_level(lo, ladder) == 256  # most work: the model's own size
    assert size_for_level(hi, ladder) == 192  # least: the smallest
    sizes = [size_for_level(v, ladder) for v in np.linspace(lo, hi, 21)]
    assert all(a >= b for a, b in zip(sizes, sizes[1:], strict=False))
    assert set(sizes) == {192, 224, 256}  # every rung is reachable
    for s in ladder:
        assert size_for_level(level_for_size(s, ladder), ladder) == s
    assert size_for_level(0.0, ladder) == 256 and size_for_level(1.0, ladder) == 192  # clamped
    assert size_for_level(hi, (256,)) == 256  # no smaller session: the model's own
    with pytest.raises(ValueError, match="at least one"):
        size_for_level(lo, ())
    with pytest.raises(ValueError, match="not one of"):
        level_for_size(160, ladder)


def test_over_budget_shrinks_whole_frames_and_spare_time_restores_them() -> None:
    ladder = (192, 224, 256)
    ctrl = LatencyBudgetController(whole_budget_config(10.0))
    assert size_for_level(ctrl.threshold, ladder) == 256  # starts at the model's own size
    sizes = []
    for _ in range(40):
        ctrl.update(20.0)  # whole frames twice the budget
        sizes.append(size_for_level(ctrl.threshold, ladder))
    assert sizes[0] == 256 and sizes[-1] == 192
    for _ in range(60):
        ctrl.update(2.0)
    assert size_for_level(ctrl.threshold, ladder) == 256  # never above the model's own
    assert not whole_budget_config(0.0).target_latency_ms  # off


def test_the_cap_picks_the_whole_frames_session_and_tracking_ignores_it(dense_path):
    wholes = [_at(dense_path, 48), _at(dense_path, 32)]
    crop = _at(dense_path, 96)
    est = PoseEstimator(_at(dense_path), track_person=True, confidence_threshold=0.0,
                        crop_backend=crop, whole_backends=wholes)
    assert est.whole_sizes == (32, 48, 64)
    assert [b.info.input_size for b in est.whole_backends] == [32, 48]  # smallest first
    rgb = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    for cap, read in ((0, 64), (64, 64), (200, 64), (48, 48), (40, 32), (16, 32)):
        est.whole_cap = cap
        est.reset_tracking()
        res = est.estimate(rgb)
        assert res.roi is None and res.input_hw == (read, read), cap
        # the joints come back in image pixels whatever size read them
        assert np.all(np.isfinite(res.joints_px))
    est.whole_cap = 32
    tracked = est.estimate(rgb)  # found (threshold 0): a tracking crop, at the crop's size
    assert tracked.roi is not None and tracked.input_hw == (96, 96)
    with pytest.raises(ValueError, match=">= 0"):
        est.whole_cap = -1
    assert len(est.backends) == 4 and len({id(b) for b in est.backends}) == 4


def test_whole_sessions_must_be_the_model_at_a_smaller_square(dense_path, tmp_path):
    own = _at(dense_path)
    other = _save(tmp_path / "other.safetensors", seed=1)
    for bad, why in ((_at(dense_path, 64), "smaller than 64"),
                     (_at(dense_path, 96), "smaller than 64"),
                     (_at(dense_path, 32, 16), "square"),
                     (_at(other, 32), "not the model")):
        with pytest.raises(ValueError, match=why):
            checked_wholes(own, [bad])


def test_whole_sessions_are_opened_as_the_node_opens_them(dense_path, tmp_path):
    """One session per size below the whole frame's, the crop's square reused for its size,
    none for a gated model; when one cannot be opened, those this call opened are closed."""
    opened: list = []

    def open_at(size, width):
        opened.append(_at(dense_path, size, width))
        return opened[-1]

    own, crop = _at(dense_path), _at(dense_path, 48)
    wholes = open_whole_sessions(open_at, own, crop, (48, 32, 0, 64, 96))
    assert [b.info.input_size for b in wholes] == [32, 48]
    assert wholes[1] is crop and len(opened) == 1  # the crop's session, not a second one
    est = PoseEstimator(own, crop_backend=crop, whole_backends=wholes)
    assert len(est.backends) == 3  # whole, crop (= a whole size), the 32-px session
    assert open_whole_sessions(open_at, own, _at(dense_path, 48, 32), (48,))[0] is opened[-1]
    gated = _at(_save(tmp_path / "gated.safetensors", gated=True))
    assert open_whole_sessions(open_at, gated, None, (32, 48)) == []

    closed: list = []

    def failing(size, width):
        if size == 48:
            raise BackendError("no such size")
        b = _at(dense_path, size, width)
        b.close = lambda b=b: closed.append(b)  # type: ignore[method-assign]
        return b

    with pytest.raises(BackendError, match="no such size"):
        open_whole_sessions(failing, own, None, (32, 48))
    assert [b.info.input_size for b in closed] == [32]
