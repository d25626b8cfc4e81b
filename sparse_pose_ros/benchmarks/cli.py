"""``python -m sparse_pose_ros.benchmarks sparse-cpu|paced|dense-runtimes|real-frames`` — see
:mod:`.sparse_cpu`, :mod:`.paced`, :mod:`.dense_runtimes`, :mod:`.real_frames`."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

from ..runtime.options import input_size_problem
from .sparse_cpu import ARCH_SIZE, ARCHS, BenchConfig, arch_output_stride, run

DEFAULT_OUT = Path("results/sparse_cpu.json")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sparse_pose_ros.benchmarks")
    sub = p.add_subparsers(dest="bench", required=True)
    s = sub.add_parser("sparse-cpu", help="dense vs masked vs gather-scatter CPU latency")
    s.add_argument("--size", type=int, default=None,
                   help="square input side, a multiple of the network's output stride (16; "
                        "32 for MoveNet); default: the architecture's (256, Lightning 192)")
    s.add_argument("--arch", default="s16", choices=list(ARCHS),
                   help="s16: the original stride-16 network (--width-mult); movenet-thunder / "
                        "movenet-lightning: MoveNet's architecture (width 1.75 / 1.0)")
    s.add_argument("--threads", type=int, default=2, help="torch and ORT intra-op threads")
    s.add_argument("--reps", type=int, default=50, help="timed runs per measurement")
    s.add_argument("--warmup", type=int, default=10, help="untimed runs before timing")
    s.add_argument("--block", type=int, default=10,
                   help="timed calls per block when runtimes are interleaved (see timing.py)")
    s.add_argument("--settle", type=int, default=3, help="untimed calls opening every block")
    s.add_argument("--gap-ms", type=float, default=50.0, help="idle time before every block")
    s.add_argument("--densities", type=float, nargs="+", default=[0.1, 0.25, 0.5, 0.75, 1.0])
    s.add_argument(
        "--variants",
        nargs="+",
        default=["residual", "all"],
        choices=["residual", "all"],
        help="residual: stride-1 residual blocks gated; all: gate_strided=True",
    )
    s.add_argument("--width-mult", type=float, default=1.0)
    s.add_argument(
        "--checkpoint",
        default=None,
        help="trained model for its own masks (default: first models/*.safetensors)",
    )
    s.add_argument("--no-trained", action="store_true", help="skip the trained-mask part")
    s.add_argument("--no-network", action="store_true", help="backbone only")
    s.add_argument("--no-eager", action="store_true",
                   help="skip the PyTorch-eager paths (torch dense, masked, torch-ops sparse)")
    s.add_argument("--out", type=Path, default=DEFAULT_OUT, help="result JSON")
    s.add_argument("--plot", type=Path, default=None, help="PNG (default: next to the JSON)")
    s.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 64×64, width 0.5, 3 reps, densities 0.25 and 1.0",
    )
    q = sub.add_parser("paced", help="whole network one frame per interval (camera pacing)")
    q.add_argument("--size", type=int, default=256)
    q.add_argument("--threads", type=int, default=2)
    q.add_argument("--density", type=float, default=0.25)
    q.add_argument("--interval-ms", type=float, default=33.0, help="sleep before each frame")
    q.add_argument("--reps", type=int, default=60)
    q.add_argument("--warmup", type=int, default=5)
    q.add_argument("--out", type=Path, default=Path("results/paced_cpu.json"))
    d = sub.add_parser("dense-runtimes", help="onnxruntime (sleeping / spinning threads) vs "
                       "OpenVINO f32 / bf16 on one checkpoint, back to back and camera-paced")
    d.add_argument("--checkpoint", default="models/pose_dense.safetensors")
    d.add_argument("--sizes", type=int, nargs="+", default=[192, 256])
    d.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    d.add_argument("--intervals-ms", type=float, nargs="+", default=[0.0, 90.0],
                   help="sleep before each call; 0 = back to back")
    d.add_argument("--runtimes", nargs="+", default=None,
                   help="subset of onnxruntime onnxruntime_spin openvino_f32 openvino_bf16")
    d.add_argument("--reps", type=int, default=40)
    d.add_argument("--warmup", type=int, default=5)
    d.add_argument("--out", type=Path, default=Path("results/dense_runtimes_cpu.json"))
    from .real_frames import add_arguments

    r = sub.add_parser("real-frames", help="every contender (ours sparse / dense / tracking, "
                       "MoveNet, BlazePose) on the same full real and synthetic frames: "
                       "latency, MACs, accuracy (issue 17 §1)")
    add_arguments(r)
    return p  # fmt: skip


def _main_paced(args: argparse.Namespace, command: str) -> int:
    from .paced import run_paced

    problem = input_size_problem(args.size, arch_output_stride("s16"))  # paced runs s16
    if problem:
        print(f"error: --size {problem}", file=sys.stderr)
        return 2
    if not 0.0 <= args.density <= 1.0:
        print(f"error: --density must be in [0, 1], got {args.density}", file=sys.stderr)
        return 2
    result = run_paced(args.size, args.threads, args.density, args.interval_ms, args.reps,
                       args.warmup, command)  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("ratio_back_to_back", "ratio_paced")}, indent=1))
    return 0


def _main_dense_runtimes(args: argparse.Namespace, command: str) -> int:
    from .dense_runtimes import RUNTIMES, run_dense_runtimes

    if not Path(args.checkpoint).is_file():
        print(f"error: --checkpoint {args.checkpoint} not found", file=sys.stderr)
        return 2
    for size in args.sizes:
        problem = input_size_problem(size)  # the backend refuses a size its model cannot take
        if problem:
            print(f"error: --sizes {problem}", file=sys.stderr)
            return 2
    if min(args.threads) < 1 or args.reps < 1 or min(args.intervals_ms) < 0:
        print("error: --threads and --reps must be >= 1, --intervals-ms >= 0", file=sys.stderr)
        return 2
    runtimes = args.runtimes or list(RUNTIMES)
    try:
        result = run_dense_runtimes(args.checkpoint, args.sizes, args.threads, args.intervals_ms,
                                    runtimes, args.reps, args.warmup, command)  # fmt: skip
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv_used = sys.argv[1:] if argv is None else argv
    command = "python -m sparse_pose_ros.benchmarks " + shlex.join(argv_used)
    if args.bench == "paced":
        return _main_paced(args, command)
    if args.bench == "dense-runtimes":
        return _main_dense_runtimes(args, command)
    if args.bench == "real-frames":
        from .real_frames import main as main_real_frames

        return main_real_frames(args, command)
    if args.size is None:
        args.size = ARCH_SIZE[args.arch]
    problem = input_size_problem(args.size, arch_output_stride(args.arch))
    if problem:
        print(f"error: --size {problem}", file=sys.stderr)
        return 2
    if args.block < 1 or args.settle < 0 or args.gap_ms < 0:
        print("error: --block must be >= 1, --settle and --gap-ms >= 0", file=sys.stderr)
        return 2
    if any(not 0.0 <= d <= 1.0 for d in args.densities):
        print("error: densities must be in [0, 1]", file=sys.stderr)
        return 2
    cfg = BenchConfig(
        size=args.size, threads=args.threads, reps=args.reps, warmup=args.warmup,
        densities=tuple(args.densities), variants=tuple(args.variants),
        width_mult=args.width_mult, checkpoint="" if args.no_trained else args.checkpoint,
        with_network=not args.no_network, eager=not args.no_eager,
        block=args.block, settle=args.settle, gap_s=args.gap_ms / 1e3, arch=args.arch,
    )  # fmt: skip
    if args.quick:
        cfg.size, cfg.reps, cfg.warmup, cfg.width_mult = 64, 3, 1, 0.5
        cfg.densities = (0.25, 1.0)
        cfg.trained_frames = 1
        cfg.trained_real_frames = 1
    result = run(cfg, command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    from .plot import plot_sparse_cpu

    png = args.plot or args.out.with_suffix(".png")
    plot_sparse_cpu(result, png)
    print(json.dumps({"json": str(args.out), "png": str(png), "summary": result["summary"]},
                     indent=1))  # fmt: skip
    return 0
