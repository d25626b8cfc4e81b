"""The latency budget's knob on a dense model that reads strips: the strip margin.

Why a second knob: a dense model has no mask threshold, so on the node's default path (the
dense checkpoint, tracking crops read through strips, ``pipeline.roi.strip_fits``) the
threshold loop has nothing to move. What sets that path's cost per tracked frame is the strip's
width — the narrowest of ``crop_input_widths`` that holds the person's joint box × the margin,
else the square crop. Measured on the held-out real frames (crops 224, strips 64–192,
``results/real_eval_strip_margin/``, ``docs/network.md`` §2d): margin 1.15 runs 0.38 of a
whole-frame pass (MPJPE 73 mm), 1.2 0.41 (70), 1.3 0.45 (66), 1.5 0.51 (67), square crops 0.77
(64) — about a 2× range of the network's cost, where spare time buys accuracy and a tight
budget takes it back.

The same integral controller (``control.latency_budget``) drives it: its "threshold" becomes a
*level* in [:data:`LEVEL_BOUNDS`], mapped linearly onto the margin, the highest level to the
narrowest margin (as a higher threshold runs less). Bounds:

* narrowest :data:`MARGIN_BOUNDS` [0] = 1.15, the lowest margin measured that kept the person
  (found 99.2 %); below it strips start to cut arms (Sports2D PCK@0.1 0.775 at 1.15 against
  0.809 at 1.2 already).
* widest :data:`MARGIN_BOUNDS` [1] = 4.0, the parameter's maximum: almost every person then
  takes the square crop, the most accurate setting measured.

Only tracked frames say anything about the margin: a whole frame (the first, and after a lost
person) reads no strip, so the node and the replay benchmark leave the controller alone there.
"""

from __future__ import annotations

from ..control.latency_budget import BudgetConfig
from .roi import STRIP_MARGIN_RANGE

#: (narrowest, widest) strip margin the budget may set.
MARGIN_BOUNDS: tuple[float, float] = (1.15, float(STRIP_MARGIN_RANGE[1]))
#: the controller's level range (a probability-like value, as its threshold): lowest level =
#: widest margin (most work), highest = narrowest.
LEVEL_BOUNDS: tuple[float, float] = (0.05, 0.95)


def margin_for_level(level: float) -> float:
    """The strip margin for a controller level (clamped into :data:`LEVEL_BOUNDS`)."""
    lo, hi = LEVEL_BOUNDS
    t = (min(max(float(level), lo), hi) - lo) / (hi - lo)
    narrow, wide = MARGIN_BOUNDS
    return wide + t * (narrow - wide)


def level_for_margin(margin: float) -> float:
    """The controller level that gives ``margin`` (clamped into :data:`MARGIN_BOUNDS`)."""
    narrow, wide = MARGIN_BOUNDS
    t = (wide - min(max(float(margin), narrow), wide)) / (wide - narrow)
    lo, hi = LEVEL_BOUNDS
    return lo + t * (hi - lo)


def strip_budget_config(target_latency_ms: float, start_margin: float) -> BudgetConfig:
    """The controller's config for a budget on the strip margin, starting at ``start_margin``
    (the node's ``strip_margin``); the gain, tolerance and smoothing are the threshold loop's."""
    lo, hi = LEVEL_BOUNDS
    return BudgetConfig(target_latency_ms=float(target_latency_ms),
                        initial_threshold=level_for_margin(start_margin),
                        min_threshold=lo, max_threshold=hi)
