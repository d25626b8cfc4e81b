"""Latency statistics and machine facts recorded with every benchmark result."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def time_call(
    fn: Callable[[], object], reps: int, warmup: int, interval_s: float = 0.0
) -> dict[str, float]:
    """Median / p95 / mean / min of ``reps`` timed calls after ``warmup`` untimed ones (ms).

    ``interval_s`` > 0 sleeps that long before each timed call (camera pacing, :mod:`.paced`)."""
    if reps < 1 or warmup < 0 or interval_s < 0:
        raise ValueError(
            f"reps must be >= 1, warmup and interval >= 0, got {reps}, {warmup}, {interval_s}"
        )
    for _ in range(warmup):
        fn()
    times = np.empty(reps)
    for i in range(reps):
        if interval_s:
            time.sleep(interval_s)
        t0 = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t0
    ms = times * 1e3
    return {
        "median_ms": float(np.median(ms)),
        "p95_ms": float(np.percentile(ms, 95)),
        "mean_ms": float(ms.mean()),
        "min_ms": float(ms.min()),
        "reps": int(reps),
    }


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (falls back to platform.processor())."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    """SIMD flags that matter for these kernels (AVX2 / AVX-512 / AMX)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))
    except OSError:
        pass
    return []


def machine_info() -> dict[str, Any]:
    import onnxruntime
    import torch

    return {
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }


def load_average() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []
