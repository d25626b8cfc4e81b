"""Run MediaPipe BlazePose Full on images / video frames and write landmarks + latency as JSON.

Runs *inside the peer venv* (/work/main/.venv-peer, see setup_venv.sh): mediapipe 0.10.21 needs
numpy < 2 and protobuf < 5, which the project venv cannot have. The project talks to this script
only through files (inputs on disk, one JSON out), via ``sparse_pose_ros.teachers.peer``.

Why 0.10.21 and model_complexity=1: it is the newest release with ``mp.solutions.pose``, and the
Full landmark model is the only one shipped inside the wheel; Lite/Heavy are downloaded on first
use, which this project never does (we check that the model file exists before starting).

Two modes, same frames:

* ``static``: ``static_image_mode=True`` — person detector + landmark model on every frame, one
  graph for all frames, each frame timed ``--repeats`` times after ``--warmup`` untimed calls.
* ``video``: ``static_image_mode=False`` — what a camera node would run: the detector runs once,
  then the landmark model tracks its own ROI. A fresh graph per sequence (each still photo is its
  own one-frame sequence; a video is one sequence). With ``--contiguous`` every video frame from
  the first to the last requested index is processed (so tracking sees real 10 fps motion) and
  landmarks are reported for the requested indices. The first ``--video-warmup`` frames of each
  sequence (graph start-up, first detection) are flagged and left out of the latency summary.

Usage (inside the peer venv)::

    .venv-peer/bin/python tools/peer/blazepose_runner.py --image a.png --image b.png \\
        --video vtest.avi --frames 0,20,40 --contiguous --modes static,video --out peer.json

Output JSON: peer versions, landmark names, the H36M-17 mapping rules, and per mode a list of
frames (33 landmarks as [x, y, z, visibility] normalised to the image, 33 world landmarks in
metres, the H36M-17 joints in pixels / world metres with visibility, per-frame latency) plus a
latency summary (p50/p95/mean/n in ms).

With ``--masks OUT.npz`` the graph also runs BlazePose's segmentation (``enable_segmentation``):
each reported frame's person mask (a full-resolution float map in [0, 1]) is shrunk by
``--mask-downscale`` (area interpolation) and stored as uint8 (0-255) under the frame id in one
compressed npz; frames without a person get no entry. The teacher-label builder
(``sparse_pose_ros.training.label``) uses it; masks are kept out of the JSON because they are big.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
# The mapping to H36M-17 is project code shared with the project venv (pure numpy).
sys.path.insert(0, str(REPO_ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from sparse_pose_ros.skeleton import JOINT_NAMES  # noqa: E402
from sparse_pose_ros.teachers.blazepose_map import (  # noqa: E402
    APPROXIMATIONS,
    BLAZEPOSE_NAMES,
    NUM_LANDMARKS,
    map_to_h36m,
)
from sparse_pose_ros.teachers.real_frames import video_frame_id  # noqa: E402

LOG = logging.getLogger("blazepose_runner")
MODEL_COMPLEXITY = 1  # Full: the only landmark model inside the mediapipe 0.10.21 wheel
MODES = ("static", "video")


@dataclass
class Frame:
    """One decoded frame; ``report`` is False for in-between video frames (timed, not reported)."""

    id: str
    sequence: str
    rgb: np.ndarray
    report: bool
    index: int | None = None


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _parse_image_list(path: Path) -> list[tuple[str, Path]]:
    """Lines ``id<TAB>path`` (or just ``path``: id = file stem); '#' starts a comment."""
    items: list[tuple[str, Path]] = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) == 1:
            items.append((Path(parts[0]).stem, Path(parts[0])))
        elif len(parts) == 2:
            items.append((parts[0], Path(parts[1])))
        else:
            raise ValueError(f"{path}:{n}: expected 'id<TAB>path', got {line!r}")
    return items


def _video_exists(spec: str) -> bool:
    """A video file, or an image sequence OpenCV reads as one (``f_%05d.png``: its first
    frame, number 0, must exist)."""
    if "%" in Path(spec).name:
        try:
            return Path(spec % 0).is_file()
        except (TypeError, ValueError):
            return False
    return Path(spec).is_file()


def _video_frames(
    path: Path, indices: list[int], video_id: str, contiguous: bool
) -> Iterator[Frame]:
    """Decode ``path`` sequentially (seeking is inexact for inter-coded video)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"cannot open video {path}")
    wanted = set(indices)
    first, last = min(indices), max(indices)
    try:
        for i in range(last + 1):
            ok, bgr = cap.read()
            if not ok:
                raise ValueError(f"{path} has only {i} frames, frame {last} was requested")
            if i in wanted or (contiguous and first <= i):
                yield Frame(
                    id=video_frame_id(video_id, i),
                    sequence=video_id,
                    rgb=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
                    report=i in wanted,
                    index=i,
                )
    finally:
        cap.release()


