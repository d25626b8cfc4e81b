"""The budget controller against a simulated plant: latency = base + slope * density(threshold).

The plant mirrors what the benchmark measured qualitatively (latency linear in density, density
falling with the threshold at a scene-dependent rate); the test checks the control law, which is
what this module owns.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from sparse_pose_ros.control.latency_budget import (
    BudgetConfig,
    LatencyBudgetController,
    control_step,
)


def _density(threshold: float, person_logit: float) -> float:
    # fraction of positions whose logit exceeds logit(threshold); logits ~ logistic around the
    # scene's "person" level, so a bigger person (higher level) gives higher density.
    t = math.log(threshold / (1 - threshold))
    return 1.0 / (1.0 + math.exp(-(person_logit - t) * 1.5))


def _run(ctrl: LatencyBudgetController, frames: int, person_logit: float, rng: random.Random,
         base: float = 8.0, slope: float = 30.0) -> list[float]:
    lat = []
    for _ in range(frames):
        d = _density(ctrl.threshold, person_logit)
        latency = (base + slope * d) * (1 + rng.uniform(-0.03, 0.03))
        lat.append(latency)
        ctrl.update(latency)
    return lat


def test_holds_budget_through_scene_changes() -> None:
    rng = random.Random(0)
    # explicit bounds: this checks the control law, whatever the defaults are
    ctrl = LatencyBudgetController(BudgetConfig(target_latency_ms=20.0, min_threshold=0.2,
                                                max_threshold=0.8))
    for scene in (-0.5, 0.8, 0.2):  # person small -> large -> medium
        lat = _run(ctrl, 80, scene, rng)
        settled = lat[-30:]
        mean = sum(settled) / len(settled)
        assert abs(mean - 20.0) <= 2.0, (scene, mean)
        assert ctrl.on_budget()


def test_threshold_stays_in_bounds_when_budget_unreachable() -> None:
    rng = random.Random(1)
    cfg = BudgetConfig(target_latency_ms=1.0)  # impossible budget
    ctrl = LatencyBudgetController(cfg)
    _run(ctrl, 100, 1.0, rng)
    assert ctrl.threshold == pytest.approx(cfg.max_threshold, abs=1e-9)
    ctrl.set_target(1000.0)  # very generous: threshold goes to the lower bound, never below
    _run(ctrl, 200, 1.0, rng)
    assert ctrl.threshold == pytest.approx(cfg.min_threshold, abs=1e-9)


def test_default_bounds_are_the_swept_ones() -> None:
    """The defaults are what the committed sweep's rule recommends (module docstring)."""
    sweep = Path(__file__).resolve().parents[2] / "results" / "budget_sweep.json"
    if not sweep.is_file():
        pytest.skip(f"{sweep} not present (python -m sparse_pose_ros.benchmarks.budget sweep)")
    bounds = json.loads(sweep.read_text())["bounds"]
    cfg = BudgetConfig()
    assert (cfg.min_threshold, cfg.max_threshold) == (
        bounds["min_threshold"], bounds["max_threshold"])


def test_disabled_controller_never_moves() -> None:
    ctrl = LatencyBudgetController(BudgetConfig(target_latency_ms=0.0, initial_threshold=0.6))
    for lat in (1.0, 100.0, 1e6):
        assert ctrl.update(lat) == pytest.approx(0.6)
    assert not ctrl.on_budget()


def test_outliers_and_bad_values_are_ignored_or_clipped() -> None:
    ctrl = LatencyBudgetController(BudgetConfig(target_latency_ms=20.0))
    before = ctrl.threshold
    assert ctrl.update(float("nan")) == before
    assert ctrl.update(-5.0) == before
    ctrl.update(1e9)  # one huge outlier moves the threshold by at most gain * max_step_error
    assert math.log(ctrl.threshold / (1 - ctrl.threshold)) <= 0.6 + 1e-9


def test_a_single_slow_frame_never_moves_the_threshold() -> None:
    """The running median keeps one outlier (GC, scheduler) out of the EMA entirely; a lasting
    change still moves the threshold once it fills half the window."""
    ctrl = LatencyBudgetController(BudgetConfig(target_latency_ms=20.0))
    for _ in range(5):
        ctrl.update(20.0)
    before = ctrl.threshold
    ctrl.update(80.0)  # one frame 4x the budget
    for _ in range(10):
        ctrl.update(20.0)
    assert ctrl.threshold == before and ctrl.on_budget()
    ctrl.update(40.0)
    assert ctrl.threshold == before  # one slow frame: still nothing
    ctrl.update(40.0)
    assert ctrl.threshold > before  # two in a row: the scene changed
    # without the median (1 frame) the same single outlier moves it
    raw = LatencyBudgetController(BudgetConfig(target_latency_ms=20.0, median_frames=1))
    for _ in range(5):
        raw.update(20.0)
    start = raw.threshold
    raw.update(80.0)
    assert raw.threshold > start


@pytest.mark.parametrize(
    "kwargs",
    [
        {"target_latency_ms": -1.0},
        {"target_latency_ms": float("inf")},
        {"min_threshold": 0.0},
        {"max_threshold": 1.0},
        {"initial_threshold": 0.95},
        {"initial_threshold": 0.3, "min_threshold": 0.4},
        {"gain": 0.0},
        {"median_frames": 0},
    ],
)
def test_bad_parameters_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        BudgetConfig(**kwargs)


def test_control_step_applies_only_changes_and_nothing_when_off() -> None:
    applied: list[float] = []
    ctrl = LatencyBudgetController(BudgetConfig(target_latency_ms=10.0))
    t = control_step(ctrl, 30.0, ctrl.threshold, applied.append)  # over budget: threshold up
    assert t > 0.5 and applied == [t]
    t2 = control_step(ctrl, 10.0, t, applied.append)  # EMA still over budget: up again
    t3 = control_step(ctrl, 10.0, t2, applied.append)
    assert t3 >= t2 > t and applied[-1] == t3
    # inside the dead band the threshold does not move and the backend is not touched
    steady = LatencyBudgetController(BudgetConfig(target_latency_ms=10.0, ema=1.0))
    calls: list[float] = []
    assert control_step(steady, 10.2, steady.threshold, calls.append) == steady.threshold
    assert calls == []
    off = LatencyBudgetController(BudgetConfig(target_latency_ms=0.0))
    assert control_step(off, 1e6, 0.37, calls.append) == 0.37  # the user's fixed threshold
    assert calls == []


def test_budget_status_says_when_the_threshold_cannot_act():
    from sparse_pose_ros.control.latency_budget import budget_status

    off = LatencyBudgetController(BudgetConfig(target_latency_ms=0.0))
    assert budget_status(off, "dense model") == "off"
    on = LatencyBudgetController(BudgetConfig(target_latency_ms=10.0))
    assert budget_status(on, None) == "adapting"  # nothing measured yet
    on.update(10.0)
    assert budget_status(on, None) == "on budget"
    assert budget_status(on, "dense model") == "inactive: dense model"
