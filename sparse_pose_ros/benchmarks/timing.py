"""Latency statistics and machine facts recorded with every benchmark result."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Mapping

import numpy as np

#: Environment variables that change how the CPU runtimes' threads wait between frames (the
#: sparse kernel's worker pool reads SPARSE_POSE_SPIN_US when it starts; OpenMP/ORT read
#: OMP_WAIT_POLICY): a timing result is only comparable with the values it ran under.
THREAD_WAIT_ENV = ("SPARSE_POSE_SPIN_US", "OMP_WAIT_POLICY")


def thread_wait_env() -> dict[str, str | None]:
    """The :data:`THREAD_WAIT_ENV` values of this process, for a result's record."""
    return {k: os.environ.get(k) for k in THREAD_WAIT_ENV}


def self_cpu_seconds() -> float:
    """User + system CPU seconds this process has used, all its threads together (spinning
    worker threads count: what a runtime costs the machine, not only its caller)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


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
    return summary_ms(times * 1e3)


def summary_ms(ms: np.ndarray) -> dict[str, float]:
    """Median / p95 / mean / min and count of latency samples in ms."""
    return {
        "median_ms": float(np.median(ms)),
        "p95_ms": float(np.percentile(ms, 95)),
        "mean_ms": float(ms.mean()),
        "min_ms": float(ms.min()),
        "reps": int(ms.size),
    }


def time_interleaved(
    fns: Mapping[str, Callable[[], object]], reps: int, warmup: int, block: int = 10,
    settle: int = 3, gap_s: float = 0.05,
    samples: dict[str, list[tuple[float, object]]] | None = None,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """Time several runtimes over the same stretch of wall time, in alternating blocks.

    Why not :func:`time_call` one after the other: on this shared 2-core VM ONNX Runtime's own
    dense latency drifts 2-3.5 ms within a minute, so two runs timed a second apart give a ratio
    that moves by ±30 %. Why not alternate single calls: ONNX Runtime's workers spin after each
    run and take a core from whatever runs next (our backbone measured 2× slower right after an
    ORT call). So each runtime gets blocks of ``settle`` untimed + ``block`` timed back-to-back
    calls, every block starts after ``gap_s`` of idle (both start from sleeping threads), and
    the order of the runtimes is reversed every round, until each has ``reps`` timed calls.
    ``warmup`` untimed calls of each first. Returns :func:`time_call`'s statistics per name,
    plus ``rounds``. ``samples`` (optional) receives per name every timed call as (ms, what the
    call returned), in call order, e.g. to split the times by the frame each call ran on.
    """
    if reps < 1 or warmup < 0 or block < 1 or settle < 0 or gap_s < 0 or not fns:
        raise ValueError(f"need reps, block >= 1 and warmup, settle, gap >= 0, got "
                         f"{reps}, {block}, {warmup}, {settle}, {gap_s}")  # fmt: skip
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    block = min(block, reps)
    rounds = -(-reps // block)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            fn, acc = fns[name], times[name]
            if gap_s:
                time.sleep(gap_s)
            for _ in range(settle):
                fn()
            for _ in range(min(block, reps - len(acc))):
                t0 = time.perf_counter()
                ret = fn()
                acc.append(time.perf_counter() - t0)
                if samples is not None:
                    samples.setdefault(name, []).append((acc[-1] * 1e3, ret))
    return {n: {**summary_ms(np.asarray(times[n]) * 1e3), "rounds": rounds} for n in names}


