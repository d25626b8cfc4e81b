"""Our checkpoints on the real held-out frames of the teacher-label cache (issue 16 §3).

    ./run eval real --checkpoint models/pose_dense.safetensors \
        --checkpoint models/pose_sparse.safetensors [--max-frames N] [--track] [--pictures]

writes ``results/real_eval_<name>.json``. Frames: every labelled frame of each
held-out source of ``data_cache/labels`` (``manifest["source"]["split"] == "heldout"``:
the Sports2D demo video, the Pose2Sim single-person trial's four views), decoded from the
files the manifest records. Each frame goes through :class:`PoseEstimator` on the torch backend
as the node runs it (whole letterboxed frame; ``--track``: the node's tracking crop), with the
view's calibrated K where the source has one (Pose2Sim; lens distortion is not removed), else
the nominal field of view.

References (none is ground truth except where said):

* **BlazePose** (the teacher, cached): 2D joints, visibility, world landmarks, person mask.
* **MoveNet** (``--movenet``, the imported Thunder): its own heads and decoding on the same
  letterboxed whole frame (not the label cache's ``movenet.npz``, which saw BlazePose's crop),
  COCO-17 mapped to our joints by ``teachers.movenet_map``; compared on :data:`MOVENET_JOINTS`
  (limbs, pelvis, thorax, neck_nose; not spine or head_top).
* **Triangulated Pose2Sim 3D** (``triangulated.npz``, the views' robust triangulation of the
  teacher's 2D, expressed in each view's camera frame): the only labels here close to truth.

Metrics (per source and pooled over all frames, ``overall``):

* 2D PCK@0.1 / @0.2 on frames where BlazePose found a person, joints with BlazePose
  visibility >= 0.5, a joint correct within alpha x the larger side of the box around
  BlazePose's counted joints (the same joints and normaliser for every comparison: ours vs
  BlazePose on all 17 joints and on MoveNet's 15, ours vs MoveNet, MoveNet vs BlazePose = the
  teacher-agreement ceiling), pooled and per joint.
* person found: our ``person_found`` over the frames where BlazePose found one.
* 3D, root-relative, mm: MPJPE / PA-MPJPE / N-MPJPE (scale-only alignment) against the
  triangulated labels; PA-MPJPE and N-MPJPE against BlazePose's world landmarks (its own
  hip-centred frame, axes about the camera's: indicative only). Left/right separation: mean
  distance between left/right joint pairs, ours over the reference's (about 1 = limbs apart,
  near 0 = collapsed onto each other), in 2D against BlazePose, in 3D against the triangulation.
* execution masks (gated checkpoints): per gated block, recall (and precision) of the
  teacher's person pixels (block mask mapped onto the image, compared at the teacher mask's
  resolution); executed share of backbone MACs (``PoseResult.density``); over all frames and
  over frames where the teacher's person mask fills < 25 % of the image.
* diagnostics: mean 2D error over the box; ``same_person_frames`` and PCK on them (on frames
  with several people the compared skeletons may describe different people); the share of
  frames run on a tracking crop; issue 16's bars as ``targets`` (met or not).
* two or more checkpoints: the relative difference (other - first) / |first| of every number.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import shlex
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from .. import skeleton
from ..backends.base import Backend, BackendError, InferenceResult, create_backend
from ..data.label_cache import (
    LabelSet,
    iter_images,
    load_corpus,
    sha256_file,
    triangulated_per_row,
)
from ..model.checkpoint import CheckpointError, load_checkpoint, read_metadata
from ..model.network import PoseNetwork
from ..pipeline.draw import draw_skeleton, mask_overlay
from ..pipeline.estimator import (
    PoseEstimator,
    PoseResult,
    execution_mask,
    open_tracking_sessions,
)
from ..pipeline.lift import Intrinsics
from ..pipeline.preprocess import Letterbox, letterbox, mean_fill
from ..pipeline.recheck import RECHECK_RATIO, recheck_ratio_value
from ..pipeline.roi import (
    CROP_INPUT_SIZE,
    REGION_EXPAND,
    REGION_MARGIN,
    STRIP_MARGIN,
    RoiConfig,
    region_expand_value,
    region_margin_value,
)
from ..pipeline.smoothing import PoseSmoother, SmoothingConfig
from ..provenance import machine_info
from ..runtime.options import OPENVINO_PRECISIONS, check_input_size, check_input_width
from ..teachers.movenet_map import APPROXIMATIONS as MOVENET_MAPPING
from ..teachers.movenet_map import map_to_h36m
from ..training.evaluation import SMALL_PERSON_FRACTION
from ..training.metrics import (
    MaskStats,
    bbox_size,
    left_right_separation_ratio,
    mpjpe,
    pa_mpjpe,
    pck_2d,
    root_relative,
)
from .lift_ceiling import lift_from_true_2d, triangulated_views
from .movenet_agreement import movenet_keypoints

LABELS_DIR = Path("data_cache/labels")
MOVENET_DEFAULT = Path("data_cache/pretrained/movenet-thunder.safetensors")
RESULTS_DIR = Path("results")
PICTURES_DIR = Path("out/eval")
#: BlazePose visibility at or above which a joint is counted.
VISIBLE = 0.5
ALPHAS = (0.1, 0.2)
#: Teacher mask values (0-255) at or above this are person pixels.
MASK_ON = 128

#: Joints compared with MoveNet (``teachers.movenet_map``): its 12 direct keypoints, pelvis and
#: thorax (mid-points) and neck_nose (the nose). Left out: spine (the mid-point of two mapped
#: joints, no information of its own) and head_top (a fitted rule, the least reliable joint).
MOVENET_JOINTS: tuple[int, ...] = tuple(
    j for j, name in enumerate(skeleton.JOINT_NAMES) if name not in ("spine", "head_top")
)


class NoLabels(RuntimeError):
    """The teacher-label cache (or a requested source) is missing."""


# ---------------------------------------------------------------------------------------------
# Metric helpers (numpy; unit-tested with hand-computed values)


def pck_block(
    pred: np.ndarray,
    ref: np.ndarray,
    visible: np.ndarray,
    box: np.ndarray,
    joints: Sequence[int] | None = None,
) -> dict[str, Any]:
    """PCK@ALPHAS of (N, J, 2) ``pred`` against ``ref``, counting ``visible`` (N, J) joints of
    ``joints`` (default all) on frames with ``box`` (N,) > 0; per joint by name; and the mean
    error over the box size."""
    sel = np.zeros(pred.shape[1], bool)
    sel[list(range(pred.shape[1]) if joints is None else joints)] = True
    counted = np.asarray(visible, bool) & sel[None, :] & (np.asarray(box) > 0)[:, None]
    counted &= np.isfinite(ref).all(axis=-1)
    pred = np.where(np.isfinite(pred), pred, 1e12)  # a missing prediction is wrong, not skipped
    ref = np.nan_to_num(ref)
    out: dict[str, Any] = {
        "frames": int(counted.any(axis=1).sum()),
        "keypoints_counted": int(counted.sum()),
    }
    err = np.linalg.norm(pred - ref, axis=-1) / np.where(box > 0, box, 1.0)[:, None]
    out["mean_error_box_fraction"] = float(err[counted].mean()) if counted.any() else float("nan")
    same = same_person(pred, ref, counted, box)
    out["same_person_frames"] = int(same.sum())
    for alpha in ALPHAS:
        overall, per_joint = pck_2d(pred, ref, alpha, box=box, visible=counted)
        out[f"pck@{alpha:g}"] = overall
        out[f"per_joint_pck@{alpha:g}"] = {
            skeleton.JOINT_NAMES[j]: float(per_joint[j]) for j in np.flatnonzero(sel)
        }
    for alpha in ALPHAS:  # diagnostic: the frames where both describe the same person
        out[f"pck@{alpha:g}_same_person"] = pck_2d(pred, ref, alpha, box=box,
                                                   visible=counted & same[:, None])[0]
    return out


def same_person(pred: np.ndarray, ref: np.ndarray, counted: np.ndarray, box: np.ndarray,
                margin: float = 0.1) -> np.ndarray:
    """(N,) bool: the median of the prediction's counted joints lies inside the box of the
    reference's counted joints (grown by ``margin`` x its size on every side). On frames with
    several people a model may describe another person than the teacher; PCK then measures
    who was picked, not how well; this tells the two apart."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # frames without a counted joint
        r = np.where(counted[..., None], ref, np.nan)
        lo, hi = np.nanmin(r, axis=1), np.nanmax(r, axis=1)
        centre = np.nanmedian(np.where(counted[..., None], pred, np.nan), axis=1)
    m = margin * np.asarray(box, np.float64)[:, None]
    inside = (centre >= lo - m) & (centre <= hi + m)
    return counted.any(axis=1) & inside.all(axis=1)


