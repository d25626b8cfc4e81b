"""Every person of a multi-person multiview trial in 3D: BlazePose again with the first person
masked out, then triangulated with the views associated.

Why: the only real 3D close to truth here is the multiview triangulation of Pose2Sim's trials,
and the depth lifter (``model.lifter``) learns poses from such skeletons. BlazePose follows one
person per image, so in the two-person training trial each view labelled whichever person it
picked, the views often disagreed, and ``triangulated.npz`` kept 27 of its 100 frames (one
person each). Painting the first person's segmentation over (dilated, grey) and running
BlazePose again gives each view its other person; :func:`..triangulate.triangulate_people`
then finds which detection in which view is the same person. On that trial: 168 people in
95 of the 100 frames (73 with both), against 27 (``docs/data.md``).

``people.npz`` (rows follow the manifest's frames, a teacher of the label cache added by
``./run label --teachers people``): ``frame_ids``; ``detected`` (N,) the second pass found
someone; ``second_h36m_px`` (N, 17, 2), ``second_h36m_visibility`` (N, 17) its joints;
``people_cam_m`` (N, P, 17, 3) the frame's triangulated people in this row's camera frame
(NaN where none or a joint the views disagreed on); ``people_residual_px`` (N, P, 17);
``people_detection`` (N, P) which of this view's detections the person came from (0 the first
pass, 1 the second, -1 none: the view disagreed or saw nobody).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..skeleton import NUM_JOINTS
from .blazepose_teacher import records_to_arrays, run_blazepose
from .label_cache import PEOPLE_FILE, LabelSet, iter_images
from .triangulate import cameras_from_triangulated, triangulate_people

#: People kept per frame (the trials have at most two).
MAX_PEOPLE = 2
#: The first person's mask is grown by this many pixels before it is painted over, so no
#: limb edge is left for the detector to find again.
MASK_DILATE_PX = 41
#: Grey the person is painted with (mid-range: no edge against most backgrounds).
MASK_FILL = 127
#: A person needs this many views agreeing (as ``label.MIN_CONSISTENT_VIEWS`` for the trial).
MIN_CONSISTENT_VIEWS = 3


def mask_out(rgb: np.ndarray, mask: np.ndarray | None, dilate_px: int = MASK_DILATE_PX,
             fill: int = MASK_FILL) -> np.ndarray:
    """``rgb`` with the person of ``mask`` (uint8 0-255, any size: resized to the image,
    on at >= 128) grown by ``dilate_px`` and painted ``fill``; a copy, unchanged without one."""
    import cv2

    out = rgb.copy()
    if mask is None:
        return out
    h, w = rgb.shape[:2]
    on = cv2.resize((np.asarray(mask) >= 128).astype(np.uint8), (w, h),
                    interpolation=cv2.INTER_NEAREST)  # fmt: skip
    if dilate_px > 0:
        on = cv2.dilate(on, np.ones((dilate_px, dilate_px), np.uint8))
    out[on > 0] = fill
    return out


def second_pass(ls: LabelSet, dilate_px: int = MASK_DILATE_PX) -> tuple[dict[str, np.ndarray],
                                                                         dict[str, Any], float]:
    """BlazePose on every labelled frame with the first pass's person painted over: its
    arrays (rows follow the manifest; frames where the first pass found nobody are not run
    and count as not detected), the runner's info, and its seconds."""
    import cv2

    frames = ls.manifest["frames"]
    first = np.asarray(ls.blazepose["detected"], bool)
    with tempfile.TemporaryDirectory(prefix="people_") as tmp:
        images = []
        for row, rgb in iter_images(ls):
            if not first[row]:
                continue
            fid = frames[row]["id"]
            path = Path(tmp) / f"{row:06d}.png"
            cv2.imwrite(str(path), cv2.cvtColor(mask_out(rgb, ls.mask(fid), dilate_px),
                                                cv2.COLOR_RGB2BGR))  # fmt: skip
            images.append((fid, path))
        if not images:
            raise ValueError(f"{ls.folder}: the first pass found nobody to mask out")
        run = run_blazepose(images=images)
    got = records_to_arrays(run.records)
    row_of = {f["id"]: r for r, f in enumerate(frames)}
    n = len(frames)
    out = {"h36m_px": np.full((n, NUM_JOINTS, 2), np.nan, np.float32),
           "h36m_visibility": np.full((n, NUM_JOINTS), np.nan, np.float32),
           "detected": np.zeros(n, bool)}  # fmt: skip
    rows = [row_of[str(i)] for i in got["frame_ids"]]
    for key in out:
        out[key][rows] = got[key]
    return out, run.info, run.seconds


