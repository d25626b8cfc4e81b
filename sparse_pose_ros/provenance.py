"""Where a measurement was taken: CPU model and SIMD flags, core count, versions, load, steal.

One module for every result file's ``machine`` block (benchmarks, evaluation, training), so the
key names are the same everywhere; at the bottom of the package so any layer may import it.
"""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np


def cpuinfo_field(key: str) -> str | None:
    """The first /proc/cpuinfo line's value for ``key`` (None where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (falls back to platform.processor())."""
    return cpuinfo_field("model name") or platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    """SIMD flags that matter for these kernels (AVX2 / AVX-512 / AMX)."""
    flags = (cpuinfo_field("flags") or "").split()
    return sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))


def cpu_vendor() -> str:
    """``vendor_id`` from /proc/cpuinfo ("GenuineIntel", "AuthenticAMD"; "" where unknown)."""
    return cpuinfo_field("vendor_id") or ""


def machine_info() -> dict[str, Any]:
    """The ``machine`` block of a result file (versions of torch / onnxruntime when installed)."""
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "load_average": load_average(),
    }
    for name in ("torch", "onnxruntime"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            info[name] = None
    return info


def load_average() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def steal_seconds() -> float | None:
    """CPU time the hypervisor gave to other guests so far (all CPUs, /proc/stat "steal").

    Recorded before and after a run: on a shared VM it says how much of a run's noise came
    from outside the machine. None where the kernel does not report it."""
    try:
        with open("/proc/stat", encoding="utf-8") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None