def n_mpjpe(pred: np.ndarray, gt: np.ndarray) -> float:
    """MPJPE after scaling each root-relative prediction by the least-squares factor onto the
    root-relative ground truth (no rotation): for references in their own metric scale."""
    p = root_relative(np.asarray(pred, np.float64))
    g = root_relative(np.asarray(gt, np.float64))
    scale = (p * g).sum(axis=(1, 2)) / np.maximum((p * p).sum(axis=(1, 2)), 1e-12)
    return float(np.linalg.norm(scale[:, None, None] * p - g, axis=-1).mean())


def separation_ratio_3d(pred: np.ndarray, gt: np.ndarray) -> float:
    """3D twin of ``metrics.left_right_separation_ratio``: mean distance between left/right
    joint pairs (``skeleton.FLIP_PAIRS``), prediction over reference."""
    a = [i for i, _ in skeleton.FLIP_PAIRS]
    b = [j for _, j in skeleton.FLIP_PAIRS]
    ref = np.linalg.norm(gt[:, a] - gt[:, b], axis=-1).mean()
    if not ref > 0:
        return float("nan")
    return float(np.linalg.norm(pred[:, a] - pred[:, b], axis=-1).mean() / ref)


def pose3d_block(pred_mm: np.ndarray, gt_mm: np.ndarray, reference: str) -> dict[str, Any]:
    """Root-relative 3D metrics of (N, 17, 3) mm arrays (frames already selected)."""
    out: dict[str, Any] = {"reference": reference, "frames": int(len(gt_mm))}
    if not len(gt_mm):
        return out
    err = np.linalg.norm(root_relative(pred_mm) - root_relative(gt_mm), axis=-1)
    out.update({
        "mpjpe_mm": mpjpe(pred_mm, gt_mm),
        "pa_mpjpe_mm": pa_mpjpe(pred_mm, gt_mm),
        "n_mpjpe_mm": n_mpjpe(pred_mm, gt_mm),
        "left_right_separation_3d": separation_ratio_3d(root_relative(pred_mm),
                                                        root_relative(gt_mm)),
        "per_joint_mpjpe_mm": {n: float(v)
                               for n, v in zip(skeleton.JOINT_NAMES, err.mean(axis=0),
                                               strict=True)},
    })  # fmt: skip
    return out


def mask_counts(block_masks_img: Sequence[np.ndarray], teacher: np.ndarray) -> np.ndarray:
    """(B, 4) = person, person hit, executed, pixels per block (``MaskStats``), each block's
    image-resolution execution mask (uint8 0/255) compared at the teacher mask's resolution."""
    th, tw = teacher.shape
    sil = (teacher >= MASK_ON)[None]
    rows = []
    for m in block_masks_img:
        small = cv2.resize(m, (tw, th), interpolation=cv2.INTER_NEAREST) >= MASK_ON
        st = MaskStats()
        st.update(small[None].astype(np.uint8), sil)
        rows.append((st.person, st.person_hit, st.executed, st.pixels))
    return np.array(rows, np.int64).reshape(len(rows), 4)


def mask_block(counts: np.ndarray, density: np.ndarray, blocks: Sequence[int]) -> dict[str, Any]:
    """Pooled recall / precision / area density per block from (N, B, 4) counts and the mean
    executed share of backbone MACs from (N,) densities."""
    tot = counts.sum(axis=0) if len(counts) else np.zeros((len(blocks), 4), np.int64)
    per_block = {}
    for k, b in enumerate(blocks):
        st = MaskStats(*(int(v) for v in tot[k]))
        per_block[str(b)] = {"recall": st.recall, "precision": st.precision,
                             "area_density": st.density}  # fmt: skip
    recalls = np.array([v["recall"] for v in per_block.values()], np.float64)
    return {
        "frames": int(len(density)),
        "backbone_macs_executed": float(np.mean(density)) if len(density) else float("nan"),
        "min_block_recall": float(np.nanmin(recalls)) if np.isfinite(recalls).any()
        else float("nan"),
        "per_block": per_block,
    }


