"""Camera-paced CPU latency: one frame every ``interval`` instead of back to back.

Why a second benchmark: the back-to-back numbers (:mod:`.sparse_cpu`, what issue 6 asks for)
keep every thread hot. A camera node gets a frame every 33 ms, and between frames a runtime
either lets its worker threads sleep (they then have to be woken, which on this VM takes
milliseconds) or keeps them spinning (a core burned for nothing). This measures both runtimes
that way, with the CPU time the process used, so the trade-off is visible:
``cpu_cores`` = process CPU time / wall time over the paced loop.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from typing import Any

import torch

from ..model.network import NetworkConfig, PoseNetwork
from ..provenance import load_average, machine_info
from ..sparse.cpu_kernel import load_cpu_kernel
from ..sparse.executor import SparsePoseNetwork
from .masks import set_blob_masks
from .ort_dense import DenseNetwork, export_onnx, ort_runner
from .timing import self_cpu_seconds, thread_wait_env, time_call


def time_paced(fn: Callable[[], object], reps: int, warmup: int, interval_s: float
               ) -> dict[str, float]:  # fmt: skip
    """:func:`.timing.time_call` with ``interval_s`` of sleep before each call, plus the CPU
    time the process used over the timed calls (cores = CPU time / wall time)."""
    if reps < 1 or warmup < 0 or interval_s < 0:
        raise ValueError("reps must be >= 1, warmup >= 0, interval >= 0")
    for _ in range(warmup):
        fn()
    cpu0, wall0 = self_cpu_seconds(), time.perf_counter()
    stats = time_call(fn, reps, 0, interval_s)
    cpu, wall = self_cpu_seconds() - cpu0, time.perf_counter() - wall0
    return {**stats, "cpu_cores": cpu / wall, "cpu_ms_per_frame": cpu / reps * 1e3}


def run_paced(size: int, threads: int, density: float, interval_ms: float, reps: int,
              warmup: int, command: str) -> dict[str, Any]:  # fmt: skip
    """Whole network, batch 1: ORT dense vs the compiled sparse path, back to back and paced."""
    if load_cpu_kernel() is None:
        raise RuntimeError("the compiled CPU kernel cannot be built here")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.randn(1, 3, size, size)
    dense = PoseNetwork(NetworkConfig(input_size=size, gated=False)).eval()
    ort_net = ort_runner(export_onnx(DenseNetwork(dense).eval(), x), threads, x)
    net = PoseNetwork(NetworkConfig(input_size=size, gate_strided=True)).eval()
    set_blob_masks(net.backbone, 1, (size, size), density)
    ours = SparsePoseNetwork(net, policy="sparse", kernel="cpp")
    load_before = load_average()
    res: dict[str, Any] = {}
    with torch.no_grad():
        for name, fn in (("ort_dense", ort_net), ("sparse_cpp", lambda: ours(x))):
            res[name] = {
                "back_to_back": time_paced(fn, reps, warmup, 0.0),
                "paced": time_paced(fn, reps, warmup, interval_ms / 1e3),
            }
    return {
        "benchmark": "paced_cpu",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "machine": machine_info(),
        "threads": threads,
        "input_size": size,
        "density": density,
        "masks": "upright blob, every block gated (as sparse_cpu 'all')",
        "interval_ms": interval_ms,
        "env": thread_wait_env(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "network": res,
        "ratio_paced": res["sparse_cpp"]["paced"]["median_ms"]
        / res["ort_dense"]["paced"]["median_ms"],
        "ratio_back_to_back": res["sparse_cpp"]["back_to_back"]["median_ms"]
        / res["ort_dense"]["back_to_back"]["median_ms"],
    }
