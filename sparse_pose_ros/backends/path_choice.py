"""Sparse or dense per frame, from the start-up calibration *and* live timings.

Why live: sparse-cpu's start-up calibration (``SparseCpuBackend.calibrate``) times both paths
once, a few milliseconds each. On a machine that is busy at that moment (another process
starting, a compile) one measurement can be off by several times and the verdict sticks for the
life of the node; one start under load chose "dense always". Here the calibration is only the
prior: every frame's own time is recorded for the path it ran on, the path not in use is timed
again on one frame in ``probe_every`` (a bounded cost: at most that share of frames runs on the
slower path), and once both paths have ``min_samples`` recent timings the crossover follows their
medians. The two paths give the same result (masked-dense semantics), so the choice only moves
time, never output.

Model: the dense path's time does not depend on the executed-MAC fraction f; the sparse path's
is close to linear in f, t_s(f) = c + slope·f. The slope is the calibration's (live frames
barely move f, so they cannot measure it); the intercept c and the dense time come from the
medians of recent frames. A calibration slope that is not positive (a noisy measurement) is
replaced by 0: the medians are then compared directly.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

SPARSE, DENSE = "sparse", "dense"
#: Crossover meaning "sparse at every fraction". Not 1.0: a gated model with every position
#: active executes slightly more than the dense MACs (its mask units), f > 1, and such frames
#: must still run sparse when sparse is the faster path.
ALWAYS_SPARSE = 2.0


@dataclass(frozen=True)
class Calibration:
    """Start-up timings (ms): the dense path, and the sparse path at two fractions."""

    dense_ms: float
    f_lo: float
    sparse_lo_ms: float
    f_hi: float
    sparse_hi_ms: float

    @property
    def slope(self) -> float:
        if self.f_hi <= self.f_lo:
            return 0.0
        return max((self.sparse_hi_ms - self.sparse_lo_ms) / (self.f_hi - self.f_lo), 0.0)

    def crossover(self) -> float:
        return _crossover(self.dense_ms, self.sparse_lo_ms - self.slope * self.f_lo, self.slope)


def _crossover(dense_ms: float, intercept_ms: float, slope: float) -> float:
    """Executed-MAC fraction at and below which the sparse path is not slower, in
    [0, ALWAYS_SPARSE]."""
    if slope <= 0.0:
        return ALWAYS_SPARSE if intercept_ms <= dense_ms else 0.0
    return float(min(max((dense_ms - intercept_ms) / slope, 0.0), ALWAYS_SPARSE))


class PathChooser:
    """See the module docstring. Not thread-safe for writes (the inference thread owns it);
    :meth:`summary` may be read from another thread.

    Args:
        calibration: start-up timings (the prior).
        probe_every: the path not in use runs once every this many frames.
        window: recent timings kept per path.
        min_samples: live timings per path before they replace the prior.
    """

    def __init__(self, calibration: Calibration, probe_every: int = 30, window: int = 9,
                 min_samples: int = 3) -> None:
        if probe_every < 2 or window < 1 or not 1 <= min_samples <= window:
            raise ValueError(f"bad probe_every={probe_every}, window={window}, "
                             f"min_samples={min_samples}")
        self.calibration = calibration
        self.probe_every = probe_every
        self.min_samples = min_samples
        self._window = window
        self.prior_crossover = calibration.crossover()
        self.reset(self.prior_crossover)

    def reset(self, crossover: float) -> None:
        """Forget live timings and decide by ``crossover`` until new ones arrive."""
        self.prior_crossover = float(min(max(crossover, 0.0), ALWAYS_SPARSE))
        self._times: dict[str, deque[tuple[float, float]]] = {
            SPARSE: deque(maxlen=self._window), DENSE: deque(maxlen=self._window)}
        self._since = {SPARSE: 0, DENSE: 0}
        self.crossover = self.prior_crossover
        self.frames = {SPARSE: 0, DENSE: 0}
        self.probes = 0
        self.switches = 0
        self._last: str | None = None

    def preferred(self, fraction: float | None) -> str:
        """The faster path at ``fraction`` by the current crossover (None: no fraction measured
        yet, so sparse, which measures it)."""
        return SPARSE if fraction is None or fraction <= self.crossover else DENSE

    def choose(self, fraction: float | None) -> str:
        """The path for the next frame: :meth:`preferred`, or the other one when it is due for
        a probe."""
        preferred = self.preferred(fraction)
        other = DENSE if preferred == SPARSE else SPARSE
        if self._since[other] + 1 >= self.probe_every:
            self.probes += 1
            return other
        return preferred

    def observe(self, path: str, fraction: float, ms: float) -> None:
        """Record one frame's time on ``path`` at executed-MAC fraction ``fraction``."""
        other = DENSE if path == SPARSE else SPARSE
        self._times[path].append((fraction, ms))
        self._since[path] = 0
        self._since[other] += 1
        self.frames[path] += 1
        if self._last is not None and path != self._last:
            self.switches += 1
        self._last = path
        self.crossover = self._live_crossover()

    def _live_crossover(self) -> float:
        sparse, dense = self._times[SPARSE], self._times[DENSE]
        if len(sparse) < self.min_samples or len(dense) < self.min_samples:
            return self.prior_crossover
        slope = self.calibration.slope
        dense_ms = float(np.median([t for _, t in dense]))
        intercept = float(np.median([t - slope * f for f, t in sparse]))
        return _crossover(dense_ms, intercept, slope)

    def summary(self) -> dict[str, object]:
        """Values for /diagnostics: the crossover now and at start-up, recent medians, shares."""
        sparse, dense = list(self._times[SPARSE]), list(self._times[DENSE])
        total = sum(self.frames.values())
        return {
            "path_crossover": round(self.crossover, 3),
            "path_crossover_calibrated": round(self.prior_crossover, 3),
            "path_sparse_ms": round(float(np.median([t for _, t in sparse])), 3) if sparse else "",
            "path_dense_ms": round(float(np.median([t for _, t in dense])), 3) if dense else "",
            "path_sparse_share": round(self.frames[SPARSE] / total, 3) if total else "",
            "path_probes": self.probes,
            "path_live": len(sparse) >= self.min_samples and len(dense) >= self.min_samples,
        }