def relative_differences(base: Any, other: Any, prefix: str = "") -> dict[str, float | None]:
    """Flattened ``(other - base) / |base|`` of every number both nested dicts hold (None where
    the base is 0 or either is missing/NaN)."""
    out: dict[str, float | None] = {}
    if isinstance(base, dict) and isinstance(other, dict):
        for k in base:
            if k in other:
                out.update(relative_differences(base[k], other[k], f"{prefix}{k}."))
        return out
    if isinstance(base, (int, float)) and isinstance(other, (int, float)) and not isinstance(
        base, bool
    ):
        a, b = float(base), float(other)
        key = prefix[:-1]
        out[key] = ((b - a) / abs(a)) if a and math.isfinite(a) and math.isfinite(b) else None
    return out


def json_safe(value: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python, recursively."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------------------------------------
# Data


def heldout_sources(root: Path, requested: Sequence[str] | None) -> dict[str, LabelSet]:
    """The label sets to evaluate: ``requested`` ids, default every held-out source."""
    if not root.is_dir():
        raise NoLabels(f"no teacher-label cache at {root}: run ./run label first")
    corpus = load_corpus(root)
    if requested:
        missing = [s for s in requested if s not in corpus]
        if missing:
            raise NoLabels(f"sources {missing} not in {root} (have {sorted(corpus)}): run "
                           "./run label --sources " + ",".join(missing))  # fmt: skip
        return {s: corpus[s] for s in requested}
    held = {k: v for k, v in corpus.items() if v.split == "heldout"}
    if not held:
        raise NoLabels(f"no held-out source in {root} (have {sorted(corpus)}): run ./run label")
    return held


def select_rows(n: int, max_frames: int) -> list[int]:
    """All rows, or ``max_frames`` of them evenly spread (so every view/part is represented)."""
    if max_frames <= 0 or max_frames >= n:
        return list(range(n))
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, max_frames)})


def iter_rows(ls: LabelSet, rows: list[int]) -> Iterator[tuple[int, np.ndarray]]:
    """(row, RGB image) of the chosen rows, decoded as :func:`iter_images` does."""
    frames = ls.manifest["frames"]
    sub = dataclasses.replace(ls, manifest={**ls.manifest, "frames": [frames[r] for r in rows]})
    for k, image in iter_images(sub):
        yield rows[k], image


def triangulated_mm(ls: LabelSet) -> np.ndarray:
    """(N, 17, 3) mm, each frame's triangulated joints in its own view's camera frame; NaN
    where the source has no triangulation, the frame is invalid or the view is unknown
    (``label_cache.triangulated_per_row``)."""
    return triangulated_per_row(ls) * 1000.0


def frame_intrinsics(ls: LabelSet, row: int, width: int, height: int) -> Intrinsics | None:
    """The view's calibrated K (``triangulated.npz``) for a multiview frame, else None."""
    tri = ls.triangulated
    view = ls.manifest["frames"][row].get("view")
    if tri is None or "K" not in tri or view is None:
        return None
    views = [str(v) for v in tri["views"]]
    if view not in views:
        return None
    return Intrinsics.from_k(tri["K"][views.index(view)], width, height)


def person_fill(teacher_mask: np.ndarray | None) -> float:
    """Share of the image the teacher's person mask covers (NaN without a mask)."""
    if teacher_mask is None:
        return float("nan")
    return float((teacher_mask >= MASK_ON).mean())


# ---------------------------------------------------------------------------------------------
# Models


class _Recorder(Backend):
    """Delegates to a backend and keeps the last :class:`InferenceResult` (its per-block masks
    are not in :class:`PoseResult`)."""

    def __init__(self, inner: Backend, sink: _Recorder | None = None) -> None:
        self.inner = inner
        self.info = inner.info
        self.name = inner.name
        self.last: InferenceResult | None = None
        self.last_size = inner.info.input_size
        self.sink = sink  # the tracking crops' session reports to the whole frame's recorder

    def infer(self, tensor: np.ndarray) -> InferenceResult:
        out = self.inner.infer(tensor)
        target = self.sink or self
        target.last, target.last_size = out, self.info.input_size
        return out

    def set_mask_threshold(self, probability: float) -> None:
        self.inner.set_mask_threshold(probability)

    def set_region(self, cells: np.ndarray | None) -> bool:
        return self.inner.set_region(cells)

    def close(self) -> None:
        self.inner.close()


@dataclasses.dataclass
class Model:
    name: str
    path: Path
    recorder: _Recorder
    estimator: PoseEstimator
    gated_blocks: list[int]
    record: dict[str, Any]
    smoother: PoseSmoother


def open_model(path: Path, name: str, args: argparse.Namespace) -> Model:
    def open_at(size: int | None, width: int | None = None) -> Backend:
        own = {"precision": args.precision} if args.backend == "openvino" else {}
        return create_backend(args.backend, path, args.device,
                              head_gating=not args.no_head_gating,
                              mask_threshold=args.mask_threshold, input_size=size,
                              input_width=width,
                              num_threads=None if args.backend == "torch" else args.threads,
                              **own)  # fmt: skip

    # as in the node: a gated model's crops stay square (its masks are), a dense one's strips
    backend, crop_session, strip_sessions = open_tracking_sessions(
        open_at, args.input_size or None, args.crop_input_size or None, args.crop_input_widths)
    rec = _Recorder(backend)
    crop = None if crop_session is None else _Recorder(crop_session, sink=rec)
    crop_size = (crop or rec).info.input_size
    strips = [_Recorder(s, sink=rec) for s in strip_sessions]
    # --track is the node's video path (crop, region from the previous pose, dense until a
    # person is found); without it every frame is a still read whole by the masks' own decision
    est = PoseEstimator(rec, confidence_threshold=args.confidence_threshold,
                        track_person=args.track,
                        region_from_pose=args.track or args.whole_frame_regions,
                        region_expand=args.region_expand, region_margin=args.region_margin,
                        crop_backend=crop, strip_backends=strips,
                        strip_margin=args.strip_margin, recheck_ratio=args.recheck_ratio)
    gated = [int(i) for i in backend.geometry.gated_indices] if backend.info.gated else []
    meta = read_metadata(path)
    smoothing = SmoothingConfig(args.smooth_min_cutoff, args.smooth_beta)
    return Model(name, path, rec, est, gated, smoother=PoseSmoother(smoothing), record={
        "name": name,
        "path": str(path),
        "model_hash": backend.info.model_hash,
        "sha256": sha256_file(path),
        "input_size": backend.info.input_size,
        "crop_input_size": crop_size,
        "crop_input_widths": [s.info.input_width for s in strips],
        "strip_margin": args.strip_margin,
        "gated": bool(gated),
        "gated_blocks": gated,
        "meta_source": meta["meta"].get("source"),
    })  # fmt: skip


