"""Rolling statistics for diagnostics: latency percentiles, frame rate, mean density.

A bounded window (not a running mean since start) so diagnostics describe the node *now*, e.g.
after a mask-threshold change, and memory stays constant on a node that runs for weeks.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping

import numpy as np


class RollingStats:
    """Thread-safe window of per-frame (finish time, latency, density, stage times) samples.

    Stage times (``add(..., stages=...)``) say where a frame's latency went — e.g. waiting
    for the worker, the network, publishing — so a user can tell the model's cost from the
    node's; each named stage gets a ``<name>_p50_ms`` in the summary.

    Args:
        window: number of most recent processed frames kept.
    """

    def __init__(self, window: int = 200) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        self._samples: deque[tuple[float, float, float]] = deque(maxlen=window)
        self._stages: deque[dict[str, float]] = deque(maxlen=window)
        self._lock = threading.Lock()

    def add(self, finished_s: float, latency_ms: float, density: float,
            stages: Mapping[str, float] | None = None) -> None:
        with self._lock:
            self._samples.append((finished_s, latency_ms, density))
            self._stages.append(dict(stages or {}))

    def summary(self) -> dict[str, float]:
        """p50/p95 latency (ms), fps over the window, mean density, p50 of each stage every
        sample in the window has; zeros when empty."""
        with self._lock:
            samples = list(self._samples)
            stages = list(self._stages)
        if not samples:
            return {"latency_p50_ms": 0.0, "latency_p95_ms": 0.0, "fps": 0.0, "mean_density": 0.0}
        arr = np.asarray(samples, dtype=np.float64)
        span = arr[-1, 0] - arr[0, 0]
        fps = (len(arr) - 1) / span if len(arr) > 1 and span > 0 else 0.0
        out = {
            "latency_p50_ms": float(np.percentile(arr[:, 1], 50)),
            "latency_p95_ms": float(np.percentile(arr[:, 1], 95)),
            "fps": float(fps),
            "mean_density": float(arr[:, 2].mean()),
        }
        names = set(stages[0]).intersection(*stages[1:]) if stages else set()
        for name in sorted(names):
            out[f"{name}_p50_ms"] = float(np.median([st[name] for st in stages]))
        return out


#: Images below this fraction of the camera_info rate count as a transport loss (a camera driver
#: publishes one camera_info per image, so the ratio is the fraction of images that arrived).
#: 0.6 flags a 50 % loss reliably despite window edges and jitter; a busy worker does not count
#: here (those frames did arrive).
LOSS_WARN_RATIO = 0.6


class ArrivalRates:
    """Arrival rates of images and camera_info over the last ``window_s`` seconds.

    Why: camera_info is small and arrives even when a transport cannot carry camera-sized
    images (Fast DDS' default shared-memory segment, UDP fragment loss), so comparing the two is
    the one loss signal the subscriber can see without knowing the publisher's count.

    Args:
        window_s: sliding window of arrival times; also bounds the detection delay.
        min_infos: camera_info arrivals needed in the window before a loss verdict is given.
    """

    def __init__(self, window_s: float = 3.0, min_infos: int = 4) -> None:
        if window_s <= 0 or min_infos < 1:
            raise ValueError(f"need window_s > 0 and min_infos >= 1, got {window_s}, {min_infos}")
        self.window_s = float(window_s)
        self.min_infos = int(min_infos)
        self._images: deque[float] = deque()
        self._infos: deque[float] = deque()
        self._start: float | None = None
        self._lock = threading.Lock()

    def image(self, t: float) -> None:
        self._add(self._images, t)

    def camera_info(self, t: float) -> None:
        self._add(self._infos, t)

    def _add(self, q: deque[float], t: float) -> None:
        with self._lock:
            if self._start is None:
                self._start = t
            q.append(t)
            self._trim(t)

    def _trim(self, now: float) -> None:
        for q in (self._images, self._infos):
            while q and q[0] < now - self.window_s:
                q.popleft()

    def summary(self, now: float) -> dict[str, float | None]:
        """Rates (Hz) over the window and, once ``min_infos`` camera_infos are in it, the ratio
        images / camera_info (None before: no verdict from too few samples)."""
        with self._lock:
            self._trim(now)
            n_img, n_info = len(self._images), len(self._infos)
            span = self.window_s if self._start is None else min(self.window_s,
                                                                 max(now - self._start, 1e-3))
        ratio = n_img / n_info if n_info >= self.min_infos else None
        return {"image_rate_hz": n_img / span, "camera_info_rate_hz": n_info / span,
                "image_to_camera_info_ratio": ratio}

    def loss_warning(self, now: float) -> str | None:
        """A sentence when images arrive far slower than their camera_info, else None."""
        s = self.summary(now)
        ratio = s["image_to_camera_info_ratio"]
        if ratio is None or ratio >= LOSS_WARN_RATIO:
            return None
        return (f"images arrive at {s['image_rate_hz']:.1f} Hz but camera_info at "
                f"{s['camera_info_rate_hz']:.1f} Hz: about {100 * (1 - min(ratio, 1.0)):.0f} % of "
                "camera frames are lost before this node")
