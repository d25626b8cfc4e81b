"""What the latency-budget measurements share (``benchmarks.budget``: the CLI, with
``budget_sweep`` and ``budget_replay``): held-out frames decoded up front, the backend under
test, one timed estimator call, latency statistics and the provenance header of every result.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..provenance import machine_info

LOG = logging.getLogger("sparse_pose_ros.benchmarks.budget")  # one logger for the four modules

REFERENCE_THRESHOLD = 0.5  # the training decision boundary


@dataclass
class HeldOutFrame:
    """One held-out frame as the node would see it: RGB image + its intrinsics (None: the
    node's nominal field of view, as for a camera without camera_info)."""

    index: int
    image: np.ndarray
    k: np.ndarray | None
    mask_fraction: float


def result_header(
    benchmark: str, args: argparse.Namespace, info: Any, load_before: Any, load_after: Any
) -> dict[str, Any]:
    """Provenance shared by every budget result: command, source, machine, load, model, backend."""
    return {
        "benchmark": benchmark,
        "command": args.command,
        "source": source_state(),
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "threads": args.threads,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "checkpoint": str(args.checkpoint),
        "model_hash": info.model_hash,
        "input_size": info.input_size,
        # graph (onnxruntime) or precision (openvino): the backend's own options
        "backend": {"name": args.backend, "graph": None, "device": "cpu", **runtime_options(args)},
    }


def open_heldout(data: str | Path) -> Any:
    """The held-out split as a :class:`~sparse_pose_ros.data.shards.ShardDataset`."""
    from ..data.shards import ShardDataset

    return ShardDataset(Path(data))


def load_frames(dataset: Any, indices: Sequence[int]) -> list[HeldOutFrame]:
    """Decode the frames up front, so JPEG decoding never lands inside a timed call."""
    out = []
    for i in indices:
        s = dataset.sample(int(i))
        out.append(HeldOutFrame(int(i), s["image"], np.asarray(s["K"], np.float64),
                                float(dataset.labels["mask_fraction"][int(i)])))
    return out


def make_backend(args: argparse.Namespace, checkpoint: str) -> Any:
    """The backend under test, on CPU with ``args.threads`` threads (torch / ONNX Runtime
    intra-op, sparse-cpu's pool) and ``args.cache_dir`` for exports (torch has none)."""
    from ..backends import BackendOptions, create_backend

    options = BackendOptions(device="cpu", num_threads=args.threads,
                             cache_dir=args.cache_dir or None)  # fmt: skip
    return create_backend(args.backend, checkpoint, options=options, **runtime_options(args))


def runtime_options(args: argparse.Namespace, graph: str | None = None) -> dict[str, Any]:
    """The backend's own options: ONNX Runtime's graph (``graph`` or ``args.graph``),
    OpenVINO's precision (``args.precision``, the node's default when the namespace has none)."""
    if args.backend == "onnxruntime":
        return {"graph": graph or args.graph}
    if args.backend == "openvino":  # as the node sets it while its budget is on
        from ..runtime.options import OPENVINO_PRECISION_DEFAULT, precision_under_budget

        asked = getattr(args, "precision", OPENVINO_PRECISION_DEFAULT)
        return {"precision": precision_under_budget(asked, budget_on=True)}
    return {}


def threshold_estimator(backend: Any) -> Any:
    """The estimator the threshold benchmarks time: the masks' own decision on every frame.

    Why not the node's video defaults: with ``region_from_pose`` (and ``dense_until_found``) a
    sparse backend executes the previous pose's region or every cell, so the mask threshold
    would not change what runs (a sparse-cpu sweep of the locator checkpoint measured the same
    0.76 density at every threshold that way)."""
    from ..pipeline.estimator import PoseEstimator

    return PoseEstimator(backend, region_from_pose=False)


def timed_estimate(estimator: Any, frame: HeldOutFrame) -> tuple[float, Any]:
    """Time one whole estimator call (letterbox, normalise, backend, lift, mask image), in ms."""
    from ..pipeline.lift import Intrinsics

    h, w = frame.image.shape[:2]
    intr = None if frame.k is None else Intrinsics.from_k(frame.k, w, h)
    t0 = time.perf_counter()
    result = estimator.estimate(frame.image, intr)
    return (time.perf_counter() - t0) * 1e3, result


def latency_stats(ms: Sequence[float]) -> dict[str, float]:
    a = np.asarray(ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no latency samples")
    return {
        "median_ms": float(np.median(a)),
        "p95_ms": float(np.percentile(a, 95)),
        "mean_ms": float(a.mean()),
        "min_ms": float(a.min()),
        "n": int(a.size),
    }


def source_state() -> dict[str, Any]:
    """Git commit of the code that ran and which package files differed from it."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "sparse_pose_ros"],
                               cwd=root, capture_output=True, text=True, timeout=10,
                               check=True).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "modified": None}
    return {"commit": commit, "modified": [line[3:] for line in dirty]}


