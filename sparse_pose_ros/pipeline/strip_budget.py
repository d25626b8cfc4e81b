"""The latency budget's knob on a dense model that reads strips: a floor under the strip width.

Why a second knob: a dense model has no mask threshold, so on the node's default path (the
dense checkpoint, tracking crops read through strips, ``pipeline.roi.strip_fits``) the
threshold loop has nothing to move. What sets that path's cost per tracked frame is the input's
width: the narrowest of ``crop_input_widths`` that holds the person's joint box ×
``strip_margin``, else the square crop. Measured on held-out real video (crops 224, strips
64–192; ``docs/benchmarks.md``, latency budget): 96 px 10.0 ms, 128 px 11.8, 160 px 13.4,
192 px 15.7, the 224 square 17.5 — about 2× from the narrowest strips to the square, where
spare time buys accuracy (square crops at 224: MPJPE 64 mm against the default strips' 70).

The knob is a *floor*: strips narrower than ``floor × crop side`` are skipped
(``PoseEstimator.strip_floor``), so a frame reads the narrowest strip that is both above the
floor and holds the person at the user's ``strip_margin``. Why a floor and not the margin
itself (tried first, git history): the margin scales the person's width, which changes with
their arms from frame to frame, so each frame's strip — and latency — jumped between widths
(21–24 % of frames within ±10 % of the budget); a floor above the person's width pins the
width, and so the latency, while the person is narrower than it. And the budget never reads a
strip narrower than the margin allows: a tight budget cannot cut the person.

The same integral controller (``control.latency_budget``) drives it: its "threshold" becomes a
*level* in [:data:`LEVEL_BOUNDS`], mapped linearly onto the floor, the highest level to no
floor (the default path's own choice, least work) and the lowest to the square crop (most
work), as a higher threshold runs less. Only frames whose cost the floor decides move it
(:func:`floor_decides`): a whole frame (the first, and after a lost person) reads no strip, and
whole frames have their own knob and controller (``pipeline.whole_budget``); and a tracked frame
over the budget whose person needs a wider strip than the floor reads that strip whatever the
floor is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..control.latency_budget import BudgetConfig

if TYPE_CHECKING:
    from .estimator import PoseEstimator, PoseResult

#: the controller's level range (a probability-like value, as its threshold): lowest level =
#: floor 1 (the square crop, most work), highest = no floor (least).
LEVEL_BOUNDS: tuple[float, float] = (0.05, 0.95)


def floor_for_level(level: float) -> float:
    """The strip floor, as a fraction of the crop's side in [0, 1], for a controller level
    (clamped into :data:`LEVEL_BOUNDS`)."""
    lo, hi = LEVEL_BOUNDS
    floor = (hi - min(max(float(level), lo), hi)) / (hi - lo)
    return 0.0 if floor < 1e-9 else min(floor, 1.0)  # the controller's logit round trip


def apply_strip_level(estimator: PoseEstimator, level: float) -> None:
    """Set the floor a controller level gives on ``estimator`` (the node's and the budget
    replay's one step from level to estimator)."""
    estimator.strip_floor = floor_for_level(level)


def level_for_floor(floor: float) -> float:
    """The controller level that gives ``floor`` (clamped into [0, 1])."""
    lo, hi = LEVEL_BOUNDS
    return hi - min(max(float(floor), 0.0), 1.0) * (hi - lo)


def floor_decides(result: PoseResult, latency_ms: float, target_ms: float) -> bool:
    """Whether a tracked frame's latency may move the floor: when the floor set the frame's
    width (``PoseResult.strip_floor_bound``: a narrower strip held the person), or when the
    frame is under the budget (a higher floor adds work). Not a frame over the budget whose
    person is wider than the floor: a lower floor would read the same strip, and on real video
    the loop wound the floor down through such a stretch (arms out: the 192-px strip at 1.2× the
    budget whatever the floor), then read 96-128-px strips at 0.7-0.9× once the arms came down
    (``docs/benchmarks.md``, latency budget)."""
    return result.roi is not None and (result.strip_floor_bound or latency_ms < target_ms)


def strip_budget_config(target_latency_ms: float) -> BudgetConfig:
    """The controller's config for a budget on the strip floor, starting with no floor (the
    default path); the gain, tolerance and smoothing are the threshold loop's."""
    lo, hi = LEVEL_BOUNDS
    return BudgetConfig(target_latency_ms=float(target_latency_ms), initial_threshold=hi,
                        min_threshold=lo, max_threshold=hi)
