"""The budget's knob on a dense model's strips: levels map onto a floor under the strip width
both ways, the controller's direction holds (over budget → a lower floor), and the estimator
reads the narrowest strip above the floor that still holds the person at its margin."""

from __future__ import annotations

import numpy as np
import pytest

from sparse_pose_ros.control.latency_budget import LatencyBudgetController
from sparse_pose_ros.pipeline.strip_budget import (
    LEVEL_BOUNDS,
    floor_decides,
    floor_for_level,
    level_for_floor,
    strip_budget_config,
)


def test_levels_and_floors_map_onto_each_other() -> None:
    lo, hi = LEVEL_BOUNDS
    assert floor_for_level(lo) == 1.0  # most work: the square crop
    assert floor_for_level(hi) == 0.0  # least: the default path's own choice
    floors = [floor_for_level(v) for v in np.linspace(lo, hi, 11)]
    assert all(a > b for a, b in zip(floors, floors[1:], strict=False))
    for f in (0.0, 0.3, 0.75, 1.0):
        assert floor_for_level(level_for_floor(f)) == pytest.approx(f)
    assert floor_for_level(0.0) == 1.0 and floor_for_level(1.0) == 0.0  # clamped
    assert level_for_floor(2.0) == pytest.approx(lo)


def test_spare_time_raises_the_floor_and_over_budget_lowers_it() -> None:
    ctrl = LatencyBudgetController(strip_budget_config(10.0))
    assert floor_for_level(ctrl.threshold) == 0.0  # starts as the default path
    floors = []
    for _ in range(10):
        ctrl.update(5.0)
        floors.append(floor_for_level(ctrl.threshold))
    assert 0.0 < floors[0] < floors[-1] <= 1.0
    for _ in range(60):
        ctrl.update(20.0)
    assert floor_for_level(ctrl.threshold) == 0.0
    assert not strip_budget_config(0.0).target_latency_ms  # off


def test_only_floor_bound_or_cheap_frames_move_the_floor() -> None:
    """Over budget, a frame whose person set the strip says nothing about the floor."""
    from types import SimpleNamespace

    def frame(tracked: bool, bound: bool) -> SimpleNamespace:
        return SimpleNamespace(roi=(0, 0, 100) if tracked else None, strip_floor_bound=bound)

    assert floor_decides(frame(True, True), 20.0, 10.0)  # the floor set it: lower it
    assert not floor_decides(frame(True, False), 20.0, 10.0)  # the person did: hold
    assert floor_decides(frame(True, False), 5.0, 10.0)  # spare time: a higher floor adds work
    assert not floor_decides(frame(False, True), 5.0, 10.0)  # a whole frame reads no strip