def _landmarks(result: Any, width: int, height: int) -> dict[str, Any]:
    """Landmarks of one ``Pose.process`` result as plain lists (None when no person)."""
    if result.pose_landmarks is None:
        return {"detected": False, "landmarks": None, "world_landmarks": None}
    lm = np.array(
        [[p.x, p.y, p.z, p.visibility] for p in result.pose_landmarks.landmark], np.float64
    )
    if lm.shape[0] != NUM_LANDMARKS:
        raise RuntimeError(f"mediapipe returned {lm.shape[0]} landmarks, expected {NUM_LANDMARKS}")
    out: dict[str, Any] = {"detected": True, "landmarks": lm.round(6).tolist()}
    px = lm[:, :2] * np.array([width, height])
    joints_px, vis = map_to_h36m(px, lm[:, 3])
    out["h36m_px"] = joints_px.round(3).tolist()
    out["h36m_visibility"] = vis.round(6).tolist()
    if result.pose_world_landmarks is not None:
        world = np.array([[p.x, p.y, p.z] for p in result.pose_world_landmarks.landmark])
        out["world_landmarks"] = world.round(6).tolist()
        out["h36m_world_m"] = map_to_h36m(world, lm[:, 3])[0].round(6).tolist()
    else:
        out["world_landmarks"] = None
    return out


def summarize(latencies_ms: list[float]) -> dict[str, float | int | None]:
    """p50 / p95 / mean / n of a latency list (None when empty)."""
    if not latencies_ms:
        return {"p50": None, "p95": None, "mean": None, "n": 0}
    a = np.asarray(latencies_ms, np.float64)
    return {
        "p50": round(float(np.percentile(a, 50)), 3),
        "p95": round(float(np.percentile(a, 95)), 3),
        "mean": round(float(a.mean()), 3),
        "n": int(a.size),
    }


def _split_summaries(by_person: dict[bool, list[float]]) -> dict[str, Any]:
    """Frames with a person run detector + landmark model, frames without only the detector
    (or, in video mode, the detector every frame until someone appears): report both."""
    return {
        "latency_summary_person": summarize(by_person[True]),
        "latency_summary_no_person": summarize(by_person[False]),
    }


def _frame_record(frame: Frame, result: Any, latencies: list[float]) -> dict[str, Any]:
    h, w = frame.rgb.shape[:2]
    rec: dict[str, Any] = {
        "id": frame.id,
        "sequence": frame.sequence,
        "index": frame.index,
        "width": w,
        "height": h,
        # lets the caller check both venvs decoded the same pixels (different OpenCV builds)
        "pixel_mean": round(float(frame.rgb.mean()), 4),
        "latency_ms": [round(t, 3) for t in latencies],
    }
    rec.update(_landmarks(result, w, h))
    return rec


