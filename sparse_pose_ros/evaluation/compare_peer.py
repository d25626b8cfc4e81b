"""Compare our model with MediaPipe BlazePose Full on the real frames: agreement and latency.

    python -m sparse_pose_ros.evaluation.compare_peer \\
        --checkpoint models/pose_sparse.safetensors \\
        --out results/peer_blazepose.json --png-dir results/peer_png

    python -m sparse_pose_ros.evaluation.compare_peer --peer-only \\
        --out results/peer_blazepose_latency.json

Both run on the same frames (:mod:`.real_frames`) on the same machine, one after the other
(peer first, in its own venv; see :mod:`.peer`). Ours is the node's whole per-frame computation
without ROS (``pipeline.PoseEstimator``: letterbox, normalise, backend, lift), timed around
``estimate()``; the peer is timed around ``Pose.process()`` in video mode (tracking, what a camera
node would run, on the contiguous vtest clip) and static-image mode (detector every frame).

Agreement: PCK@0.1/0.2 of our 2D joints against the peer's joints (video mode first, static mode
too), normalised by the peer's person box, per frame and pooled — for all 17 joints and for the
joints whose mapping is not a guess (``blazepose_map.RELIABLE_JOINTS``). Frames where the peer
finds nobody are listed but not scored. The peer is a reference, not ground truth: on vtest, with
several pedestrians, the two models may simply pick different people.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..provenance import load_average, machine_info
from ..teachers.blazepose_map import APPROXIMATIONS, RELIABLE_JOINTS
from ..teachers.peer import (
    DEFAULT_VIS_THRESHOLD,
    PCK_THRESHOLDS,
    PckResult,
    PeerError,
    PeerFrame,
    PeerResult,
    pck_agreement,
    pooled_pck,
    run_peer,
    save_png,
    side_by_side,
)
from ..teachers.real_frames import VTEST_PATH, RealFrame, load_real_frames

LOG = logging.getLogger(__name__)
MIN_LATENCY_SAMPLES = 50
#: Peer modes used as agreement references, primary first.
REFERENCE_MODES: tuple[str, ...] = ("video", "static")


def summarize(ms: Sequence[float]) -> dict[str, Any]:
    if not ms:
        return {"p50": None, "p95": None, "mean": None, "n": 0}
    a = np.asarray(ms, np.float64)
    return {
        "p50": round(float(np.percentile(a, 50)), 3),
        "p95": round(float(np.percentile(a, 95)), 3),
        "mean": round(float(a.mean()), 3),
        "n": int(a.size),
    }


# --- our model -----------------------------------------------------------------------------


def parse_backend_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> dict; values parsed as JSON when they are JSON (0.3, true)."""
    out: dict[str, Any] = {}
    for kv in pairs:
        key, sep, value = kv.partition("=")
        if not sep or not key:
            raise ValueError(f"--backend-option must be KEY=VALUE, got {kv!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def build_estimator(checkpoint: Path, backend: str, threads: int, options: dict[str, Any]) -> Any:
    """The node's estimator around ``create_backend`` (imported here: torch is heavy).

    ``auto`` is ``create_backend("auto")`` on the CPU for this checkpoint, as in the node (a gated
    checkpoint goes to sparse-cpu first). ``threads`` is every backend's ``num_threads``; an
    explicit backend option (e.g. ``intra_op_threads``) wins.
    """
    import torch

    from ..backends import create_backend
    from ..pipeline.estimator import PoseEstimator

    torch.set_num_threads(threads)
    opts = {"num_threads": threads, **options}
    return PoseEstimator(create_backend(backend, checkpoint, device="cpu", **opts))


def run_ours(
    estimator: Any, frames: Sequence[RealFrame], repeats: int, warmup: int = 3
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pose of every frame + wall-clock latency of ``estimate()`` (``repeats`` per frame)."""
    if frames:
        for _ in range(warmup):
            estimator.estimate(frames[0].image)
    per_frame: dict[str, Any] = {}
    lat: list[float] = []
    stages: dict[str, list[float]] = {}
    for f in frames:
        result = None
        for _ in range(repeats):
            t0 = time.perf_counter()
            result = estimator.estimate(f.image)
            lat.append((time.perf_counter() - t0) * 1e3)
            for k, v in result.timings_ms.items():
                stages.setdefault(k, []).append(v)
        per_frame[f.id] = result
    summary = summarize(lat)
    summary["stage_p50_ms"] = {k: round(float(np.median(v)), 3) for k, v in stages.items()}
    return per_frame, summary


# --- report --------------------------------------------------------------------------------


def _score(
    ours_px: np.ndarray, pf: PeerFrame, joints: Sequence[str] | None, vis_threshold: float
) -> PckResult | None:
    if not pf.detected or pf.joints_px is None:
        return None
    try:
        return pck_agreement(ours_px, pf.joints_px, pf.visibility, PCK_THRESHOLDS, vis_threshold,
                             joints)
    except ValueError as exc:  # fewer than 2 peer-visible joints: nothing to compare
        LOG.info("frame %s not scored: %s", pf.id, exc)
        return None


def _rounded(a: np.ndarray | None, digits: int) -> list | None:
    return None if a is None else np.round(a, digits).tolist()


def pick_png_frames(frames: Sequence[RealFrame], peer: dict[str, PeerFrame], limit: int) -> list:
    """All stills, then video frames where the peer found someone, evenly spaced, ≤ ``limit``."""
    stills = [f for f in frames if f.index is None][:limit]
    video = [f for f in frames if f.index is not None and peer[f.id].detected]
    room = limit - len(stills)
    if room <= 0 or not video:
        return stills
    step = max(1, math.ceil(len(video) / room))
    return stills + video[::step][:room]


def peer_latency_block(peer: PeerResult) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode, lat in peer.latency.items():
        frames = peer.frames[mode].values()
        out[mode] = {
            **{k: v for k, v in lat.items() if k != "sequences"},
            "frames_with_person": sum(1 for f in frames if f.detected),
            "frames_reported": len(frames),
        }
        if "sequences" in lat:
            out[mode]["sequences"] = lat["sequences"]
    return out


def compare(args: argparse.Namespace) -> dict[str, Any]:
    frames = load_real_frames(
        vtest_step=args.vtest_step,
        vtest_max_frames=args.vtest_max_frames,
        include_video=not args.no_video,
    )
    if not frames:
        raise ValueError("no frames selected")
    has_video = any(f.index is not None for f in frames)
    LOG.info("%d frames (%d from vtest)", len(frames), sum(f.index is not None for f in frames))

    load_before = load_average()
    t0 = time.perf_counter()
    peer = run_peer(
        frames,
        video_path=VTEST_PATH if has_video else None,
        contiguous=True,
        repeats=args.peer_repeats,
    )
    LOG.info("peer done in %.1f s", time.perf_counter() - t0)

    report: dict[str, Any] = {
        "command": "python -m sparse_pose_ros.evaluation.compare_peer "
        + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "load_avg_before": load_before,
        "peer": peer.info,
        "frames_source": {
            "stills": [f.source for f in frames if f.index is None],
            "video": str(VTEST_PATH) if has_video else None,
            "vtest_step": args.vtest_step if has_video else None,
            "video_frames": sum(f.index is not None for f in frames),
        },
        "latency_ms": {"peer": peer_latency_block(peer)},
        "latency_what": {
            "peer": "Pose.process(rgb) wall time in the peer venv; video mode: contiguous vtest "
            "clip, first frame per sequence excluded; person/no_person split by detection",
            "ours": "PoseEstimator.estimate(rgb) wall time (letterbox, normalise, backend, lift)",
        },
    }
    if args.note:
        report["run_note"] = args.note
    if args.peer_only:
        report["note"] = "peer only: no model of ours was run"
        report["load_avg_after"] = load_average()
        report["peer_detected"] = {
            m: {f.id: per[f.id].detected for f in frames} for m, per in peer.frames.items()
        }
        return report

    estimator = build_estimator(args.checkpoint, args.backend, args.threads,
                                parse_backend_options(args.backend_option))
    info = estimator.backend.info
    repeats = args.repeats or max(1, math.ceil(MIN_LATENCY_SAMPLES / len(frames)))
    ours, ours_lat = run_ours(estimator, frames, repeats)
    ours_lat["repeats_per_frame"] = repeats
    ours_lat["threads"] = args.threads
    ours_lat["backend"] = type(estimator.backend).__name__
    ours_lat["what"] = "PoseEstimator.estimate(): letterbox, normalise, backend, lift, mask"
    report["latency_ms"]["ours"] = ours_lat
    video = report["latency_ms"]["peer"].get("video", {})
    for key, p50 in (("all_frames", video.get("p50")),
                     ("person_frames", video.get("person", {}).get("p50"))):
        if p50 and ours_lat["p50"]:
            report["latency_ms"][f"ours_p50_over_peer_video_p50_{key}"] = round(
                ours_lat["p50"] / p50, 3
            )
    report["model"] = {
        "checkpoint": str(args.checkpoint),
        "model_hash": info.model_hash,
        "input_size": info.input_size,
        "gated": info.gated,
        "backend_requested": args.backend,
        "backend": type(estimator.backend).__name__,
    }

    modes = [m for m in REFERENCE_MODES if m in peer.frames]
    per_frame = []
    scores: dict[str, dict[str, list[PckResult]]] = {m: {"all": [], "rel": []} for m in modes}
    for f in frames:
        r = ours[f.id]
        rec: dict[str, Any] = {
            "id": f.id,
            "width": int(f.image.shape[1]),
            "height": int(f.image.shape[0]),
            "ours_person_found": bool(r.person_found),
            "ours_mean_confidence": round(float(r.mean_confidence), 4),
            "ours_density": round(float(r.density), 4),
            "ours_joints_px": np.round(r.joints_px, 2).tolist(),
        }
        for m in modes:
            pf = peer.frames[m][f.id]
            s_all = _score(r.joints_px, pf, None, args.vis_threshold)
            s_rel = _score(r.joints_px, pf, RELIABLE_JOINTS, args.vis_threshold)
            rec[m] = {
                "peer_detected": pf.detected,
                "peer_joints_px": _rounded(pf.joints_px, 2),
                "peer_visibility": _rounded(pf.visibility, 3),
            }
            if s_all is not None:
                scores[m]["all"].append(s_all)
                rec[m]["peer_bbox_px"] = round(s_all.bbox_size, 2)
                rec[m]["joints_counted"] = s_all.n_counted
                rec[m].update({f"pck@{t:g}": round(v, 4) for t, v in s_all.pck.items()})
            if s_rel is not None:
                scores[m]["rel"].append(s_rel)
                rec[m].update({f"reliable_pck@{t:g}": round(v, 4) for t, v in s_rel.pck.items()})
        per_frame.append(rec)
    report["agreement"] = {
        "primary_reference": modes[0],
        "why": "video mode is what the peer delivers as a camera node (tracking finds the small "
        "vtest pedestrians far more often than per-image detection); static mode for reference",
        "normaliser": "longest side of the box around the peer's counted joints",
        "vis_threshold": args.vis_threshold,
        "reliable_joints": list(RELIABLE_JOINTS),
    }
    for m in modes:
        report["agreement"][m] = {
            "frames_peer_no_person": [f.id for f in frames if not peer.frames[m][f.id].detected],
            "all_17": pooled_pck(scores[m]["all"], PCK_THRESHOLDS),
            "reliable": pooled_pck(scores[m]["rel"], PCK_THRESHOLDS),
        }
    report["mapping"] = APPROXIMATIONS
    report["frames"] = per_frame

    if args.png_dir:
        pngs = []
        by_id = {rec["id"]: rec for rec in per_frame}
        ref = peer.frames[modes[0]]
        for f in pick_png_frames(frames, ref, args.max_pngs):
            rec = by_id[f.id][modes[0]]
            left = f"ours {Path(args.checkpoint).stem}"
            if "pck@0.2" in rec:
                left += f"  PCK@0.1 {rec['pck@0.1']:.2f} @0.2 {rec['pck@0.2']:.2f}"
            img = side_by_side(f.image, ours[f.id].joints_px, ref[f.id].joints_px,
                               ref[f.id].visibility, left, f"BlazePose Full ({modes[0]} mode)",
                               max_side=args.png_max_side)
            path = Path(args.png_dir) / f"{f.id}.png"
            save_png(path, img)
            pngs.append(str(path))
        report["pngs"] = pngs
    report["load_avg_after"] = load_average()
    return report


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m sparse_pose_ros.evaluation.compare_peer",
        description="Our model vs MediaPipe BlazePose Full on real frames: PCK agreement, "
        "latency, side-by-side PNGs.",
    )
    ap.add_argument("--checkpoint", type=Path, help="our .safetensors (or .onnx) model")
    ap.add_argument("--peer-only", action="store_true", help="only run and time the peer")
    ap.add_argument("--out", type=Path, required=True, help="result JSON")
    ap.add_argument("--png-dir", type=Path, help="side-by-side PNGs go here")
    ap.add_argument("--max-pngs", type=int, default=8)
    ap.add_argument("--png-max-side", type=int, default=384, help="panel size cap (px)")
    ap.add_argument("--backend", default="auto",
                    help="auto|sparse-cpu|torch|onnxruntime|tensorrt")
    ap.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE",
                    help="extra backend option (string value), repeatable")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads of our backend")
    ap.add_argument("--repeats", type=int, default=0,
                    help=f"timed runs of our model per frame (0: enough for "
                    f"{MIN_LATENCY_SAMPLES} samples)")
    ap.add_argument("--peer-repeats", type=int, default=1, help="peer static-mode runs per frame")
    ap.add_argument("--vtest-step", type=int, default=20, help="use every Nth vtest frame")
    ap.add_argument("--vtest-max-frames", type=int, help="at most this many vtest frames")
    ap.add_argument("--no-video", action="store_true", help="stills only")
    ap.add_argument("--vis-threshold", type=float, default=DEFAULT_VIS_THRESHOLD)
    ap.add_argument("--note", default="", help="free text stored in the JSON (run conditions)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if not args.peer_only and args.checkpoint is None:
            raise ValueError("--checkpoint is required (or --peer-only)")
        if args.checkpoint is not None and not args.checkpoint.is_file():
            raise ValueError(f"checkpoint not found: {args.checkpoint}")
        if args.threads < 1 or args.repeats < 0 or args.peer_repeats < 1 or args.max_pngs < 0:
            raise ValueError("--threads/--peer-repeats must be >= 1, --repeats/--max-pngs >= 0")
        parse_backend_options(args.backend_option)
        report = compare(args)
    except (ValueError, PeerError, OSError, RuntimeError) as exc:  # BackendError: RuntimeError
        LOG.error("%s", exc)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    lat = report["latency_ms"]
    LOG.info("peer latency (ms): %s", {m: (v["p50"], v["p95"]) for m, v in lat["peer"].items()})
    if "ours" in lat:
        LOG.info("ours latency (ms): p50 %s p95 %s", lat["ours"]["p50"], lat["ours"]["p95"])
        for m in REFERENCE_MODES:
            for key in ("all_17", "reliable"):
                a = report["agreement"].get(m, {}).get(key, {})
                LOG.info("agreement vs peer %s mode, %s: PCK@0.1 %s PCK@0.2 %s over %s frames",
                         m, key, a.get("pck@0.1"), a.get("pck@0.2"), a.get("frames"))
    LOG.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