def frame_time(index: int | None, fps: float | None) -> float | None:
    """A video frame's time in seconds (its index over the clip's rate); None for a still."""
    if index is None or not fps or fps <= 0:
        return None
    return float(index) / float(fps)


def box_of(result: PoseResult, w: int, h: int, size: int) -> Letterbox:
    """The input transform the estimator used for ``result``."""
    if result.roi is None:
        return Letterbox.fit(w, h, size)
    return Letterbox.window(w, h, size, *result.roi)


class MoveNetReference:
    """MoveNet's heads + decoding on the letterboxed whole frame -> our joints in image px."""

    def __init__(self, path: Path, device: str) -> None:
        dev = "cpu" if device in ("auto", "cpu") or not torch.cuda.is_available() else device
        net, info = load_checkpoint(path, map_location=dev)
        if net.movenet is None:
            raise ValueError(f"{path} has no MoveNet heads (import one with ./run import-weights)")
        self.net: PoseNetwork = net
        self.size = int(net.cfg.input_size)
        self.fill = mean_fill(tuple(net.cfg.input_mean))
        self.record = {"path": str(path), "model_hash": info["model_hash"],
                       "sha256": sha256_file(path), "input_size": self.size}  # fmt: skip

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(17, 2) px and (17,) scores in our joint order (``teachers.movenet_map``)."""
        h, w = rgb.shape[:2]
        canvas, box = letterbox(rgb, self.size, self.fill)
        kp = movenet_keypoints(self.net, [canvas])[0]  # (17, 3) y, x, score
        joints, scores = map_to_h36m(box.normalised_to_image(kp[:, [1, 0]]), kp[:, 2])
        return joints, scores


# ---------------------------------------------------------------------------------------------
# Evaluation


def source_reference(ls: LabelSet, rows: list[int]) -> dict[str, np.ndarray]:
    """The references of ``rows`` of one source: BlazePose (``bp_*``: detected, h36m px,
    visibility, world mm), the triangulated 3D (``tri_mm``, NaN where none), and room for the
    person fill and MoveNet's answer (NaN until filled)."""
    bp = ls.blazepose
    return {
        "bp_detected": bp["detected"][rows].astype(bool),
        "bp_px": bp["h36m_px"][rows].astype(np.float64),
        "bp_visibility": bp["h36m_visibility"][rows].astype(np.float64),
        "bp_world_mm": bp["h36m_world_m"][rows].astype(np.float64) * 1000.0,
        "tri_mm": triangulated_mm(ls)[rows],
        "fill": np.full(len(rows), np.nan),
        "mn_px": np.full((len(rows), skeleton.NUM_JOINTS, 2), np.nan),
        "mn_score": np.full((len(rows), skeleton.NUM_JOINTS), np.nan),
    }


def _empty_model_arrays(n: int, blocks: int) -> dict[str, np.ndarray]:
    return {
        "px": np.full((n, skeleton.NUM_JOINTS, 2), np.nan),
        "mm": np.full((n, skeleton.NUM_JOINTS, 3), np.nan),
        "found": np.zeros(n, bool),
        "cropped": np.zeros(n, bool),
        "region": np.zeros(n, bool),
        "density": np.full(n, np.nan),
        "macs_vs_whole": np.full(n, np.nan),
        "strip": np.zeros(n, bool),
        "rechecked": np.zeros(n, bool),
        "mask_counts": np.zeros((n, blocks, 4), np.int64),
        "ms_total": np.full(n, np.nan),
        "ms_inference": np.full(n, np.nan),
    }