class MaskSink:
    """Collects downsampled person masks by frame id (see ``--masks``)."""

    def __init__(self, downscale: int) -> None:
        if downscale < 1:
            raise ValueError(f"--mask-downscale must be >= 1, got {downscale}")
        self.downscale = downscale
        self.masks: dict[str, np.ndarray] = {}

    def add(self, frame: Frame, result: Any) -> None:
        mask = getattr(result, "segmentation_mask", None)
        if mask is None or result.pose_landmarks is None:
            return
        h, w = mask.shape[:2]
        size = (max(1, w // self.downscale), max(1, h // self.downscale))
        small = cv2.resize(np.asarray(mask, np.float32), size, interpolation=cv2.INTER_AREA)
        self.masks[frame.id] = np.clip(np.rint(small * 255.0), 0, 255).astype(np.uint8)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, **self.masks)
        tmp.replace(path)


def _timed(pose: Any, rgb: np.ndarray) -> tuple[Any, float]:
    t0 = time.perf_counter()
    result = pose.process(rgb)
    return result, (time.perf_counter() - t0) * 1e3


def run_static(
    frames: Iterator[Frame],
    pose_kwargs: dict[str, Any],
    warmup: int,
    repeats: int,
    masks: MaskSink | None = None,
) -> dict[str, Any]:
    import mediapipe as mp

    records: list[dict[str, Any]] = []
    all_lat: list[float] = []
    by_person: dict[bool, list[float]] = {True: [], False: []}
    with mp.solutions.pose.Pose(static_image_mode=True, **pose_kwargs) as pose:
        warmed = False
        for frame in frames:
            if not frame.report:
                continue
            if not warmed:
                for _ in range(warmup):
                    pose.process(frame.rgb)
                warmed = True
            lat: list[float] = []
            result = None
            for _ in range(repeats):
                result, ms = _timed(pose, frame.rgb)
                lat.append(ms)
            all_lat.extend(lat)
            by_person[result.pose_landmarks is not None].extend(lat)
            records.append(_frame_record(frame, result, lat))
            if masks is not None:
                masks.add(frame, result)
    return {
        "static_image_mode": True,
        "warmup_calls": warmup,
        "repeats": repeats,
        "frames": records,
        "latency_summary": summarize(all_lat),
        **_split_summaries(by_person),
    }


def run_video(
    frames: Iterator[Frame],
    pose_kwargs: dict[str, Any],
    video_warmup: int,
    masks: MaskSink | None = None,
    pace_hz: float = 0.0,
) -> dict[str, Any]:
    """Video mode over ``frames``; ``pace_hz`` > 0 starts the frames at that rate (sleeping
    between them, outside the timing), as a camera delivers them: on an idle-between-frames
    CPU one frame costs more than back to back, and a node fed by a camera pays that."""
    import mediapipe as mp

    records: list[dict[str, Any]] = []
    timed: list[float] = []
    by_person: dict[bool, list[float]] = {True: [], False: []}
    sequences: dict[str, dict[str, Any]] = {}
    pose = None
    current: str | None = None
    next_start = time.perf_counter()
    try:
        for frame in frames:
            if frame.sequence != current:
                if pose is not None:
                    pose.close()
                if frame.sequence in sequences:
                    raise ValueError(f"sequence {frame.sequence!r} is not contiguous in the input")
                pose = mp.solutions.pose.Pose(static_image_mode=False, **pose_kwargs)
                current = frame.sequence
                sequences[current] = {"sequence": current, "processed": 0, "timed": [],
                                      "first_frames_ms": []}
            seq = sequences[current]
            if pace_hz > 0:
                time.sleep(max(0.0, next_start - time.perf_counter()))
                next_start = max(next_start, time.perf_counter()) + 1.0 / pace_hz
            result, ms = _timed(pose, frame.rgb)
            warm = seq["processed"] < video_warmup
            seq["processed"] += 1
            (seq["first_frames_ms"] if warm else seq["timed"]).append(round(ms, 3))
            if not warm:
                timed.append(ms)
                by_person[result.pose_landmarks is not None].append(ms)
            if frame.report:
                rec = _frame_record(frame, result, [ms])
                rec["warmup"] = warm
                records.append(rec)
                if masks is not None:
                    masks.add(frame, result)
    finally:
        if pose is not None:
            pose.close()
    clips = []
    for seq in sequences.values():
        clips.append(
            {
                "sequence": seq["sequence"],
                "frames_processed": seq["processed"],
                "first_frames_ms": seq["first_frames_ms"],
                "latency_summary": summarize(seq["timed"]),
            }
        )
    return {
        "static_image_mode": False,
        "warmup_frames_per_sequence": video_warmup,
        "pace_hz": pace_hz,
        "frames": records,
        "sequences": clips,
        "latency_summary": summarize(timed),
        **_split_summaries(by_person),
    }


def _collect(args: argparse.Namespace) -> tuple[list[tuple[str, Path]], list[int]]:
    images: list[tuple[str, Path]] = [(Path(p).stem, Path(p)) for p in args.image]
    if args.image_list:
        images += _parse_image_list(Path(args.image_list))
    ids = [i for i, _ in images]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate image ids: {sorted({i for i in ids if ids.count(i) > 1})}")
    indices: list[int] = []
    if args.video:
        if not args.frames:
            raise ValueError("--video needs --frames (comma-separated frame indices)")
        try:
            indices = sorted({int(s) for s in args.frames.split(",") if s.strip()})
        except ValueError as exc:
            raise ValueError(f"--frames must be integers, got {args.frames!r}") from exc
        if not indices or indices[0] < 0:
            raise ValueError(f"--frames must be non-negative indices, got {args.frames!r}")
    elif args.frames:
        raise ValueError("--frames needs --video")
    if not images and not indices:
        raise ValueError("nothing to do: give --image, --image-list or --video with --frames")
    return images, indices


def _frame_stream(
    args: argparse.Namespace, images: list[tuple[str, Path]], indices: list[int], contiguous: bool
) -> Iterator[Frame]:
    for image_id, path in images:
        yield Frame(id=image_id, sequence=image_id, rgb=_read_rgb(path), report=True)
    if indices:
        yield from _video_frames(Path(args.video), indices, args.video_id, contiguous)


def _check_model_offline() -> str:
    """Fail early (instead of downloading) if the Full landmark model is not in the wheel."""
    import mediapipe as mp

    model = Path(mp.__file__).parent / "modules" / "pose_landmark" / "pose_landmark_full.tflite"
    if not model.is_file():
        raise RuntimeError(f"{model} missing: this mediapipe build would download it; refusing")
    return mp.__version__


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", action="append", default=[], help="image file (id = stem)")
    ap.add_argument("--image-list", help="text file, one 'id<TAB>path' per line")
    ap.add_argument("--video", help="video file")
    ap.add_argument("--frames", help="comma-separated frame indices of --video to report")
    ap.add_argument("--video-id", default="video", help="id prefix of video frames")
    ap.add_argument("--pace-hz", type=float, default=0.0,
                    help="video mode: start frames at this rate, as a camera would (0 = back to "
                         "back)")
    ap.add_argument("--contiguous", action="store_true",
                    help="video mode: process every frame between the first and last index")
    ap.add_argument("--modes", default="static,video", help="comma-separated: static,video")
    ap.add_argument("--warmup", type=int, default=3, help="static mode: untimed calls first")
    ap.add_argument("--repeats", type=int, default=1, help="static mode: timed calls per frame")
    ap.add_argument("--video-warmup", type=int, default=1,
                    help="video mode: first frames of each sequence left out of the summary")
    ap.add_argument("--min-detection-confidence", type=float, default=0.5)
    ap.add_argument("--min-tracking-confidence", type=float, default=0.5)
    ap.add_argument("--masks", help="also write person masks (segmentation) to this .npz")
    ap.add_argument("--mask-downscale", type=int, default=4,
                    help="--masks: shrink each mask by this factor (default 4)")
    ap.add_argument("--out", required=True, help="output JSON path")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    try:
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        bad = [m for m in modes if m not in MODES]
        if bad or not modes:
            raise ValueError(f"--modes must be a subset of {MODES}, got {args.modes!r}")
        if args.warmup < 0 or args.repeats < 1 or args.video_warmup < 0 or args.pace_hz < 0:
            raise ValueError("--warmup/--video-warmup/--pace-hz must be >= 0 and --repeats >= 1")
        images, indices = _collect(args)
        for _, path in images:
            if not path.is_file():
                raise ValueError(f"image not found: {path}")
        if args.video and not _video_exists(args.video):
            raise ValueError(f"video not found: {args.video}")
        if args.masks and len(modes) != 1:
            raise ValueError("--masks needs exactly one mode (the masks of which mode?)")
        sink = MaskSink(args.mask_downscale) if args.masks else None
        version = _check_model_offline()
    except (ValueError, RuntimeError) as exc:
        LOG.error("%s", exc)
        return 2

    pose_kwargs = {
        "model_complexity": MODEL_COMPLEXITY,
        "min_detection_confidence": args.min_detection_confidence,
        "min_tracking_confidence": args.min_tracking_confidence,
    }
    if sink is not None:
        pose_kwargs["enable_segmentation"] = True
    out: dict[str, Any] = {
        "peer": {
            "name": "MediaPipe BlazePose Full (mp.solutions.pose)",
            "mediapipe_version": version,
            "model_complexity": MODEL_COMPLEXITY,
            "numpy_version": np.__version__,
            "opencv_version": cv2.__version__,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            **{k: v for k, v in pose_kwargs.items() if k != "model_complexity"},
        },
        "landmark_names": list(BLAZEPOSE_NAMES),
        "h36m_joint_names": list(JOINT_NAMES),
        "h36m_mapping": APPROXIMATIONS,
        "modes": {},
    }
    try:
        for mode in modes:
            t0 = time.perf_counter()
            if mode == "static":
                stream = _frame_stream(args, images, indices, contiguous=False)
                out["modes"]["static"] = run_static(
                    stream, pose_kwargs, args.warmup, args.repeats, sink
                )
            else:
                stream = _frame_stream(args, images, indices, contiguous=args.contiguous)
                out["modes"]["video"] = run_video(stream, pose_kwargs, args.video_warmup, sink,
                                                  args.pace_hz)
                out["modes"]["video"]["contiguous"] = bool(args.contiguous)
            LOG.info("%s mode: %.1f s, latency %s", mode, time.perf_counter() - t0,
                     out["modes"][mode]["latency_summary"])
    except ValueError as exc:
        LOG.error("%s", exc)
        return 2
    if sink is not None:
        sink.save(Path(args.masks))
        out["masks"] = {"path": str(args.masks), "downscale": sink.downscale,
                        "frames": len(sink.masks)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
