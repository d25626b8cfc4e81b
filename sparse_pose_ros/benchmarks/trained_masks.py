"""The trained model's own masks: latency of every CPU path on held-out synthetic frames and on
real camera frames, side by side with ONNX Runtime dense.

Why separate from the blob-mask sweep: the blob sweep controls density; this part answers what a
user of the trained checkpoint gets. Each timed call takes the next frame of a set (round
robin), so the median is over frames and repetitions together and the masks really change from
call to call (index lists rebuilt every frame, as in the node).
"""

from __future__ import annotations

import glob
import logging
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..model.flops import flops_report
from ..model.network import PoseNetwork
from ..sparse.executor import SparsePoseNetwork, block_stride_map
from .ort_dense import DenseBackbone, DenseNetwork, export_onnx
from .timing import time_interleaved

log = logging.getLogger(__name__)

SYNTH_TEST = Path("data_cache/synth_v1/test")


def find_gated_checkpoint(explicit: str | None) -> str | None:
    """``explicit``, else the first gated ``models/*.safetensors`` (pose_sparse before others)."""
    if explicit:
        return explicit
    from ..model.checkpoint import read_metadata

    found = sorted(glob.glob("models/*.safetensors"), key=lambda p: ("sparse" not in p, p))
    for path in found:
        try:
            if read_metadata(path)["config"].get("gated", False):
                return path
        except Exception as exc:  # unreadable file: skip it, say why
            log.warning("skipping %s: %s", path, exc)
    return None


def _normalised(images: Sequence[np.ndarray], net: PoseNetwork) -> list[torch.Tensor]:
    from ..pipeline.preprocess import letterbox, mean_fill, normalise

    cfg = net.cfg
    out = []
    for im in images:
        canvas, _ = letterbox(im, cfg.input_size, mean_fill(cfg.input_mean))
        out.append(torch.from_numpy(normalise(canvas, cfg.input_mean, cfg.input_std)))
    return out


def frame_sets(net: PoseNetwork, synth: int, real: int) -> dict[str, list[torch.Tensor]]:
    """Up to ``synth`` held-out synthetic frames (evenly spaced) and ``real`` real frames."""
    sets: dict[str, list[torch.Tensor]] = {}
    try:
        from ..data.shards import ShardDataset

        ds = ShardDataset(SYNTH_TEST)
        idx = np.linspace(0, len(ds) - 1, num=min(synth, len(ds))).round().astype(int)
        sets["synthetic_test"] = _normalised([ds.sample(int(i))["image"] for i in idx], net)
    except Exception as exc:
        log.warning("no synthetic test frames (%s): %s", SYNTH_TEST, exc)
    try:
        from ..teachers.real_frames import load_real_frames

        frames = load_real_frames(vtest_step=40, vtest_max_frames=max(0, real - 3))[:real]
        sets["real"] = _normalised([f.image for f in frames], net)
    except Exception as exc:
        log.warning("no real frames: %s", exc)
    return sets


def _cycler(
    fn: Callable[[torch.Tensor], object], frames: list[torch.Tensor]
) -> Callable[[], object]:
    state = {"i": 0}

    def call() -> object:
        f = frames[state["i"] % len(frames)]
        state["i"] += 1
        return fn(f)

    return call


def _ort_sparse_runner(net: PoseNetwork, threads: int) -> Callable[[torch.Tensor], object]:
    """The ``portable_sparse`` ONNX graph (gather-scatter in standard ops) in ONNX Runtime."""
    import onnxruntime as ort

    from ..export.onnx_export import export_network

    with tempfile.TemporaryDirectory() as tmp:
        path = export_network(net, Path(tmp) / "m.onnx", "portable_sparse")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    thr = np.zeros(1, np.float32)  # logit(0.5): the training threshold
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x.numpy(), "mask_threshold_logit": thr})


def _stage_ms(run: SparsePoseNetwork, frames: list[torch.Tensor], reps: int) -> dict[str, float]:
    """Median per-stage (output stride) time of the compiled kernel over the frames (ms)."""
    ex = run.backbone
    strides = block_stride_map(run.net.backbone)
    ex.profile = True
    rows, stems = [], []
    for i in range(reps):
        ex(frames[i % len(frames)])
        rows.append(ex.block_times)
        stems.append(ex.stem_time)
    ex.profile = False
    med = np.median(np.asarray(rows), axis=0) * 1e3
    out: dict[str, float] = {"stem": float(np.median(stems) * 1e3)}
    for s, t in zip(strides, med, strict=True):
        out[str(s)] = out.get(str(s), 0.0) + float(t)
    return out


