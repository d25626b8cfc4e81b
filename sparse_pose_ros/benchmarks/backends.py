"""CPU latency of the runtimes behind the backends, batch 1, side by side in one process.

    python -m sparse_pose_ros.benchmarks.backends [--checkpoint X.safetensors] \\
        [--input-size 256] [--threads 2] [--iterations 40] [--rounds 3] \\
        [--out results/backends_cpu.json]

Rows (raw network execution; backend postprocessing is timed once, separately):

* ``torch_dense``: the dense twin (same weights, mask units removed), eager fp32;
* ``torch_masked``: the gated network as trained (masked dense: dense convs + mask multiplies);
* ``torch_gather_scatter``: ``sparse.executor.SparsePoseNetwork`` (PyTorch-ops kernel);
* ``onnxruntime_dense``: portable export of the dense twin — the CPU bar (DESIGN.md §2);
* ``onnxruntime_portable``: portable export of the gated network (masked dense in ORT);
* ``onnxruntime_sparse_all``: ``portable_sparse`` export, every gated block gather-scatter;
* ``onnxruntime_sparse_s4_s8``: ``portable_sparse`` with gather-scatter only in the stride-4
  and stride-8 gated blocks (masked dense at stride 16, where per-op overhead dominates);
* ``tensorrt``: not measured here (no TensorRT on this machine).

Without ``--checkpoint`` the network has random weights (``export.random_model``) with the mask
bias ``--mask-bias`` setting the density; the measured density on the frame is recorded, since
every time depends on it. Rounds alternate the runtimes so load drift hits all of them alike.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from ..backends.base import build_result, threshold_logit
from ..export.onnx_export import export_network, network_hash
from ..export.random_model import random_network
from ..model.checkpoint import load_checkpoint
from ..model.network import NetworkConfig, PoseNetwork
from ..provenance import cpu_model
from ..runtime.geometry import network_geometry

LOG = logging.getLogger(__name__)
DEFAULT_OUT = Path("results/backends_cpu.json")
TENSORRT_NOTE = "not measured — TensorRT unavailable here"


def dense_twin(net: PoseNetwork) -> PoseNetwork:
    """The same network without mask units (what a user exports when ignoring sparsity)."""
    cfg = NetworkConfig.from_dict({**net.cfg.to_dict(), "gated": False})
    twin = PoseNetwork(cfg)
    state = {k: v for k, v in net.state_dict().items() if ".mask_unit." not in k}
    twin.load_state_dict(state, strict=True)
    return twin.eval()


def photo_frame(net: PoseNetwork, input_size: int) -> np.ndarray:
    """skimage's astronaut photo, letterboxed and normalised as the node does it."""
    import skimage.data

    from ..pipeline.preprocess import letterbox, mean_fill, normalise

    canvas, _ = letterbox(skimage.data.astronaut(), input_size, fill=mean_fill(net.cfg.input_mean))
    return normalise(canvas, net.cfg.input_mean, net.cfg.input_std)


def time_calls(fn: Callable[[], object], iterations: int) -> list[float]:
    out = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def summarise(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples)
    return {
        "median_ms": float(np.median(a)),
        "p10_ms": float(np.percentile(a, 10)),
        "p90_ms": float(np.percentile(a, 90)),
        "mean_ms": float(a.mean()),
        "n": int(a.size),
    }


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
    }


def ort_session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # ORT's pool threads busy-wait after each run by default; interleaved with torch they would
    # steal its cores and inflate the torch rows. A camera node gets no benefit from spinning
    # between frames either (see OnnxRuntimeBackend ``spin_wait``).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def build_runners(
    net: PoseNetwork, x: np.ndarray, threads: int, workdir: Path
) -> tuple[dict[str, Callable[[], object]], dict[str, str]]:
    """Name -> zero-argument callable running one frame; plus name -> reason for skipped rows."""
    size = x.shape[-1]
    twin = dense_twin(net)
    xt = torch.from_numpy(x)
    runners: dict[str, Callable[[], object]] = {}
    skipped: dict[str, str] = {}

    def torch_runner(model: Callable[[torch.Tensor], object]) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode():
                return model(xt)

        return run

    runners["torch_dense"] = torch_runner(twin)
    runners["torch_masked"] = torch_runner(net)
    try:
        from ..sparse.executor import SparsePoseNetwork

        sparse = SparsePoseNetwork(net)
        sparse(xt)  # fold weights, size buffers
        runners["torch_gather_scatter"] = torch_runner(sparse)
    except Exception as exc:  # an executor in flux must not sink the other rows
        skipped["torch_gather_scatter"] = f"not measured: {type(exc).__name__}: {exc}"
    dense_onnx = export_network(twin, workdir / "dense.onnx", "portable", input_size=size)
    gated_onnx = export_network(net, workdir / "gated.onnx", "portable", input_size=size)
    geometry = network_geometry(net, size)
    high_res = [
        k
        for k, i in enumerate(geometry.gated_indices)
        if geometry.blocks[i].out_hw[0] * 8 >= size  # stride 4 and 8 stages
    ]
    sparse_all = export_network(net, workdir / "sparse_all.onnx", "portable_sparse")
    sparse_hi = export_network(
        net, workdir / "sparse_hi.onnx", "portable_sparse", sparse_blocks=high_res
    )
    thr = np.array([threshold_logit(0.5)], dtype=np.float32)
    s_dense = ort_session(dense_onnx, threads)
    runners["onnxruntime_dense"] = lambda: s_dense.run(None, {"input": x})
    for name, path in (
        ("onnxruntime_portable", gated_onnx),
        ("onnxruntime_sparse_all", sparse_all),
        ("onnxruntime_sparse_s4_s8", sparse_hi),
    ):
        sess = ort_session(path, threads)
        runners[name] = lambda sess=sess: sess.run(None, {"input": x, "mask_threshold_logit": thr})
    return runners, skipped


