"""The budget's knob on a dense model's strips: levels map onto strip margins both ways, the
controller's direction holds (over budget → narrower strips), and the bounds are the
parameter's."""

from __future__ import annotations

import numpy as np
import pytest

from sparse_pose_ros.control.latency_budget import LatencyBudgetController
from sparse_pose_ros.pipeline.roi import STRIP_MARGIN, STRIP_MARGIN_RANGE, RoiConfig
from sparse_pose_ros.pipeline.strip_budget import (
    LEVEL_BOUNDS,
    MARGIN_BOUNDS,
    level_for_margin,
    margin_for_level,
    strip_budget_config,
)


def test_levels_and_margins_map_onto_each_other() -> None:
    lo, hi = LEVEL_BOUNDS
    assert margin_for_level(lo) == pytest.approx(MARGIN_BOUNDS[1])  # most work: widest
    assert margin_for_level(hi) == pytest.approx(MARGIN_BOUNDS[0])  # least: narrowest
    levels = np.linspace(lo, hi, 11)
    margins = [margin_for_level(v) for v in levels]
    assert all(a > b for a, b in zip(margins, margins[1:], strict=False))
    for m in (1.15, 1.2, 1.5, 2.0, 4.0):
        assert margin_for_level(level_for_margin(m)) == pytest.approx(m)
    # outside the bounds: clamped, never a margin the estimator refuses
    assert margin_for_level(0.0) == pytest.approx(MARGIN_BOUNDS[1])
    assert level_for_margin(1.0) == pytest.approx(hi)
    for m in MARGIN_BOUNDS:
        RoiConfig(strip_margin=m)  # valid
    assert MARGIN_BOUNDS[1] == STRIP_MARGIN_RANGE[1]
    assert MARGIN_BOUNDS[0] <= STRIP_MARGIN  # the default is reachable


def test_over_budget_narrows_and_spare_time_widens() -> None:
    over = LatencyBudgetController(strip_budget_config(10.0, STRIP_MARGIN))
    assert margin_for_level(over.threshold) == pytest.approx(STRIP_MARGIN)
    for _ in range(50):
        over.update(20.0)
    assert margin_for_level(over.threshold) == pytest.approx(MARGIN_BOUNDS[0])
    spare = LatencyBudgetController(strip_budget_config(10.0, STRIP_MARGIN))
    widths = []
    for _ in range(10):
        spare.update(5.0)
        widths.append(margin_for_level(spare.threshold))
    assert widths[0] > STRIP_MARGIN and widths[-1] > widths[0]
    assert not strip_budget_config(0.0, 1.5).target_latency_ms  # off
