"""Hold a latency budget with a knob that has only a few settings (strip widths, input sides).

Why not the integral loop (``control.latency_budget``) there: it moves a continuous level, and a
discrete knob turns that level into a handful of settings whose costs lie 15–30 % apart (the
dense path's strips 96 / 128 / 160 / 192 px and the 224 square; whole frames at 192 / 224 /
256). A setting a few per cent under the budget keeps the integrator winding up — each frame's
jitter pushes it past the dead band now and then — until it tips into the next, dearer setting
(+20 %: out of tolerance), is driven back, and winds up again. On real video that limit cycle
cost about a tenth of the settled frames (``docs/benchmarks.md``, latency budget: Pose2Sim at
the 160-px strip, 0.99 of the budget, spent 18 of 75 settled frames on 96, 128 or 192 px).

What this controller does instead: it steps between the knob's settings and moves to a neighbour
only when that neighbour is expected to be *closer* to the budget than the setting it is on, by
:data:`HYSTERESIS` of the budget — so a setting inside the tolerance stays put, and a budget
between two settings settles on one of them instead of hopping across the gap — or, with spare
time, when the dearer neighbour is expected to stay inside the dead band (spare time buys work
that costs nothing: a floor below the person's width, say, reads the same strip). What a
neighbour costs is known from the last time the controller was there, as a *ratio* to the
setting it left (measured back to back, so a machine that slows down or a scene that costs more
overall scales both); a ratio is forgotten after ``forget_frames`` frames *outside the
tolerance* (the person's width, and with it what a strip floor buys, changes, and one ratio from
three frames can be off: on real video a square crop measured at 1.48x the 192-px strip, not
~1.2x, kept vtest's strips at 0.84 of the budget for 50 frames), and a neighbour without one is
tried. The clock runs only on frames that already miss the tolerance, so a setting inside it is
never left to probe. One frame's latency is the lower median of the last ``median_frames``
frames *at this setting*, then the EMA, as in the integral loop, and no move is made before that
many frames at a setting, so one slow frame never moves it.

The interface is the integral loop's (``threshold`` is the current setting's level, ``update``
returns the next one), so :func:`control.latency_budget.control_step`, the node and the budget
replay drive either. The levels come from the knob (``pipeline.strip_budget.floor_levels``,
``pipeline.whole_budget.size_levels``): ascending, a higher level running less work.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import replace

from .latency_budget import BudgetConfig, LatencyBudgetController

#: how much closer to the budget (a share of it) a neighbour must be expected to be before the
#: controller moves: two settings about as far from the budget on either side would otherwise
#: swap places on every measurement's jitter
HYSTERESIS = 0.025

#: frames outside the tolerance after which the measured cost ratio to a neighbouring setting
#: is forgotten and the neighbour may be tried again (2/3 s of misses at 30 Hz)
FORGET_FRAMES = 20


class SteppedBudgetController(LatencyBudgetController):
    """Budget loop over a knob's discrete settings (module docstring). Feed it each frame's
    latency; read back the level of the setting for the next frame."""

    def __init__(self, config: BudgetConfig, levels: Sequence[float] = (),
                 forget_frames: int = FORGET_FRAMES) -> None:
        super().__init__(config)
        if int(forget_frames) < 1:
            raise ValueError(f"forget_frames must be >= 1, got {forget_frames}")
        self.forget_frames = int(forget_frames)
        self._levels: list[float] = []
        self._index = 0
        self._misses = 0  # frames fed outside the tolerance: the clock the ratios age on
        self._visit = 0  # frames at the current setting since the last move
        #: (setting, its cost, the input it ran) when last moved
        self._left: tuple[int, float, Hashable] | None = None
        self._ran: Hashable = None  # the input the last frame ran (``update``'s ``ran``)
        self._ratios: dict[tuple[int, int], tuple[float, int]] = {}
        self.set_levels(levels)

    @property
    def levels(self) -> tuple[float, ...]:
        """Every setting's level, ascending (more level: less work)."""
        return tuple(self._levels)

    @property
    def index(self) -> int:
        """The current setting's position in :attr:`levels`."""
        return self._index

    @property
    def threshold(self) -> float:
        """The current setting's level (the initial level until levels are set)."""
        if not self._levels:
            return self.config.initial_threshold
        return self._levels[self._index]

    def set_levels(self, levels: Sequence[float]) -> None:
        """The knob's settings (e.g. once the sessions are open, or after a reload), those
        inside the config's ``[min_threshold, max_threshold]``: start at the one nearest the
        current level; what was measured of the old ones is dropped."""
        current = self.threshold
        given = sorted({float(v) for v in levels})
        if any(not math.isfinite(v) for v in given):
            raise ValueError(f"levels must be finite, got {list(levels)}")
        lo, hi = self.config.min_threshold - 1e-9, self.config.max_threshold + 1e-9
        new = [v for v in given if lo <= v <= hi]  # the config's bounds hold here too
        if given and not new:
            raise ValueError(f"no level of {given} is inside the bounds "
                             f"[{self.config.min_threshold}, {self.config.max_threshold}]")
        self._levels = new
        self._index = (min(range(len(new)), key=lambda i: abs(new[i] - current))
                       if new else 0)
        self._restart_visit()
        self._left = None
        self._ratios.clear()

    def set_target(self, target_latency_ms: float) -> None:
        """Change the budget at run time; keeps the current setting and what was measured."""
        self.config = replace(self.config, target_latency_ms=float(target_latency_ms))

    def predicted_ms(self, index: int) -> float | None:
        """What setting ``index`` is expected to cost now: the current cost times the ratio
        last measured between the two, if that is recent; else None (unknown)."""
        if index == self._index:
            return self.smoothed_ms
        known = self._ratios.get((self._index, index))
        if known is None or self.smoothed_ms is None:
            return None
        ratio, stamp = known
        return self.smoothed_ms * ratio if self._misses - stamp <= self.forget_frames else None

    def update(self, latency_ms: float, ran: Hashable = None) -> float:
        """Account one frame's latency at the current setting and return the next level.

        ``ran``: what the frame's network actually read (e.g. its input's shape), if the knob
        does not alone decide it: a move after which the same input ran teaches no ratio (a
        strip floor raised under a person who needs a wider strip anyway costs nothing, and a
        ratio of 1 learnt there would later keep the floor from coming down once the floor,
        not the person, sets the strip)."""
        if (not self.enabled or not self._levels or not math.isfinite(latency_ms)
                or latency_ms < 0):
            return self.threshold
        c = self.config
        self._ran = ran
        self._visit += 1
        self._recent.append(float(latency_ms))
        recent = sorted(self._recent)
        typical = recent[(len(recent) - 1) // 2]  # the lower median: an outlier never counts
        if self._visit <= c.median_frames or self.smoothed_ms is None:
            self.smoothed_ms = typical  # this setting's own frames only
        else:
            self.smoothed_ms = (1 - c.ema) * self.smoothed_ms + c.ema * typical
        target = c.target_latency_ms
        err = (self.smoothed_ms - target) / target
        self._misses += abs(err) > c.tolerance
        if self._visit < c.median_frames:
            return self.threshold
        if self._visit == c.median_frames and self._left is not None:
            came_from, cost, ran_there = self._left  # measured back to back: their ratio
            if cost > 0 and self.smoothed_ms > 0 and (ran is None or ran != ran_there):
                ratio = self.smoothed_ms / cost
                self._ratios[(came_from, self._index)] = (ratio, self._misses)
                self._ratios[(self._index, came_from)] = (1.0 / ratio, self._misses)
        if abs(err) <= c.tolerance / 2:
            return self.threshold
        step = 1 if err > 0 else -1  # over budget: a higher level, less work
        nxt = self._index + step
        if not 0 <= nxt < len(self._levels):
            return self.threshold
        expected = self.predicted_ms(nxt)
        if (expected is None
                or abs(expected - target) < abs(self.smoothed_ms - target) - HYSTERESIS * target
                or (step < 0 and expected <= target * (1 + c.tolerance / 2))):
            self._left = (self._index, self.smoothed_ms, self._ran)
            self._index = nxt
            self._restart_visit()
        return self.threshold

    def _restart_visit(self) -> None:
        self._visit = 0
        self._recent.clear()
