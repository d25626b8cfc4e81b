"""Dense CPU runtimes side by side on one checkpoint: onnxruntime (threads sleeping or spinning
between operators) and OpenVINO (f32, bf16), back to back and paced like a camera.

Why: the rules measure every claim against the *fastest* dense runtime on the machine, and the
node's latency is set by how a runtime behaves with idle gaps between frames, not in a tight
loop (on this VM onnxruntime's sleeping workers made two threads no faster than one). Each
call records its wall time and the process CPU time it cost (spinning threads show up there),
runtimes alternate call by call in reversed order every round, so drift hits all alike.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..provenance import load_average, machine_info
from .timing import self_cpu_seconds, summary_ms, thread_wait_env

#: name -> (backend, its own options); the order is the order of the first round.
RUNTIMES: dict[str, tuple[str, dict[str, Any]]] = {
    "onnxruntime": ("onnxruntime", {"spin_wait": False}),
    "onnxruntime_spin": ("onnxruntime", {"spin_wait": True}),
    "openvino_f32": ("openvino", {"precision": "f32"}),
    "openvino_bf16": ("openvino", {"precision": "bf16"}),
}
#: The node's default dense runtime before OpenVINO: what ratios are taken against.
BASELINE = "onnxruntime"


def time_alternating(fns: dict[str, Callable[[], object]], reps: int, warmup: int,
                     interval_s: float) -> dict[str, dict[str, float]]:  # fmt: skip
    """Wall and CPU ms of ``reps`` calls of each function, one call each per round, the order
    reversed every round, ``interval_s`` of sleep before every call (0: back to back).

    The CPU time of a call is read after a short rest (``min(interval_s, 20 ms)``) so work a
    runtime's threads do after returning (spinning) is charged to it, not to the next one."""
    if reps < 1 or warmup < 0 or interval_s < 0 or not fns:
        raise ValueError(f"need reps >= 1, warmup and interval >= 0, got {reps}, {warmup}, "
                         f"{interval_s}")  # fmt: skip
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names = list(fns)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    rest = min(interval_s, 0.02)
    for r in range(reps):
        for name in names if r % 2 == 0 else names[::-1]:
            if interval_s:
                time.sleep(interval_s - rest)
            c0 = self_cpu_seconds()
            t0 = time.perf_counter()
            fns[name]()
            wall[name].append((time.perf_counter() - t0) * 1e3)
            if rest:
                time.sleep(rest)
            cpu[name].append((self_cpu_seconds() - c0) * 1e3)
    return {n: {**summary_ms(np.asarray(wall[n])), "cpu_ms_median": float(np.median(cpu[n]))}
            for n in names}  # fmt: skip


def run_dense_runtimes(checkpoint: str, sizes: Sequence[int], threads: Sequence[int],
                       intervals_ms: Sequence[float], runtimes: Sequence[str], reps: int,
                       warmup: int, command: str) -> dict[str, Any]:  # fmt: skip
    """Every (size, threads, interval) cell: each runtime's latency and CPU cost, its ratio to
    :data:`BASELINE`, the fastest, and each runtime's largest joint difference from onnxruntime
    on one input (f32 runtimes agree to ~1e-6; bf16's accuracy is scored on real frames by
    ``./run eval real --backend openvino --precision bf16``, not here)."""
    from ..backends import BackendError, create_backend

    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise ValueError(f"unknown runtimes {unknown}; known: {list(RUNTIMES)}")
    cells: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    rng = np.random.default_rng(0)
    for size in sizes:
        x = rng.standard_normal((1, 3, size, size)).astype(np.float32)
        for n_threads in threads:
            backends: dict[str, Any] = {}
            for name in runtimes:
                backend, own = RUNTIMES[name]
                try:
                    backends[name] = create_backend(backend, checkpoint, device="cpu",
                                                    input_size=size, num_threads=n_threads,
                                                    **own)  # fmt: skip
                except (BackendError, ImportError) as exc:
                    skipped[name] = str(exc)
            if not backends:
                raise RuntimeError(f"no runtime could load {checkpoint}: {skipped}")
            ref = next(iter(backends.values())).infer(x).joints
            agree = {n: float(np.abs(b.infer(x).joints - ref).max()) for n, b in backends.items()}
            fns = {n: (lambda b=b, x=x: b.infer(x)) for n, b in backends.items()}
            for interval in intervals_ms:
                stats = time_alternating(fns, reps, warmup, interval / 1e3)
                base = stats.get(BASELINE, {}).get("median_ms")
                fastest = min(stats, key=lambda n: stats[n]["median_ms"])
                exact = [n for n in stats if not n.endswith("_bf16")]  # onnxruntime's numbers
                fastest_f32 = min(exact, key=lambda n: stats[n]["median_ms"]) if exact else None
                cells.append({
                    "input_size": size, "threads": n_threads, "interval_ms": interval,
                    "runtimes": stats, "fastest": fastest, "fastest_f32": fastest_f32,
                    "ratio_to_baseline": {n: s["median_ms"] / base for n, s in stats.items()}
                    if base else None,
                    "max_joint_difference_from_first": agree,
                    "load_average": load_average(),
                })  # fmt: skip
                print(f"{size} px, {n_threads} thread(s), interval {interval:g} ms: " + ", ".join(
                    f"{n} {s['median_ms']:.2f} ms (cpu {s['cpu_ms_median']:.1f})"
                    for n, s in stats.items()), flush=True)  # fmt: skip
            for b in backends.values():
                b.close()
    return {
        "what": "dense CPU runtimes on one checkpoint, batch 1, back to back and camera-paced "
                "(sleep interval_ms before each call), alternating call by call",
        "command": command,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "thread_wait_env": thread_wait_env(),
        "checkpoint": str(Path(checkpoint)),
        "baseline": BASELINE,
        "reps": reps, "warmup": warmup,
        "skipped": skipped,
        "cells": cells,
    }  # fmt: skip
