"""Hold a per-frame latency budget by moving the execution-mask threshold.

Why a threshold: the mask units emit a logit per position; raising the decision threshold drops
the least confident positions first, so density — and with the gather-scatter path, latency —
falls smoothly while the positions most likely to be the person are kept. Nothing else in the
network changes, so the knob is safe to turn every frame.

Controller: integral action on the *relative* latency error, in logit space of the threshold,
    logit(p) += gain * clip((latency - target) / target, -max_step_error, max_step_error)
with a dead band of ``tolerance / 2`` around the target (no hunting when inside it) and the
threshold clamped to [min_threshold, max_threshold] (anti-windup: the integrator is the clamped
threshold itself). Latency goes through a running median of the last ``median_frames`` frames,
then an EMA, so one slow frame (GC, scheduler) does not move the threshold at all: on real video
a single 46 ms frame among 12 ms ones had driven the dense path's strip floor from 150 to 21 px
through the EMA alone, and the loop took ~40 frames to come back (``docs/benchmarks.md``, latency
budget); a lasting change passes the median after ``median_frames // 2 + 1`` frames. Relative
error makes the gain independent of the budget's magnitude.

Bounds (why accuracy never collapses, and why the budget never buys compute for nothing): from
the MPJPE-vs-threshold sweep ``python -m sparse_pose_ros.benchmarks.budget sweep``
(results/budget_sweep.json + .png: 200 held-out synthetic frames, checkpoint
models/pose_sparse.safetensors ce26fdb5cb7a, the stride-16 checkpoint shipped then (width 1.0,
7-epoch recipe, silhouette-supervised masks; on the MoveNet-based locator checkpoint the same
rule recommends [0.5, 0.5], results/budget_sweep_sparse_cpu.json, docs/benchmarks.md),
thresholds 0.1 … 0.9), turned into bounds by a stated rule
(``benchmarks.budget.recommend_bounds``: paired per-frame MPJPE differences to the training
boundary 0.5 with 95 % intervals):

* ``max_threshold`` 0.9, the top of the swept grid: MPJPE −2.4 ± 5.0 mm at 0.8 and +1.4 ± 5.3 mm
  at 0.9 (backbone density 0.85 → 0.72), inside the rule's 10 % allowance. Bounds only hold for
  the model they were measured on: the previous checkpoints (da6a23d8ed69, c81c58508be1, width
  0.5) gave 0.8, because at 0.9 their masks started dropping the person (+40.4 ± 8.6 and
  +46.2 ± 10.8 mm). Re-run the sweep for a new checkpoint; it prints the bounds its rule
  recommends and whether they agree with these defaults, and ``test/control`` checks that they
  do for the committed result.
* ``min_threshold`` 0.5 (the training boundary): no threshold below 0.5 is better by the
  rule's margin (0.4: −1.0 ± 1.4 mm, 0.1: +0.7 ± 2.9 mm) while latency rises, so spending a
  generous budget below 0.5 buys nothing (the positions a lower threshold adds were never
  executed in training).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..model.masks import logit


@dataclass
class BudgetConfig:
    """Controller parameters.

    Attributes:
        target_latency_ms: the budget; 0 disables the controller.
        initial_threshold: threshold (probability) used until the first measurement.
        min_threshold, max_threshold: clamp of the threshold (see module docstring).
        gain: logit change per unit relative error per frame.
        tolerance: ±fraction of the target counted as "on budget" (the issue's ±10 %).
        ema: smoothing factor of the latency EMA (weight of the newest frame).
        max_step_error: clip of the relative error per frame (robust to outliers).
        median_frames: the latency the EMA takes is the (lower) median of this many last
            frames (1: each frame's own), so a single outlier never reaches it.
    """

    target_latency_ms: float = 0.0
    initial_threshold: float = 0.5
    min_threshold: float = 0.5
    max_threshold: float = 0.9
    gain: float = 0.6
    tolerance: float = 0.10
    ema: float = 0.3
    max_step_error: float = 1.0
    median_frames: int = 3

    def __post_init__(self) -> None:
        if self.target_latency_ms < 0 or not math.isfinite(self.target_latency_ms):
            raise ValueError(f"target_latency_ms must be >= 0, got {self.target_latency_ms}")
        if not 0.0 < self.min_threshold <= self.initial_threshold <= self.max_threshold < 1.0:
            raise ValueError(
                "need 0 < min_threshold <= initial_threshold <= max_threshold < 1, got "
                f"{self.min_threshold}, {self.initial_threshold}, {self.max_threshold}"
            )
        if self.gain <= 0 or not 0 < self.ema <= 1 or not 0 < self.tolerance < 1:
            raise ValueError("gain must be > 0, ema in (0, 1], tolerance in (0, 1)")
        if int(self.median_frames) < 1:
            raise ValueError(f"median_frames must be >= 1, got {self.median_frames}")


class LatencyBudgetController:
    """Feed it each frame's measured latency; read back the threshold for the next frame."""

    def __init__(self, config: BudgetConfig) -> None:
        self.config = config
        self._logit = logit(config.initial_threshold)
        self._lo = logit(config.min_threshold)
        self._hi = logit(config.max_threshold)
        self.smoothed_ms: float | None = None
        self._recent: deque[float] = deque(maxlen=int(config.median_frames))

    @property
    def enabled(self) -> bool:
        return self.config.target_latency_ms > 0

    @property
    def threshold(self) -> float:
        return 1.0 / (1.0 + math.exp(-self._logit))

    def set_target(self, target_latency_ms: float) -> None:
        """Change the budget at run time (parameter callback); keeps the current threshold."""
        self.config = BudgetConfig(
            **{**self.config.__dict__, "target_latency_ms": float(target_latency_ms),
               "initial_threshold": min(max(self.threshold, self.config.min_threshold),
                                        self.config.max_threshold)}
        )

    def on_budget(self) -> bool:
        """True when the smoothed latency is within ±tolerance of the target."""
        if not self.enabled or self.smoothed_ms is None:
            return False
        t = self.config.target_latency_ms
        return abs(self.smoothed_ms - t) <= self.config.tolerance * t

    def update(self, latency_ms: float) -> float:
        """Account one frame's latency and return the threshold to use next."""
        if not self.enabled or not math.isfinite(latency_ms) or latency_ms < 0:
            return self.threshold
        c = self.config
        self._recent.append(float(latency_ms))
        recent = sorted(self._recent)
        typical = recent[(len(recent) - 1) // 2]  # the lower median: an outlier never counts
        self.smoothed_ms = (
            typical if self.smoothed_ms is None
            else (1 - c.ema) * self.smoothed_ms + c.ema * typical
        )
        err = (self.smoothed_ms - c.target_latency_ms) / c.target_latency_ms
        if abs(err) > c.tolerance / 2:
            step = c.gain * max(-c.max_step_error, min(c.max_step_error, err))
            self._logit = max(self._lo, min(self._hi, self._logit + step))
        return self.threshold


def control_step(
    controller: LatencyBudgetController,
    latency_ms: float,
    applied_threshold: float,
    apply_threshold: Callable[[float], None],
) -> float:
    """One frame of the budget loop: account the frame's latency, apply the next threshold.

    The pose node and the replay benchmark (``benchmarks.budget``) both call this after each
    frame, so what the benchmark shows is what the node does. ``apply_threshold`` (e.g.
    ``backend.set_mask_threshold``) is called only when the threshold changes; with the budget
    off nothing is touched and ``applied_threshold`` (the user's fixed threshold) is returned.

    Returns:
        The threshold now applied to the backend.
    """
    if not controller.enabled:
        return applied_threshold
    threshold = controller.update(latency_ms)
    if threshold != applied_threshold:
        apply_threshold(threshold)
    return threshold


def budget_status(controller: LatencyBudgetController, idle_reason: str | None) -> str:
    """What ``/diagnostics`` says of the budget: "off", "on budget", "adapting", or
    "inactive: <idle_reason>" when the last frame's latency did not depend on the threshold
    (a dense model; a sparse model executing a region it was given), so the loop held still."""
    if not controller.enabled:
        return "off"
    if idle_reason:
        return f"inactive: {idle_reason}"
    return "on budget" if controller.on_budget() else "adapting"