def run_benchmark(
    net: PoseNetwork,
    command: str,
    source: str,
    input_size: int,
    threads: int,
    iterations: int,
    rounds: int,
    warmup: int,
) -> dict[str, Any]:
    torch.set_num_threads(threads)
    net = net.eval()
    x = photo_frame(net, input_size)
    with torch.inference_mode():
        out = net(torch.from_numpy(x))
    masks = [m.hard[0, 0].numpy() for m in out.masks if m is not None]
    geometry = network_geometry(net, input_size)
    density, block_density = geometry.density(masks)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        runners, skipped = build_runners(net, x, threads, Path(tmp))
        for fn in runners.values():
            for _ in range(warmup):
                fn()
        samples: dict[str, list[float]] = {name: [] for name in runners}
        round_medians: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(rounds):
            for name, fn in runners.items():
                t = time_calls(fn, iterations)
                samples[name] += t
                round_medians[name].append(float(np.median(t)))
    heat = out.heatmaps[0].numpy()
    joints = out.joints[0].numpy()
    post = time_calls(lambda: build_result(joints, heat, masks, geometry), iterations)
    load_after = os.getloadavg()
    rows: dict[str, Any] = {
        name: {**summarise(s), "round_medians_ms": round_medians[name]}
        for name, s in samples.items()
    }
    bar = rows["onnxruntime_dense"]["median_ms"]
    for row in rows.values():
        row["ratio_to_onnxruntime_dense"] = row["median_ms"] / bar
    rows.update({name: {"status": why} for name, why in skipped.items()})
    rows["tensorrt"] = {"status": TENSORRT_NOTE}
    return {
        "benchmark": "backends_cpu",
        "command": command,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "threads": threads,
        "load_average_before": list(load_before),
        "load_average_after": list(load_after),
        "batch": 1,
        "input_size": input_size,
        "frame": "skimage.data.astronaut, letterboxed + normalised",
        "model": {
            "source": source,
            "model_hash": network_hash(net),
            "config": net.cfg.to_dict(),
            "gated_blocks": len(geometry.gated_indices),
        },
        "mask_threshold": 0.5,
        "density": density,
        "block_density": block_density,
        "iterations_per_round": iterations,
        "rounds": rounds,
        "results": rows,
        "postprocess_ms": summarise(post),
        "notes": (
            "Times are raw network execution (median over rounds × iterations); ORT thread "
            "spinning off, torch and ORT both on `threads` intra-op threads. "
            "onnxruntime_portable runs the gated blocks masked dense, so it does all dense "
            "work plus mask ops; the gather-scatter rows are where sparsity can pay."
        ),
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_backends", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help=".safetensors checkpoint (default: random weights)")
    p.add_argument("--input-size", type=int, default=256)
    p.add_argument("--width-mult", type=float, default=1.0, help="random model only")
    p.add_argument(
        "--mask-bias",
        type=float,
        default=-1.0,
        help="random model only: mask-unit bias (lower = sparser)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iterations", type=int, default=40)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    raw = list(sys.argv[1:] if argv is None else argv)
    command = "python -m sparse_pose_ros.benchmarks.backends " + shlex.join(raw)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if min(args.threads, args.iterations, args.rounds) < 1 or args.warmup < 0:
        print("bench_backends: threads/iterations/rounds must be >= 1", file=sys.stderr)
        return 2
    if args.checkpoint:
        net, _ = load_checkpoint(args.checkpoint)
        source = str(args.checkpoint)
    else:
        net = random_network(
            gated=True,
            input_size=args.input_size,
            seed=args.seed,
            width_mult=args.width_mult,
            mask_bias=args.mask_bias,
        )
        source = f"random weights (seed {args.seed}, mask_bias {args.mask_bias})"
    report = run_benchmark(
        net,
        command,
        source,
        args.input_size,
        args.threads,
        args.iterations,
        args.rounds,
        args.warmup,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for name, row in report["results"].items():
        if "median_ms" in row:
            print(
                f"{name:24s} {row['median_ms']:8.2f} ms  x{row['ratio_to_onnxruntime_dense']:.2f}"
            )
        else:
            print(f"{name:24s} {row['status']}")
    print(f"density {report['density']:.3f}  -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
