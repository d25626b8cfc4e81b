"""Rolling statistics for diagnostics: latency percentiles, frame rate, mean density.

A bounded window (not a running mean since start) so diagnostics describe the node *now*, e.g.
after a mask-threshold change, and memory stays constant on a node that runs for weeks.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np


class RollingStats:
    """Thread-safe window of per-frame (finish time, latency, density) samples.

    Args:
        window: number of most recent processed frames kept.
    """

    def __init__(self, window: int = 200) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        self._samples: deque[tuple[float, float, float]] = deque(maxlen=window)
        self._lock = threading.Lock()

    def add(self, finished_s: float, latency_ms: float, density: float) -> None:
        with self._lock:
            self._samples.append((finished_s, latency_ms, density))

    def summary(self) -> dict[str, float]:
        """p50/p95 latency (ms), fps over the window, mean density; zeros when empty."""
        with self._lock:
            samples = list(self._samples)
        if not samples:
            return {"latency_p50_ms": 0.0, "latency_p95_ms": 0.0, "fps": 0.0, "mean_density": 0.0}
        arr = np.asarray(samples, dtype=np.float64)
        span = arr[-1, 0] - arr[0, 0]
        fps = (len(arr) - 1) / span if len(arr) > 1 and span > 0 else 0.0
        return {
            "latency_p50_ms": float(np.percentile(arr[:, 1], 50)),
            "latency_p95_ms": float(np.percentile(arr[:, 1], 95)),
            "fps": float(fps),
            "mean_density": float(arr[:, 2].mean()),
        }