def run_trained(
    checkpoint: str | None, threads: int, reps: int, warmup: int, policy: Any,
    synth_frames: int = 16, real_frames: int = 8,
) -> dict[str, Any]:  # fmt: skip
    """Every path on the trained model's masks, at ``threads`` and at 1 thread."""
    path = find_gated_checkpoint(checkpoint)
    if path is None:
        return {"skipped": "no gated checkpoint under models/*.safetensors"}
    from ..model.checkpoint import load_checkpoint

    try:
        net, info = load_checkpoint(path)
    except Exception as exc:  # a broken checkpoint must not kill the whole benchmark
        return {"skipped": f"could not load {path}: {exc}"}
    sets = frame_sets(net, synth_frames, real_frames)
    if not sets:
        return {"skipped": "no frames", "checkpoint": path}
    x0 = next(iter(sets.values()))[0]
    size = net.cfg.input_size
    result: dict[str, Any] = {
        "checkpoint": path, "model_hash": info.get("model_hash"), "input_size": size,
        "width_mult": net.cfg.width_mult, "gate_strided": net.cfg.gate_strided,
        "policy": {str(k): v for k, v in policy.items()} if isinstance(policy, dict) else policy,
        "mask_threshold": 0.5, "sets": {},
    }  # fmt: skip
    bb_onnx = export_onnx(DenseBackbone(net.backbone), x0)
    net_onnx = export_onnx(DenseNetwork(net), x0)
    before = torch.get_num_threads()
    try:
        for t in sorted({threads, 1}, reverse=True):
            torch.set_num_threads(t)
            ours = SparsePoseNetwork(net, kernel="cpp", policy=policy)
            from ..backends import BackendOptions
            from ..backends.onnxruntime_backend import OnnxRuntimeBackend
            from ..backends.sparse_cpu_backend import SparseCpuBackend

            options = BackendOptions(device="cpu", num_threads=t)
            be_ort = OnnxRuntimeBackend(path, options)
            be_sparse = SparseCpuBackend(path, options)
            ort_sparse = _ort_sparse_runner(net, t)
            for name, frames in sets.items():
                feeds = [{"image": f.numpy()} for f in frames]
                row = result["sets"].setdefault(name, {"frames": len(frames)})
                if "gated_density" not in row:
                    with torch.no_grad():
                        reps_ = [flops_report(net, net(f), (size, size)) for f in frames]
                    row["gated_density"] = [r.gated_density for r in reps_]
                    row["mac_fraction_backbone"] = [r.backbone_fraction for r in reps_]
                    row["mac_fraction_network"] = [r.network_fraction for r in reps_]
                k = f"{t}thread"
                # each group interleaved (.timing.time_interleaved): ratios from one window
                row[k] = {
                    "backbone": time_interleaved({
                        "ort_dense": _ort_cycler(bb_onnx, t, feeds),
                        "sparse_cpp": _cycler(ours.backbone, frames),
                    }, reps, warmup),
                    "network": time_interleaved({
                        "ort_dense": _ort_cycler(net_onnx, t, feeds),
                        "ort_portable_sparse": _cycler(ort_sparse, frames),
                        "sparse_cpp": _cycler(ours, frames),
                    }, reps, warmup),
                    "per_stage_ms_sparse_cpp": _stage_ms(ours, frames, reps),
                }  # fmt: skip
                # what the node runs: whole backends on numpy frames (result assembly included)
                arrays = [f.numpy() for f in frames]
                row[k]["backend"] = time_interleaved({
                    "onnxruntime": _cycler(be_ort.infer, arrays),
                    "sparse-cpu": _cycler(be_sparse.infer, arrays),
                }, reps, warmup)  # fmt: skip
                row[k]["backend_sparse_cpu_crossover"] = be_sparse.crossover
                log.info("trained %s %s: %s", name, k, {
                    part: {p: round(v["median_ms"], 3) for p, v in row[k][part].items()}
                    for part in ("backbone", "network", "backend")})  # fmt: skip
    finally:
        torch.set_num_threads(before)
    return result


def _ort_cycler(
    model: bytes, threads: int, feeds: list[dict[str, np.ndarray]]
) -> Callable[[], object]:
    """ORT dense on the frames, round robin (the input name of ``export_onnx`` is "image")."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    state = {"i": 0}

    def call() -> object:
        feed = feeds[state["i"] % len(feeds)]
        state["i"] += 1
        return sess.run(None, feed)

    return call