def _candidates(arrays: dict[str, np.ndarray], rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
    px = np.asarray(arrays["h36m_px"], np.float64)[rows]
    vis = np.nan_to_num(np.asarray(arrays["h36m_visibility"], np.float64)[rows])
    return px, vis * np.asarray(arrays["detected"], bool)[rows, None]


def triangulate_all(ls: LabelSet, second: dict[str, np.ndarray],
                    min_consistent_views: int = MIN_CONSISTENT_VIEWS
                    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The ``people_*`` arrays of :data:`PEOPLE_FILE` from the first pass (``ls.blazepose``)
    and ``second``, with the rig of ``ls.triangulated``; and a summary."""
    tri = ls.triangulated
    if tri is None or "K" not in tri:
        raise ValueError(f"{ls.folder}: no calibrated rig (triangulated.npz): not multiview")
    cams = cameras_from_triangulated(tri)
    frames = ls.manifest["frames"]
    n, nv, nj = len(frames), len(cams), NUM_JOINTS
    row = {(f["view"], f["index"]): r for r, f in enumerate(frames)}
    out = {"people_cam_m": np.full((n, MAX_PEOPLE, nj, 3), np.nan, np.float32),
           "people_residual_px": np.full((n, MAX_PEOPLE, nj), np.nan, np.float32),
           "people_detection": np.full((n, MAX_PEOPLE), -1, np.int8)}  # fmt: skip
    per_frame: list[int] = []
    residuals: list[np.ndarray] = []
    for i in sorted({f["index"] for f in frames}):
        rows = [row.get((c.name, i)) for c in cams]
        if any(r is None for r in rows):
            continue
        a, b = _candidates(ls.blazepose, rows), _candidates(second, rows)
        found = triangulate_people(cams, np.stack([a[0], b[0]]), np.stack([a[1], b[1]]),
                                   min_consistent_views)[:MAX_PEOPLE]  # fmt: skip
        per_frame.append(len(found))
        for p, (r, used) in enumerate(found):
            residuals.append(r.residual_px)
            for v, rr in enumerate(rows):
                out["people_cam_m"][rr, p] = r.joints_cam[v]
                out["people_residual_px"][rr, p] = r.residual_px
                out["people_detection"][rr, p] = used[v]
    res = np.concatenate(residuals) if residuals else np.zeros(0)
    res = res[np.isfinite(res)]
    complete = np.isfinite(out["people_cam_m"]).all(axis=(2, 3))
    summary = {
        "frames": len(per_frame),
        "frames_by_people": {str(k): per_frame.count(k) for k in range(MAX_PEOPLE + 1)},
        "people": int(sum(per_frame)),
        "people_all_joints": int(complete.sum() // max(nv, 1)),
        "residual_px_median": round(float(np.median(res)), 2) if res.size else None,
        "residual_px_p90": round(float(np.percentile(res, 90)), 2) if res.size else None,
        "min_consistent_views": min_consistent_views,
    }
    return out, summary


def label_people(ls: LabelSet, min_consistent_views: int = MIN_CONSISTENT_VIEWS,
                 dilate_px: int = MASK_DILATE_PX
                 ) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
    """(arrays, record, summary) of the ``people`` teacher for ``label_cache.add_teacher``."""
    t0 = time.perf_counter()
    second, info, teacher_s = second_pass(ls, dilate_px)
    arrays, summary = triangulate_all(ls, second, min_consistent_views)
    arrays.update({"frame_ids": np.array(ls.frame_ids), "detected": second["detected"],
                   "second_h36m_px": second["h36m_px"],
                   "second_h36m_visibility": second["h36m_visibility"]})  # fmt: skip
    seconds = round(time.perf_counter() - t0, 1)
    summary.update(seconds=seconds, second_pass_detected=int(second["detected"].sum()))
    record = {
        "file": PEOPLE_FILE,
        "what": "BlazePose with the first person masked out, triangulated with view "
                "association (data.people_teacher)",
        "settings": settings(min_consistent_views, dilate_px),
        "versions": {k: v for k, v in info.items() if k != "h36m_mapping"},
        "seconds": seconds, "teacher_seconds": round(teacher_s, 1),
        "frames": len(ls.frame_ids), "detected": int(second["detected"].sum()),
    }
    return arrays, record, summary


def settings(min_consistent_views: int = MIN_CONSISTENT_VIEWS,
             dilate_px: int = MASK_DILATE_PX) -> dict[str, Any]:
    """What a cached ``people`` teacher was made with (a rerun with others relabels)."""
    return {"min_consistent_views": min_consistent_views, "mask_dilate_px": dilate_px,
            "mask_fill": MASK_FILL, "max_people": MAX_PEOPLE}
