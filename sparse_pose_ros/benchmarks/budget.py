"""Latency-budget measurements (issue 6 §4): threshold sweep and closed-loop replay.

    python -m sparse_pose_ros.benchmarks.budget sweep  [--checkpoint models/pose_sparse.safetensors]
        [--thresholds 0.1,0.2,...,0.9] [--frames 200] [--quick]
    python -m sparse_pose_ros.benchmarks.budget replay [--segment-frames 100] [--target-ms X]
        [--rate-hz 30] [--quick]

``sweep``: accuracy (MPJPE / PA-MPJPE, root-relative mm, computed by
``training.evaluation.evaluate_model`` so the protocol is the evaluate CLI's), backbone density
and batch-1 latency of the whole estimator path (``PoseEstimator`` around ``create_backend``,
what the node runs per frame) at every mask threshold, on held-out synthetic frames. Latency is
measured *interleaved*: every frame is run once at every threshold (rotating the order), so a
load change on the shared machine hits all thresholds alike. From the accuracy curve it derives
the controller's bounds with a stated rule (:func:`recommend_bounds`) and compares them with
``BudgetConfig``'s defaults.

``replay``: the node's budget loop (estimate → measured latency → ``control_step`` → backend
threshold) over a clip whose scene changes (held-out frames ordered small person → large
person → medium), with a budget between the clip's latency at the upper and lower threshold
bound (measured first, on the same frames). Reports the share of frames within ±tolerance of
the budget after each scene change has settled, next to the same clip at a fixed threshold.
``replay --knob strip-floor --backend openvino`` runs the same loop on the node's default path
for a dense checkpoint (tracking crops read as strips; the controller moves a floor under the
strip width, ``pipeline.strip_budget``; only tracked frames feed it), and a second controller,
fed by whole frames only, the size a whole frame is read at (``pipeline.whole_budget``,
``--whole-frame-sizes``). On real video (``--real``) each source plays its first frames,
consecutive, as a camera node sees them (``--frames-from spread`` for frames spread over it).

Backend: latency only follows the threshold on a path that skips masked-out work. Among the
runtimes ``create_backend`` offers on CPU that is ONNX Runtime with the ``portable_sparse``
graph (gather-scatter in standard ops); the default ``portable`` graph and the torch backend are
masked dense (same work at every threshold). ``sweep --reference-graph portable`` times the
masked-dense graph at the lowest and highest threshold to show the difference.

Code: this module is the command line; the sweep is :mod:`.budget_sweep`, the replay
:mod:`.budget_replay`, what both use :mod:`.budget_common` (their public names are importable
from here too).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

from ..pipeline.recheck import RECHECK_RATIO
from ..pipeline.whole_budget import WHOLE_FRAME_SIZES
from ..runtime.options import OPENVINO_PRECISION_DEFAULT, OPENVINO_PRECISIONS
from .budget_common import (
    LOG,
    REFERENCE_THRESHOLD,
    HeldOutFrame,
    latency_stats,
    load_frames,
    make_backend,
    open_heldout,
    source_state,
)
from .budget_replay import (
    REAL_SCENES,
    SEGMENTS,
    calibrate,
    choose_target,
    run_loop,
    run_replay,
    select_clip,
    settled_share,
)
from .budget_sweep import (
    MAX_MPJPE_INCREASE,
    MIN_MPJPE_GAIN,
    accuracy_at_thresholds,
    paired_delta,
    recommend_bounds,
    run_sweep,
    time_thresholds,
)

__all__ = ["DEFAULT_CHECKPOINT", "DEFAULT_DATA", "DEFAULT_THRESHOLDS", "MAX_MPJPE_INCREASE",
           "MIN_MPJPE_GAIN", "REAL_SCENES", "REFERENCE_THRESHOLD", "RESULTS", "SEGMENTS",
           "HeldOutFrame",
           "accuracy_at_thresholds", "build_parser", "calibrate", "choose_target",
           "latency_stats", "load_frames", "main", "make_backend", "open_heldout",
           "paired_delta", "parse_args", "recommend_bounds", "run_loop", "run_replay",
           "run_sweep", "select_clip", "settled_share", "source_state", "time_thresholds"]

DEFAULT_CHECKPOINT = "models/pose_sparse.safetensors"
DEFAULT_DATA = "data_cache/synth_v1/test"
DEFAULT_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
RESULTS = Path("results")


def _thresholds(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"thresholds must be comma-separated numbers: {exc}") from exc
    if not values or any(not 0.0 < v < 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"thresholds must be in (0, 1), got {text!r}")
    return values


def _sizes(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"sizes must be comma-separated integers, got "
                                         f"{text!r}") from exc


def _bounds(text: str) -> tuple[float, float]:
    values = _thresholds(text)
    if len(values) != 2 or values[0] >= values[1]:
        raise argparse.ArgumentTypeError(f"bounds must be LO,HI with LO < HI, got {text!r}")
    return values[0], values[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sparse_pose_ros.benchmarks.budget",
                                description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
    common.add_argument("--data", default=DEFAULT_DATA, help="held-out shard folder")
    common.add_argument("--backend", choices=("onnxruntime", "sparse-cpu", "torch", "openvino"),
                        default="onnxruntime",
                        help="onnxruntime (with --graph), sparse-cpu (compiled kernel; the "
                        "node's CPU default for a gated checkpoint), torch (masked dense) or "
                        "openvino (--precision; the node's CPU default for a dense checkpoint)")
    common.add_argument("--graph", default="portable_sparse",
                        help="ONNX graph kind for onnxruntime (portable_sparse | portable)")
    common.add_argument("--precision", choices=OPENVINO_PRECISIONS,
                        default=OPENVINO_PRECISION_DEFAULT,
                        help="with --backend openvino: its precision (default: the node's; "
                             "bf16_strips runs f32 under a budget, as in the node)")
    common.add_argument("--threads", type=int, default=2)
    common.add_argument("--warmup", type=int, default=5, help="warm-up frames per threshold")
    common.add_argument("--cache-dir", default=None, help="ONNX export cache (backend default)")
    common.add_argument("--out", default=None, help="output JSON (PNG next to it)")
    common.add_argument("--no-plot", action="store_true")
    common.add_argument("--quick", action="store_true", help="smoke-test sizes")
    s = sub.add_parser("sweep", parents=[common], help="accuracy/latency/density vs threshold")
    s.add_argument("--thresholds", type=_thresholds, default=list(DEFAULT_THRESHOLDS))
    s.add_argument("--frames", type=int, default=200)
    s.add_argument("--batch-size", type=int, default=50, help="accuracy evaluation batch")
    s.add_argument("--reference-graph", default="portable",
                   help="also time this ONNX graph at the end thresholds ('' = skip)")
    r = sub.add_parser("replay", parents=[common], help="controller on a scene-changing clip")
    r.add_argument("--segment-frames", type=int, default=100, help="frames per scene")
    r.add_argument("--confidence-threshold", type=float, default=0.3,
                   help="with --knob strip-floor: mean joint confidence that counts as a "
                   "person found, so the next frame is a tracking crop (the node's default)")
    r.add_argument("--recheck-ratio", type=float, default=RECHECK_RATIO,
                   help="with --knob strip-floor: the tracking re-check (the node's "
                        "recheck_ratio; 0 = off)")
    r.add_argument("--knob", choices=("threshold", "strip-floor"), default="threshold",
                   help="what the loop moves: a gated model's mask threshold (whole frames, "
                   "the masks' own decision), or the floor under a dense model's strip width "
                   "on the node's default path (tracking crops read as strips; "
                   "pipeline.strip_budget) together with the side its whole frames are read "
                   "at (--whole-frame-sizes; pipeline.whole_budget)")
    r.add_argument("--whole-frame-sizes", type=_sizes, default=list(WHOLE_FRAME_SIZES),
                   help="with --knob strip-floor: the smaller squares a whole frame may be "
                   "read at (the budget's whole-frame knob, pipeline.whole_budget; the node's "
                   "whole_frame_sizes); '' = none, the whole frame stays at the model's size")
    r.add_argument("--frames-from", choices=("contiguous", "spread"), default="contiguous",
                   help="with --real: each source's first --segment-frames labelled frames, "
                   "consecutive (what a camera node sees), or evenly spread over the source "
                   "(4-8 video frames apart: the tracker loses people no node would)")
    r.add_argument("--calibration-frames", type=int, default=30, help="per scene and bound")
    r.add_argument("--target-ms", type=float, default=0.0, help="budget (0 = from calibration)")
    r.add_argument("--rate-hz", type=float, default=30.0, help="camera rate (0 = back to back)")
    r.add_argument("--settle-frames", type=int, default=25, help="skipped after a scene change")
    r.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="skip the fixed-threshold run of the same clip")
    r.add_argument("--bounds", type=_bounds, default=None,
                   help="LO,HI threshold bounds instead of BudgetConfig's defaults (experiments)")
    r.add_argument("--real", default=None, metavar="LABELS",
                   help="replay real video from this teacher-label cache (e.g. data_cache/"
                        "labels) instead of the synthetic split: --real-sources one after the "
                        "other, --segment-frames each")
    r.add_argument("--real-sources", type=lambda v: [x for x in v.split(",") if x],
                   default=list(REAL_SCENES), help="comma-separated label sources, in order")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(raw)
    args.command = " ".join(shlex.quote(a)
                            for a in ["python", "-m", "sparse_pose_ros.benchmarks.budget", *raw])
    if args.threads < 1 or args.warmup < 0:
        parser.error("--threads must be >= 1 and --warmup >= 0")
    if args.quick:
        args.warmup = min(args.warmup, 1)
        if args.mode == "sweep":
            args.frames = min(args.frames, 6)
            args.thresholds = [0.2, 0.5, 0.8]
        else:
            args.segment_frames = min(args.segment_frames, 5)
            args.calibration_frames = min(args.calibration_frames, 2)
            args.settle_frames = min(args.settle_frames, 2)
            args.rate_hz = 0.0
    if args.mode == "sweep" and args.frames < 1:
        parser.error("--frames must be >= 1")
    if args.mode == "replay" and (
        not 0 <= args.settle_frames < args.segment_frames
        or args.calibration_frames < 1 or args.target_ms < 0
    ):
        parser.error("need 0 <= --settle-frames < --segment-frames, --calibration-frames >= 1, "
                     "--target-ms >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from ..backends import BackendError

    if not Path(args.checkpoint).is_file():
        LOG.error("checkpoint not found: %s (train one with ./run train, or pass --checkpoint)",
                  args.checkpoint)
        return 2
    try:
        result = run_sweep(args) if args.mode == "sweep" else run_replay(args)
    except (BackendError, ValueError, OSError) as exc:
        LOG.error("%s", exc)
        return 2
    out = Path(args.out or RESULTS / f"budget_{args.mode}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    LOG.info("wrote %s", out)
    if not args.no_plot:
        from .budget_plot import plot_replay, plot_sweep

        png = out.with_suffix(".png")
        (plot_sweep if args.mode == "sweep" else plot_replay)(result, png)
        LOG.info("wrote %s", png)
    _log_summary(result)
    return 0


def _log_summary(result: dict[str, Any]) -> None:
    if result["benchmark"] == "budget_sweep":
        for r in result["rows"]:
            LOG.info("t=%.2f MPJPE %.1f PA %.1f density %.3f latency p50 %.2f p95 %.2f ms",
                     r["threshold"], r["mpjpe_mm"], r["pa_mpjpe_mm"], r["latency"]["density_mean"],
                     r["latency"]["median_ms"], r["latency"]["p95_ms"])
        if "bounds" in result:
            b = result["bounds"]
            LOG.info("recommended bounds [%g, %g], controller defaults %s, agree: %s",
                     b["min_threshold"], b["max_threshold"], b["controller_defaults"],
                     b["defaults_agree"])
    else:
        s = result["summary"]
        LOG.info("budget %.2f ms: %s of frames within ±10 %% after settling (smoothed %s; at "
                 "most 10 %% over it: %s)", result["budget"]["target_ms"],
                 s["within_tolerance_after_settling"]["fraction"],
                 s["smoothed_within_tolerance_after_settling"]["fraction"],
                 s["at_most_tolerance_over_after_settling"]["fraction"])


if __name__ == "__main__":
    sys.exit(main())
