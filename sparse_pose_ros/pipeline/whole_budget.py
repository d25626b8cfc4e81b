"""The latency budget's knob on whole frames: the input size a whole frame is read at.

Why a second knob beside the strip floor (``pipeline.strip_budget``): a whole frame (the first
of a stream, every frame after one that found nobody, a scene whose people the tracker keeps
losing) reads no strip, so the floor cannot move its cost, and a budget between the tracked
frames' costs then misses every whole frame. Measured on real video (OpenVINO f32, 2 threads,
``docs/benchmarks.md``, latency budget; ``results/budget_replay_real_dense_strip_floor_
contiguous.json``): vtest's small pedestrians, lost and found again, were read whole in 37 of
75 settled frames, at a median 21.2 ms against a 15.5 ms budget, and only 43 % of vtest's
frames were within ±10 % of it (65–79 % with this knob). The whole frame's cost is its
input's area: the same model read at a smaller square (a session per size,
``whole_frame_sizes``; the tracking crop's 224-px session serves as one) is about
(size / 256)² of it.

What it costs: finding a person in a whole frame needs the resolution (held-out real, dense
checkpoint, whole frames, PCK@0.1 against BlazePose / person found: 256 px 0.70 / 93 %, 224
0.58 / 87 %, 192 0.53 / 82 %; ``results/real_eval_full_frame_input_size_*.json``), so the
budget only ever *shrinks* whole frames from the model's own size, and only while they are over
it: the controller starts at the model's own size.

The same integral controller (``control.latency_budget``) drives it, a second instance fed only
by whole frames (their cost curve is not the tracked frames'): its level in
:data:`~sparse_pose_ros.pipeline.strip_budget.LEVEL_BOUNDS` is mapped linearly onto the
ladder of sizes, the lowest level to the model's own size (most work) and the highest to the
smallest (least), as a higher threshold runs less.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..control.latency_budget import BudgetConfig
from .strip_budget import LEVEL_BOUNDS

if TYPE_CHECKING:
    from .estimator import PoseEstimator

#: the node's default ``whole_frame_sizes``: the smaller squares a whole frame may be read at
#: under a budget, beside the model's own size (224 is the tracking crop's session).
WHOLE_FRAME_SIZES: tuple[int, ...] = (192, 224)


def size_for_level(level: float, sizes: Sequence[int]) -> int:
    """The whole-frame input side for a controller level (clamped into :data:`LEVEL_BOUNDS`):
    ``sizes`` (every size the estimator can read a whole frame at, the model's own included)
    sorted, the lowest level giving the largest and the highest the smallest, in equal steps of
    the level."""
    ladder = sorted({int(s) for s in sizes})
    if not ladder:
        raise ValueError("need at least one whole-frame size")
    lo, hi = LEVEL_BOUNDS
    work = (hi - min(max(float(level), lo), hi)) / (hi - lo)  # 1 at lo: the most work
    return ladder[int(round(work * (len(ladder) - 1)))]


def apply_whole_level(estimator: PoseEstimator, level: float) -> None:
    """Set the whole-frame side a controller level gives on ``estimator``, on the ladder of the
    sizes it can read (the node's and the budget replay's one step from level to estimator)."""
    estimator.whole_cap = size_for_level(level, estimator.whole_sizes)


def level_for_size(size: int, sizes: Sequence[int]) -> float:
    """The controller level at the middle of ``size``'s step (ValueError if not a size)."""
    ladder = sorted({int(s) for s in sizes})
    if int(size) not in ladder:
        raise ValueError(f"{size} is not one of the whole-frame sizes {ladder}")
    lo, hi = LEVEL_BOUNDS
    steps = max(1, len(ladder) - 1)
    return hi - ladder.index(int(size)) / steps * (hi - lo)


def whole_budget_config(target_latency_ms: float) -> BudgetConfig:
    """The controller's config for a budget on the whole frame's size, starting at the model's
    own size (the default path); the gain, tolerance and smoothing are the threshold loop's."""
    lo, hi = LEVEL_BOUNDS
    return BudgetConfig(target_latency_ms=float(target_latency_ms), initial_threshold=lo,
                        min_threshold=lo, max_threshold=hi)