def counted_joints(ref: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per frame BlazePose-visible joints (N, 17) and the teacher box size (N,) of a
    :func:`source_reference` dict (the joints and normaliser of every PCK here)."""
    vis = (np.nan_to_num(ref["bp_visibility"]) >= VISIBLE) & ref["bp_detected"][:, None]
    vis &= np.isfinite(ref["bp_px"]).all(axis=-1)
    with warnings.catch_warnings():  # frames without a counted joint: box 0, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        box = bbox_size(np.nan_to_num(ref["bp_px"]), vis)
    return vis, box


def reference_metrics(ref: dict[str, np.ndarray], with_movenet: bool) -> dict[str, Any]:
    """Model-independent numbers: how far the references are from each other."""
    vis, box = counted_joints(ref)
    out: dict[str, Any] = {
        "frames": int(len(box)),
        "frames_blazepose_person": int(ref["bp_detected"].sum()),
        "frames_triangulated": int(np.isfinite(ref["tri_mm"]).all(axis=(1, 2)).sum()),
        "person_fill_mean": float(np.nanmean(ref["fill"])) if np.isfinite(ref["fill"]).any()
        else float("nan"),
        "frames_small_person": int((ref["fill"] < SMALL_PERSON_FRACTION).sum()),
    }
    if with_movenet:
        out["movenet_vs_blazepose"] = pck_block(ref["mn_px"], ref["bp_px"], vis, box,
                                                MOVENET_JOINTS)  # fmt: skip
        out["movenet_mean_score"] = float(np.nanmean(ref["mn_score"][:, MOVENET_JOINTS]))
    sel = (ref["bp_detected"] & np.isfinite(ref["tri_mm"]).all(axis=(1, 2))
           & np.isfinite(ref["bp_world_mm"]).all(axis=(1, 2)))  # fmt: skip
    if sel.any():
        out["blazepose_world_vs_triangulated"] = pose3d_block(
            ref["bp_world_mm"][sel], ref["tri_mm"][sel],
            "BlazePose world landmarks (hip-centred, its own axes) vs the triangulated labels "
            "in the view's camera frame: mpjpe assumes BlazePose's axes are the camera's",
        )
    return out


def model_metrics(ref: dict[str, np.ndarray], ours: dict[str, np.ndarray],
                  gated_blocks: Sequence[int], with_movenet: bool) -> dict[str, Any]:
    """Every number of one checkpoint on one set of frames (a source or all of them)."""
    vis, box = counted_joints(ref)
    det = ref["bp_detected"]
    out: dict[str, Any] = {
        "frames": int(len(det)),
        "frames_blazepose_person": int(det.sum()),
        "person_found_rate": float(ours["found"][det].mean()) if det.any() else float("nan"),
        "person_found_where_blazepose_none": float(ours["found"][~det].mean())
        if (~det).any() else float("nan"),
        "pck_vs_blazepose": pck_block(ours["px"], ref["bp_px"], vis, box),
        "pck_vs_blazepose_movenet_joints": pck_block(ours["px"], ref["bp_px"], vis, box,
                                                     MOVENET_JOINTS),
    }  # fmt: skip
    if with_movenet:
        out["pck_vs_movenet"] = pck_block(ours["px"], ref["mn_px"], vis, box, MOVENET_JOINTS)
    frames2d = det & (box > 0)
    out["left_right_separation_2d_vs_blazepose"] = (
        left_right_separation_ratio(ours["px"][frames2d], np.nan_to_num(ref["bp_px"][frames2d]))
        if frames2d.any() else float("nan"))  # fmt: skip
    tri = np.isfinite(ref["tri_mm"]).all(axis=(1, 2))
    if tri.any():
        out["3d_vs_triangulated"] = pose3d_block(
            ours["mm"][tri], ref["tri_mm"][tri],
            "triangulated Pose2Sim labels in the view's camera frame (multiview, close to truth)",
        )
    world = det & np.isfinite(ref["bp_world_mm"]).all(axis=(1, 2))
    if world.any():
        b = pose3d_block(ours["mm"][world], ref["bp_world_mm"][world],
                         "BlazePose world landmarks (a teacher's monocular 3D in its own "
                         "hip-centred frame): only pa_mpjpe_mm and n_mpjpe_mm are meaningful")
        b.pop("mpjpe_mm", None)
        out["3d_vs_blazepose_world"] = b
    if gated_blocks:
        small = ref["fill"] < SMALL_PERSON_FRACTION
        out["masks"] = {
            "all": mask_block(ours["mask_counts"], ours["density"], gated_blocks),
            "small_person": mask_block(ours["mask_counts"][small], ours["density"][small],
                                       gated_blocks),
        }  # fmt: skip
    out["density_mean"] = float(np.nanmean(ours["density"]))
    small = ref["fill"] < SMALL_PERSON_FRACTION
    out["backbone_macs_vs_whole_frame_pass"] = {
        "all": float(np.nanmean(ours["macs_vs_whole"])) if len(det) else float("nan"),
        "small_person": (float(np.nanmean(ours["macs_vs_whole"][small])) if small.any()
                         else float("nan")),
        "definition": "executed backbone MACs of each frame's pass over those of one dense "
                      "pass of the whole frame at the model's input size (area ratio × "
                      "density), averaged over frames; small_person: BlazePose's person mask "
                      f"under {SMALL_PERSON_FRACTION:.0%} of the image",
    }  # fmt: skip
    out["strip_share"] = float(ours["strip"].mean()) if len(det) else float("nan")
    out["tracking_crop_share"] = float(ours["cropped"].mean()) if len(det) else float("nan")
    # frames read whole as well after the crop's confidence fell (recheck_ratio)
    out["recheck_share"] = float(ours["rechecked"].mean()) if len(det) else float("nan")
    # frames whose gated blocks ran the previous pose's region (not the masks' own decision)
    out["region_from_pose_share"] = (float(ours["region"].mean()) if len(det)
                                     else float("nan"))  # fmt: skip
    out["ms_per_frame"] = {"estimator_total": float(np.nanmean(ours["ms_total"])),
                           "inference": float(np.nanmean(ours["ms_inference"]))}  # fmt: skip
    return out


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(out, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                cv2.LINE_AA)  # fmt: skip
    return out


def side_by_side(rgb: np.ndarray, panels: list[tuple[str, np.ndarray | None, np.ndarray | None]],
                 height: int = 480) -> np.ndarray:
    """One row of labelled panels: (title, joints px or None, mask or None) on the frame."""
    h, w = rgb.shape[:2]
    s = height / h
    size = (max(1, round(w * s)), height)
    out = []
    for title, joints, mask in panels:
        img = mask_overlay(rgb, mask) if mask is not None else rgb
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        if joints is not None:
            img = draw_skeleton(img, np.asarray(joints) * s)
        out.append(_label(img, title))
    return np.concatenate(out, axis=1)


def _picture_rows(ref: dict[str, np.ndarray], rows: list[int], count: int) -> set[int]:
    det = [r for r, d in zip(rows, ref["bp_detected"], strict=True) if d]
    if count <= 0 or not det:
        return set()
    return {det[i] for i in select_rows(len(det), count)}


@dataclasses.dataclass
class SourceRun:
    """One source's arrays: references (``ref``) and each checkpoint's (``ours[name]``)."""

    ref: dict[str, np.ndarray]
    ours: dict[str, dict[str, np.ndarray]]
    info: dict[str, Any]
    pictures: list[str]


def run_source(sid: str, ls: LabelSet, models: list[Model], movenet: MoveNetReference | None,
               max_frames: int, pictures: Path | None, pictures_per_source: int) -> SourceRun:
    """Every chosen frame of one source through the references and the checkpoints."""
    rows = select_rows(len(ls.manifest["frames"]), max_frames)
    pos = {r: k for k, r in enumerate(rows)}
    ref = source_reference(ls, rows)
    ours = {m.name: _empty_model_arrays(len(rows), len(m.gated_blocks)) for m in models}
    want = _picture_rows(ref, rows, pictures_per_source) if pictures else set()
    written: list[str] = []
    member = None
    fps = {f.get("member"): f.get("fps") for f in ls.manifest.get("files", [])}
    t0 = time.perf_counter()
    for row, rgb in iter_rows(ls, rows):
        k = pos[row]
        frame = ls.manifest["frames"][row]
        if frame.get("member") != member:  # a new video/view: nothing to track from
            member = frame.get("member")
            for m in models:
                m.estimator.reset_tracking()
                m.smoother.reset()
        stamp = frame_time(frame.get("index"), fps.get(member))
        h, w = rgb.shape[:2]
        intr = frame_intrinsics(ls, row, w, h)
        teacher = ls.mask(frame["id"]) if ref["bp_detected"][k] else None
        ref["fill"][k] = person_fill(teacher)
        if movenet is not None:
            ref["mn_px"][k], ref["mn_score"][k] = movenet(rgb)
        results: dict[str, PoseResult] = {}
        for m in models:
            r = results[m.name] = m.smoother.apply(m.estimator.estimate(rgb, intr), stamp)
            a = ours[m.name]
            a["px"][k], a["mm"][k] = r.joints_px, r.joints_m * 1000.0
            a["found"][k], a["density"][k] = r.person_found, r.density
            a["cropped"][k] = r.roi is not None
            # the backbone's work against one whole-frame pass of the model's own input size
            a["macs_vs_whole"][k] = r.density * r.input_area(m.estimator.backend.info.input_size)
            a["strip"][k] = r.input_hw[0] != r.input_hw[1]
            a["rechecked"][k] = r.rechecked
            a["region"][k] = r.region_from_pose
            a["ms_total"][k] = r.timings_ms["total"]
            a["ms_inference"][k] = r.timings_ms["inference"]
            if m.gated_blocks and teacher is not None and m.recorder.last is not None:
                box = box_of(r, w, h, m.recorder.last_size)
                per_block = [execution_mask([bm], box, (h, w)) for bm in m.recorder.last.masks]
                a["mask_counts"][k] = mask_counts(per_block, teacher)
        if pictures is not None and row in want:
            written.append(str(_write_picture(pictures, sid, frame["id"], rgb, ref, k, models,
                                              results)))  # fmt: skip
    secs = time.perf_counter() - t0
    src = ls.manifest["source"]
    info = {
        "split": src.get("split"), "licence": src.get("licence"),
        "content": src.get("content"), "views": src.get("views"),
        "frames_labelled": len(ls.manifest["frames"]), "frames_evaluated": len(rows),
        "label_step": ls.manifest.get("step"),
        "calibrated_intrinsics": ls.triangulated is not None and "K" in ls.triangulated,
        "seconds": round(secs, 2),
        "seconds_per_frame": round(secs / max(len(rows), 1), 4),
    }  # fmt: skip
    print(f"real_heldout: {sid}: {len(rows)} frames in {secs:.1f} s", file=sys.stderr)
    return SourceRun(ref, ours, info, written)


#: Issue 16's bars for the real held-out frames: (path in a result's "overall", op, value).
TARGETS: dict[str, tuple[tuple[str, ...], str, float]] = {
    "pck@0.1_vs_blazepose": (("pck_vs_blazepose", "pck@0.1"), ">=", 0.80),
    "person_found_rate": (("person_found_rate",), ">=", 0.95),
    "mpjpe_mm_vs_triangulated": (("3d_vs_triangulated", "mpjpe_mm"), "<=", 80.0),
    "pa_mpjpe_mm_vs_triangulated": (("3d_vs_triangulated", "pa_mpjpe_mm"), "<=", 80.0),
    "small_person_min_block_recall": (("masks", "small_person", "min_block_recall"), ">=", 0.95),
    "small_person_backbone_macs": (("masks", "small_person", "backbone_macs_executed"), "<=",
                                   0.35),
}  # fmt: skip


def target_check(overall: dict[str, Any]) -> dict[str, Any]:
    """Each bar of :data:`TARGETS`: value, bar, met (None where the number does not exist)."""
    out: dict[str, Any] = {}
    for name, (path, op, bar) in TARGETS.items():
        v: Any = overall
        for key in path:
            v = v.get(key) if isinstance(v, dict) else None
        ok = None
        if isinstance(v, (int, float)) and math.isfinite(v):
            ok = bool(v >= bar) if op == ">=" else bool(v <= bar)
        out[name] = {"value": v, "bar": f"{op} {bar:g}", "met": ok}
    return out


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    sources = heldout_sources(Path(args.labels), args.sources)
    names = _names(args.checkpoint)
    models = [open_model(Path(p), n, args) for p, n in zip(args.checkpoint, names, strict=True)]
    movenet = None if str(args.movenet).lower() == "none" else MoveNetReference(
        Path(args.movenet), args.device)
    pictures = Path(args.pictures) if args.pictures else None
    t_start = time.perf_counter()
    runs = {sid: run_source(sid, ls, models, movenet, args.max_frames, pictures,
                            args.pictures_per_source)
            for sid, ls in sources.items()}  # fmt: skip
    wall = time.perf_counter() - t_start
    for m in models:
        for b in m.estimator.backends:  # the recorder, and the crops' session if it has one
            b.close()
    n_frames = sum(r.info["frames_evaluated"] for r in runs.values())
    with_mn = movenet is not None
    all_ref = _concat([r.ref for r in runs.values()])
    report: dict[str, Any] = {
        "what": "our checkpoints on real held-out frames vs teachers (BlazePose, MoveNet) and "
                "the triangulated Pose2Sim 3D (issue 16 §3); protocol: the module docstring of "
                "sparse_pose_ros.evaluation.real_heldout",
        "command": "python -m sparse_pose_ros.evaluation.real_heldout "
                   + shlex.join(args.argv),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "torch_threads": torch.get_num_threads(),
        "label_cache": str(args.labels),
        "estimator": {"backend": args.backend, "device": args.device,
                      "precision": args.precision if args.backend == "openvino" else None,
                      "mode": "tracking crop (--track), gated blocks on the previous pose's "
                              "region, dense until a person is found (the node's video path)"
                      if args.track else
                      ("whole letterboxed frame, gated blocks on the previous pose's region, "
                       "dense until a person is found (track_person: false)"
                       if args.whole_frame_regions
                       else "whole letterboxed frame, masks' own decision"),
                      "confidence_threshold": args.confidence_threshold,
                      "mask_threshold": args.mask_threshold,
                      "input_size": args.input_size or "the model's own",
                      "crop_input_size": args.crop_input_size or "input_size",
                      "region_expand": args.region_expand,
                      "region_margin": args.region_margin,
                      "crop_input_widths": list(args.crop_input_widths),
                      "strip_margin": args.strip_margin,
                      "recheck_ratio": args.recheck_ratio if args.track else None,
                      "smoothing": ({"min_cutoff_hz": args.smooth_min_cutoff,
                                     "beta": args.smooth_beta,
                                     "clock": "frame index / the clip's fps"}
                                    if args.smooth_min_cutoff > 0 else "off"),
                      "head_gating": not args.no_head_gating,
                      "intrinsics": "view K from triangulated.npz where present (distortion "
                                    "not removed), else nominal 60° horizontal FoV"},
        "protocol": {
            "pck": f"frames where BlazePose found a person; joints with BlazePose visibility >= "
                   f"{VISIBLE}; correct within alpha x the larger side of the box around "
                   "BlazePose's counted joints (same joints and normaliser for every "
                   "comparison, also against MoveNet)",
            "movenet_joints": {skeleton.JOINT_NAMES[j]: MOVENET_MAPPING[skeleton.JOINT_NAMES[j]]
                               for j in MOVENET_JOINTS},
            "3d": "root-relative (pelvis) mm; PA = similarity Procrustes per frame; N = "
                  "least-squares scale only; 3d_vs_triangulated is the only reference close "
                  "to truth",
            "masks": f"teacher person pixels = BlazePose mask >= {MASK_ON}/255, block masks "
                     "mapped onto the image; small person = the mask fills < "
                     f"{SMALL_PERSON_FRACTION:.0%} of the image",
            "several_people": "BlazePose follows one person, MoveNet takes the one nearest "
                              "the image centre, ours the most prominent: on frames with "
                              "several people they may describe different people. "
                              "same_person_frames / pck@*_same_person (diagnostic): frames where "
                              "the median of the compared joints lies inside the reference's "
                              "box grown by 10 %",
            "relative_difference": "(other - first) / |first| per number; higher is better "
                                   "for PCK, found rate, recall; lower for mm and MACs",
        },
        "checkpoints": [m.record for m in models],
        "movenet_reference": movenet.record if movenet else None,
        "sources": {sid: r.info for sid, r in runs.items()},
        "frames": n_frames,
        "seconds": round(wall, 1),
        "seconds_per_frame": round(wall / max(n_frames, 1), 4),
        "references": {
            **{sid: reference_metrics(r.ref, with_mn) for sid, r in runs.items()},
            "overall": reference_metrics(all_ref, with_mn),
        },
        "results": {},
        "targets": {},
        "lift_from_triangulated_2d": {},
    }
    for m in models:
        per = {sid: model_metrics(r.ref, r.ours[m.name], m.gated_blocks, with_mn)
               for sid, r in runs.items()}  # fmt: skip
        per["overall"] = model_metrics(all_ref, _concat([r.ours[m.name] for r in runs.values()]),
                                       m.gated_blocks, with_mn)  # fmt: skip
        report["results"][m.name] = per
        report["targets"][m.name] = target_check(per["overall"])
        report["lift_from_triangulated_2d"][m.name] = lift_breakdown(m.path, sources)
    if len(models) > 1:
        base = models[0].name
        report["relative_difference"] = {
            f"{m.name} vs {base}": relative_differences(report["results"][base],
                                                        report["results"][m.name])
            for m in models[1:]
        }  # fmt: skip
    if pictures:
        report["pictures"] = [p for r in runs.values() for p in r.pictures]
    return report


def lift_breakdown(path: Path, sources: dict[str, LabelSet]) -> dict[str, Any] | None:
    """The checkpoint's lifter on each triangulated source's exact 2D (``lift_ceiling``):
    what its 3D error would be with perfect 2D; None for a file without a lifter to read
    (an exported graph, a network without one)."""
    if path.suffix != ".safetensors":
        return None
    try:
        net, _ = load_checkpoint(path)
    except CheckpointError:
        return None
    if net.lifter is None:
        return None
    bones = tuple(v / 1000.0 for v in net.cfg.bone_lengths_mm)
    out: dict[str, Any] = {}
    for sid, ls in sources.items():
        tri = ls.triangulated
        if tri is None or "K" not in tri or "joints_cam_m" not in tri:
            continue
        cam, k = triangulated_views(tri)
        if len(cam):
            out[sid] = lift_from_true_2d(net.lifter, bones, net.cfg.depth_range_mm, cam, k)
    return out or None


def _write_picture(folder: Path, sid: str, frame_id: str, rgb: np.ndarray,
                   ref: dict[str, np.ndarray], k: int, models: list[Model],
                   results: dict[str, PoseResult]) -> Path:
    bp = np.where((ref["bp_visibility"][k] >= VISIBLE)[:, None], ref["bp_px"][k], np.nan)
    panels: list[tuple[str, np.ndarray | None, np.ndarray | None]] = [
        (f"ours {m.name}", results[m.name].joints_px, None) for m in models]
    panels.append(("BlazePose (vis>=0.5)", bp, None))
    if np.isfinite(ref["mn_px"][k]).any():
        panels.append(("MoveNet", ref["mn_px"][k], None))
    panels += [(f"mask {m.name} {results[m.name].density:.2f} MACs", None, results[m.name].mask)
               for m in models if m.gated_blocks]  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{frame_id if frame_id.startswith(sid) else f'{sid}_{frame_id}'}.png"
    cv2.imwrite(str(path), side_by_side(rgb, panels)[:, :, ::-1])
    return path


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _names(paths: Sequence[str]) -> list[str]:
    names: list[str] = []
    for p in paths:
        stem = Path(p).stem
        name, i = stem, 2
        while name in names:
            name, i = f"{stem}_{i}", i + 1
        names.append(name)
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="./run eval real", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", action="append", required=True,
                   help=".safetensors checkpoint (repeat: the first is the base of the "
                        "relative differences, e.g. dense then sparse)")
    p.add_argument("--labels", default=str(LABELS_DIR), help="teacher-label cache folder")
    p.add_argument("--sources", type=lambda s: [v for v in s.split(",") if v], default=None,
                   help="comma-separated source ids (default: every held-out source)")
    p.add_argument("--max-frames", type=int, default=0,
                   help="at most this many frames per source, evenly spread (0 = all)")
    p.add_argument("--track", action="store_true",
                   help="the node's tracking crop instead of the whole letterboxed frame")
    p.add_argument("--whole-frame-regions", action="store_true",
                   help="without --track: whole frames, the gated blocks on the previous "
                        "frame's pose region (the node's track_person: false, "
                        "region_from_pose: true)")
    p.add_argument("--movenet", default=str(MOVENET_DEFAULT),
                   help="imported MoveNet checkpoint used as the 2D reference ('none' = skip)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--threads", type=int, default=None, help="CPU threads")
    p.add_argument("--backend", default="torch", choices=("torch", "onnxruntime", "openvino"),
                   help="runtime of the network (torch: the reference; the others run the "
                        "exported graph, e.g. to score OpenVINO's bf16)")
    p.add_argument("--precision", default="f32", choices=OPENVINO_PRECISIONS,
                   help="OpenVINO's inference precision (with --backend openvino)")
    p.add_argument("--confidence-threshold", type=float, default=0.3)
    p.add_argument("--mask-threshold", type=float, default=0.5)
    p.add_argument("--input-size", type=int, default=0,
                   help="network input side in pixels (the node's input_size); 0 = the model's own")
    p.add_argument("--crop-input-size", type=int, default=0,
                   help="with --track: input side for the tracking crops (the node's "
                        f"crop_input_size, there {CROP_INPUT_SIZE} by default); 0 = "
                        "--input-size")
    p.add_argument("--crop-input-widths", type=int, nargs="*", default=[],
                   help="with --track: strips of the crop the network may read instead of "
                        "its square when the person fits (the node's crop_input_widths; "
                        "dense models)")
    p.add_argument("--strip-margin", type=float, default=STRIP_MARGIN,
                   help="with --crop-input-widths: a strip holds the person when their joint "
                        "box's width x this fits it (the node's strip_margin)")
    p.add_argument("--region-expand", type=float, default=REGION_EXPAND,
                   help="with --track or --whole-frame-regions: growth of the previous joint "
                        "box into the region")
    p.add_argument("--region-margin", type=int, default=REGION_MARGIN,
                   help="with --track or --whole-frame-regions: 16-px cells added around "
                        "the grown box")
    p.add_argument("--recheck-ratio", type=float, default=RECHECK_RATIO,
                   help="with --track: a tracked frame below this x the track's running "
                        "confidence is read whole as well (the node's recheck_ratio; 0 = off)")
    p.add_argument("--smooth-min-cutoff", type=float, default=0.0,
                   help="One Euro smoothing of each clip's 3D joints, cutoff at rest in Hz "
                        "(the node's smoothing_min_cutoff_hz; 0 = off)")
    p.add_argument("--smooth-beta", type=float, default=SmoothingConfig.beta,
                   help="One Euro cutoff increase per m/s (the node's smoothing_beta)")
    p.add_argument("--no-head-gating", action="store_true",
                   help="heads everywhere (the node gates them by default)")
    p.add_argument("--name", default=None,
                   help="result name: results/real_eval_<name>.json (default: the "
                        "checkpoints' stems joined by '_vs_')")
    p.add_argument("--out", default=None, help="output JSON path (overrides --name)")
    p.add_argument("--pictures", nargs="?", const=str(PICTURES_DIR), default=None,
                   help=f"write side-by-side PNGs here (default folder {PICTURES_DIR})")
    p.add_argument("--pictures-per-source", type=int, default=3)
    args = p.parse_args(argv)
    if args.max_frames < 0 or args.pictures_per_source < 0:
        p.error("--max-frames and --pictures-per-source must be >= 0")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    try:  # the estimator's own rule, so the run fails here and not after loading models
        region_expand_value(args.region_expand)
        region_margin_value(args.region_margin)
        recheck_ratio_value(args.recheck_ratio)
        SmoothingConfig(args.smooth_min_cutoff, args.smooth_beta)
        for size in (args.input_size, args.crop_input_size):
            if size:
                check_input_size(size)
        for width in args.crop_input_widths:
            check_input_width(width)
        RoiConfig(strip_margin=args.strip_margin)
        if args.crop_input_widths and not args.track:
            raise ValueError("--crop-input-widths needs --track")
        if args.track and args.whole_frame_regions:
            raise ValueError("--whole-frame-regions reads whole frames: not with --track")
    except ValueError as exc:
        p.error(f"--region-expand / --region-margin / --recheck-ratio / --smooth-* / "
                f"--input-size / --crop-input-widths / --strip-margin: {exc}")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        report = evaluate(args)
    except NoLabels as exc:
        print(f"real_heldout: {exc}", file=sys.stderr)
        return 2
    except (BackendError, CheckpointError, OSError, ValueError) as exc:
        hint = (" (import it with ./run import-weights, or pass --movenet none)"
                if str(args.movenet) in str(exc) else "")
        print(f"real_heldout: {exc}{hint}", file=sys.stderr)
        return 1
    name = args.name or "_vs_".join(_names(args.checkpoint))
    out = Path(args.out) if args.out else RESULTS_DIR / f"real_eval_{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(json_safe(report), indent=1, allow_nan=False) + "\n")
    for mname, per in report["results"].items():
        o = per["overall"]
        line = (f"{mname}: PCK@0.1 vs BlazePose {o['pck_vs_blazepose']['pck@0.1']:.3f}, "
                f"person found {o['person_found_rate']:.3f}")
        if "3d_vs_triangulated" in o:
            t = o["3d_vs_triangulated"]
            line += f", MPJPE {t['mpjpe_mm']:.0f} mm / PA {t['pa_mpjpe_mm']:.0f} mm (triangulated)"
        for sid, c in (report["lift_from_triangulated_2d"].get(mname) or {}).items():
            line += (f"; from {sid}'s exact 2D {c['mpjpe_mm_fitted_root']:.0f} mm "
                     f"({c['mpjpe_mm_true_root']:.0f} with the true root depth)")
        print(line, file=sys.stderr)
    print(f"real_heldout: {report['frames']} frames, {report['seconds_per_frame']:.3f} s/frame "
          f"-> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
