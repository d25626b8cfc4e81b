"""One benchmark, one run, real frames (issue 17 §1): every contender on the same full frames.

    OMP_WAIT_POLICY=PASSIVE python -m sparse_pose_ros.benchmarks real-frames --threads 1 2

writes ``results/real_frames_<t>thread.json`` per thread count and one
accuracy-latency plot ``results/real_frames.png``.

Frames (decoded once, up front, so decoding never lands in a timed call):

* ``real``: every labelled frame of the held-out sources of the teacher-label cache
  (``data_cache/labels``, ``split == "heldout"``: the Sports2D demo video, the Pose2Sim
  single-person trial's four views; ``--sources`` picks others, e.g. ``opencv_vtest`` for many
  small pedestrians, a *training* source), whole camera frames in video order;
* ``synthetic``: the synthetic held-out split (``data_cache/synth_v2/test``, 256 x 256 renders).

How large the people are: the share of the image the teacher's person mask covers (real:
BlazePose's segmentation in the label cache; synthetic: the render's mask), per frame; every
number below is also split into frames where the person fills < 25 % (``small``) and the rest
(``large``), and per source (``source:<id>``); frames without a person count in ``all`` only.

Contenders (:func:`default_contenders`; a missing checkpoint or peer is skipped with its reason
in ``skipped``; ``--contenders`` filters, ``--checkpoint NAME=PATH`` points one elsewhere):

* ``ours_sparse`` / ``ours_sparse_lightning``: the gated checkpoint through the ``sparse-cpu``
  backend (compiled kernel, always sparse: ``adaptive=False``; head gating on as in the node),
  whole letterboxed frame, masks as in the node: the previous frame's person region once a
  frame found someone (``region_from_pose``), the checkpoint's own masks (person locator or mask
  units) otherwise; ``ours_sparse_own_masks``: its own masks on every frame;
  ``ours_sparse_bf16`` / ``ours_sparse_lightning_bf16``: the same with the kernel's GEMMs in
  bf16 on AMX tiles (``kernel_precision="bf16"``; "could not start" on a CPU without AMX);
  ``ours_sparse_ort_head``: ``ours_sparse`` with the person box and the windowed head in ONNX
  Runtime (``head="ort"``: what ran before ``sparse.window_head_plan``; the A/B of that plan);
* ``ours_dense_ort`` / ``ours_dense_lightning_ort``: the dense checkpoint in the
  ``onnxruntime`` backend (what a user gets exporting without masks);
* ``movenet_thunder_ort`` / ``movenet_lightning_ort``: MoveNet as imported, 2D only: backbone +
  FPN + MoveNet's own four heads exported by :class:`.ort_dense.MoveNetDense` (the node's exporter
  writes only our HEMlets head) in ONNX Runtime, decoded by ``model.movenet_head.decode`` (the
  torch path ``evaluation.real_heldout`` scores MoveNet with), mapped to our joints;
* ``ours_dense_openvino`` / ``_bf16`` (and ``ours_dense_lightning_openvino[_bf16]``): the dense
  checkpoint's same portable graph in the ``openvino`` backend at f32 (onnxruntime's numbers)
  and bf16 (AMX; other numbers): the fastest dense runtime here;
* ``ours_dense_tracking_openvino``: the node's default path in f32 (``backend: auto`` on the CPU
  picks openvino for the dense model) and tracking crop (``PoseEstimator(track_person=True)``):
  the dense network on the person's crop once a frame found someone, the crops read at the node's
  ``crop_input_size`` (224; ``--crop-input-size``) by a second session, or through the narrowest
  of its ``crop_input_widths`` strips that holds the person (64 to 192; ``--crop-input-widths``)
  with the node's ``strip_margin`` (``--strip-margin``), whole frames at 256;
  ``_openvino_square``: the same without strips; ``_openvino_192``: the previous default, crops at
  192 read as strips 96 / 128 / 160 with margin 1.5; ``_openvino_bf16_strips``: the same with the
  node's ``openvino_precision`` default, ``bf16_strips`` (the strips in bf16 where the CPU has it
  natively; squares and whole frames f32); ``ours_dense_tracking_ort`` / ``_openvino_bf16``: the
  square crops in onnxruntime / in bf16; ``ours_dense_tracking_ort_192`` / ``_own_size``:
  onnxruntime with crops at 192 / 256; ``ours_sparse_tracking`` / ``_224``: crop *and* masks,
  the crops at the sparse model's own 256 / at the node's 224;
  ``ours_dense_lightning_tracking_openvino`` / ``_bf16_strips``: the node's path (f32 / its
  default precision) on the dense checkpoint trained from Lightning's weights, crops at its own
  192 px read as strips 64 to 160, whole frames at 192; ``_openvino_square``: its crops square;
  ``ours_dense_lightning_node_defaults_256``: the node's path with the model changed to the
  dense Lightning checkpoint (whole frames at its own 256, crops at 224 read as strips 64 to 192,
  bf16 strips);
  ``ours_dense_lightning_node_defaults``: the same with whole frames at 192 (MoveNet Lightning's
  size; the checkpoint's own size when it was measured). The Lightning contenders but the
  default read at 192 (:data:`LIGHTNING_INPUT_SIZE`);
* ``blazepose_full``: MediaPipe BlazePose Full in its own venv (``teachers.peer``), static-image
  mode (detector + landmarks every frame) on lossless PNGs of the same pixels, pinned to as many
  cores as the thread count (CPU affinity: mediapipe picks its own thread count);
  ``blazepose_full_video``: its video (tracking) mode, what a camera node runs, on the same
  frames of each real video in order (the runner decodes the video itself with the peer venv's
  OpenCV; a pixel-mean difference is logged; each sequence's first frame is its start-up and is
  not timed); real video frames only.

Timing: batch 1; per thread count and frame set, the in-process contenders are timed together by
:func:`.timing.time_interleaved` (alternating blocks over the same stretch of time); each call
takes the next frame of the set, every contender the same frame at the same position of its
calls (the same call pattern: the timed frames are the same list for all, checked and recorded
as ``timed_frames_sha1``). A call is one whole frame: image in, joints out (letterbox or crop,
normalise, network, decode / lift, and for ours the execution-mask image the node publishes):
``frame``; ``network`` is the backend's / session's own run inside the same calls. Tracking
restarts where a video (or view) changes; synthetic frames are unrelated stills. BlazePose runs
out of process after the others (its runner's timer around ``Pose.process``).

Accuracy, on every frame of a set, from the first time each contender saw it (the run's first
thread count), by :mod:`..evaluation.real_heldout`'s rules: 2D PCK@0.1 / @0.2 against BlazePose
(real) or the render's 2D (synthetic) on the joints MoveNet has too (15; and all 17), BlazePose
visibility >= 0.5, normalised by the larger side of the reference's box; person-found rate; 3D
root-relative MPJPE / PA-MPJPE (mm) against the triangulated Pose2Sim labels (real, where they
exist) or the render's 3D (synthetic). MACs: the backbone's dense MACs at the contender's input
size, times its executed share per frame for a gated model (``PoseResult.density``) and the
area of the input it read (a crop, a strip) over the whole frame's.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import skeleton
from ..evaluation.real_heldout import (
    MOVENET_JOINTS,
    counted_joints,
    frame_intrinsics,
    heldout_sources,
    iter_rows,
    json_safe,
    pck_block,
    person_fill,
    pose3d_block,
    select_rows,
    source_reference,
)
from ..pipeline.lift import Intrinsics
from ..pipeline.roi import CROP_INPUT_SIZE as NODE_CROP_INPUT_SIZE
from ..pipeline.roi import CROP_INPUT_WIDTHS as NODE_CROP_INPUT_WIDTHS
from ..pipeline.roi import STRIP_MARGIN as NODE_STRIP_MARGIN
from ..pipeline.roi import RoiConfig
from ..provenance import load_average, machine_info
from ..runtime.options import input_size_problem
from ..training.evaluation import SMALL_PERSON_FRACTION
from .budget_common import latency_stats, source_state
from .timing import thread_wait_env, time_interleaved

LOG = logging.getLogger(__name__)

LABELS_DIR = Path("data_cache/labels")
#: The synthetic held-out split: the first of these that exists.
SYNTHETIC_DIRS: tuple[str, ...] = ("data_cache/synth_v2/test", "data_cache/synth_v1/test")
RESULTS_DIR = Path("results")
KINDS = ("sparse", "dense", "movenet", "blazepose")
GROUPS = ("all", "small", "large")


@dataclasses.dataclass(frozen=True)
class ContenderSpec:
    """One contender: ``kind`` sparse (sparse-cpu backend), dense (onnxruntime backend), movenet
    (MoveNet's own graph in ONNX Runtime, 2D) or blazepose (the peer); ``track``: the node's
    tracking crop."""

    name: str
    kind: str
    checkpoint: str | None
    track: bool = False
    label: str = ""
    #: masks from the previous frame's person region (the node's ``region_from_pose``)
    region: bool = True
    #: network input side (the node's ``input_size``); None = the checkpoint's own
    input_size: int | None = None
    #: with ``track``: input side of the tracking crops (the node's ``crop_input_size``, a
    #: second session of the model); None = ``input_size``
    crop_input_size: int | None = None
    #: kind dense: the runtime of the portable graph, "onnxruntime" or "openvino"
    runtime: str = "onnxruntime"
    #: runtime openvino: its inference precision ("f32" gives onnxruntime's numbers); kind
    #: sparse: the kernel's (``sparse-cpu``'s ``kernel_precision``: "f32" or "bf16" on AMX)
    precision: str = "f32"
    #: with ``track`` (dense): strips of the crop read when the person fits (the node's
    #: ``crop_input_widths``, a session each)
    crop_input_widths: tuple[int, ...] = ()
    #: with strips: a strip holds the person when their joint box's width x this fits it (the
    #: node's ``strip_margin``)
    strip_margin: float = NODE_STRIP_MARGIN
    #: kind sparse: where the neck + head run (``sparse-cpu``'s ``head``: "auto" compiles them
    #: where the kernel can, "ort" keeps the person box and the windowed head in ONNX Runtime)
    head: str = "auto"


#: MoveNet Lightning's own input side: the Lightning pair's contenders but ``_node_defaults_256``
#: read whole frames (and their crops, unless given) at it, the issue's "α 1.0" reference, as
#: measured before the dense checkpoint's own size became 256 (``readout_settings``).
LIGHTNING_INPUT_SIZE = 192
#: Strips of the Lightning model's own 192-px tracking crop: the node's widths below 192.
LIGHTNING_CROP_INPUT_WIDTHS: tuple[int, ...] = (64, 96, 128, 160)


def default_contenders() -> list[ContenderSpec]:
    """Every contender the issue names, in plot order (missing files are skipped at run time)."""
    sparse, dense = "models/pose_sparse.safetensors", "models/pose_dense.safetensors"
    lightning = "models/pose_lightning_dense.safetensors"
    lightning_sparse = "models/pose_lightning_sparse.safetensors"
    return [
        ContenderSpec("ours_sparse", "sparse", sparse, label="ours sparse, full frame"),
        ContenderSpec("ours_sparse_bf16", "sparse", sparse, precision="bf16",
                      label="ours sparse, full frame, GEMMs in bf16 (AMX)"),
        ContenderSpec("ours_sparse_ort_head", "sparse", sparse, head="ort",
                      label="ours sparse, full frame, the person box and windowed head in "
                      "ONNX Runtime"),
        ContenderSpec("ours_sparse_own_masks", "sparse", sparse, region=False,
                      label="ours sparse, full frame, own masks only"),
        ContenderSpec("ours_sparse_lightning", "sparse", lightning_sparse,
                      input_size=LIGHTNING_INPUT_SIZE, label="ours sparse Lightning, full frame"),
        ContenderSpec("ours_sparse_lightning_bf16", "sparse", lightning_sparse, precision="bf16",
                      input_size=LIGHTNING_INPUT_SIZE,
                      label="ours sparse Lightning, full frame, GEMMs in bf16 (AMX)"),
        ContenderSpec("ours_dense_ort", "dense", dense, label="ours dense ORT, full frame"),
        ContenderSpec("ours_dense_lightning_ort", "dense", lightning,
                      input_size=LIGHTNING_INPUT_SIZE,
                      label="ours dense Lightning ORT, full frame"),
        ContenderSpec("movenet_thunder_ort", "movenet",
                      "data_cache/pretrained/movenet-thunder.safetensors",
                      label="MoveNet Thunder ORT (2D)"),
        ContenderSpec("movenet_lightning_ort", "movenet",
                      "data_cache/pretrained/movenet-lightning.safetensors",
                      label="MoveNet Lightning ORT (2D)"),
        ContenderSpec("ours_dense_tracking_ort", "dense", dense, track=True,
                      crop_input_size=NODE_CROP_INPUT_SIZE,
                      label=f"ours dense ORT, tracking crop @{NODE_CROP_INPUT_SIZE}"),
        ContenderSpec("ours_dense_tracking_ort_own_size", "dense", dense, track=True,
                      label="ours dense ORT, tracking crop @256"),
        ContenderSpec("ours_dense_tracking_ort_192", "dense", dense, track=True,
                      crop_input_size=192, label="ours dense ORT, tracking crop @192"),
        ContenderSpec("ours_dense_openvino", "dense", dense, runtime="openvino",
                      label="ours dense OpenVINO f32, full frame"),
        ContenderSpec("ours_dense_openvino_bf16", "dense", dense, runtime="openvino",
                      precision="bf16", label="ours dense OpenVINO bf16, full frame"),
        ContenderSpec("ours_dense_lightning_openvino", "dense", lightning, runtime="openvino",
                      input_size=LIGHTNING_INPUT_SIZE,
                      label="ours dense Lightning OpenVINO f32, full frame"),
        ContenderSpec("ours_dense_lightning_openvino_bf16", "dense", lightning,
                      runtime="openvino", precision="bf16", input_size=LIGHTNING_INPUT_SIZE,
                      label="ours dense Lightning OpenVINO bf16, full frame"),
        ContenderSpec("ours_dense_tracking_openvino", "dense", dense, track=True,
                      runtime="openvino", crop_input_size=NODE_CROP_INPUT_SIZE,
                      crop_input_widths=NODE_CROP_INPUT_WIDTHS,
                      label=f"ours dense OpenVINO f32, tracking crop @{NODE_CROP_INPUT_SIZE}, "
                            "strips (the node's path in f32)"),
        ContenderSpec("ours_dense_tracking_openvino_bf16_strips", "dense", dense, track=True,
                      runtime="openvino", precision="bf16_strips",
                      crop_input_size=NODE_CROP_INPUT_SIZE,
                      crop_input_widths=NODE_CROP_INPUT_WIDTHS,
                      label=f"ours dense OpenVINO, tracking crop @{NODE_CROP_INPUT_SIZE}, "
                            "strips in bf16, squares and whole frames f32 (the node's default: "
                            "backend auto, openvino_precision bf16_strips)"),
        ContenderSpec("ours_dense_tracking_openvino_192", "dense", dense, track=True,
                      runtime="openvino", crop_input_size=192, crop_input_widths=(96, 128, 160),
                      strip_margin=1.5,
                      label="ours dense OpenVINO f32, tracking crop @192, strips 96-160, "
                            "margin 1.5 (the previous default)"),
        ContenderSpec("ours_dense_tracking_openvino_square", "dense", dense, track=True,
                      runtime="openvino", crop_input_size=NODE_CROP_INPUT_SIZE,
                      label=f"ours dense OpenVINO f32, tracking crop @{NODE_CROP_INPUT_SIZE}, "
                            "squares only"),
        ContenderSpec("ours_dense_tracking_openvino_bf16", "dense", dense, track=True,
                      runtime="openvino", precision="bf16", crop_input_size=NODE_CROP_INPUT_SIZE,
                      label=f"ours dense OpenVINO bf16, tracking crop @{NODE_CROP_INPUT_SIZE}"),
        ContenderSpec("ours_dense_lightning_tracking_openvino", "dense", lightning, track=True,
                      runtime="openvino", crop_input_widths=LIGHTNING_CROP_INPUT_WIDTHS,
                      input_size=LIGHTNING_INPUT_SIZE,
                      label="ours dense Lightning OpenVINO f32, tracking crop @192 (its own "
                            "size), strips 64-160 (the node's path on Lightning's weights)"),
        ContenderSpec("ours_dense_lightning_tracking_openvino_bf16_strips", "dense", lightning,
                      track=True, runtime="openvino", precision="bf16_strips",
                      crop_input_widths=LIGHTNING_CROP_INPUT_WIDTHS,
                      input_size=LIGHTNING_INPUT_SIZE,
                      label="ours dense Lightning OpenVINO, tracking crop @192, strips 64-160 "
                            "in bf16, squares and whole frames f32"),
        ContenderSpec("ours_dense_lightning_node_defaults", "dense", lightning, track=True,
                      runtime="openvino", precision="bf16_strips",
                      crop_input_size=NODE_CROP_INPUT_SIZE,
                      crop_input_widths=NODE_CROP_INPUT_WIDTHS,
                      input_size=LIGHTNING_INPUT_SIZE,
                      label=f"ours dense Lightning, OpenVINO, tracking crop @{NODE_CROP_INPUT_SIZE}"
                            ", strips in bf16, whole frames @192 f32"),
        ContenderSpec("ours_dense_lightning_node_defaults_256", "dense", lightning, track=True,
                      runtime="openvino", precision="bf16_strips", input_size=256,
                      crop_input_size=NODE_CROP_INPUT_SIZE,
                      crop_input_widths=NODE_CROP_INPUT_WIDTHS,
                      label=f"ours dense Lightning, OpenVINO, tracking crop @{NODE_CROP_INPUT_SIZE}"
                            ", strips in bf16, whole frames @256 f32 (its own size)"),
        ContenderSpec("ours_dense_lightning_tracking_openvino_square", "dense", lightning,
                      track=True, runtime="openvino",
                      input_size=LIGHTNING_INPUT_SIZE,
                      label="ours dense Lightning OpenVINO f32, tracking crop @192, squares only"),
        ContenderSpec("ours_sparse_tracking", "sparse", sparse, track=True,
                      label="ours sparse, tracking crop @256 (its own size)"),
        ContenderSpec("ours_sparse_tracking_224", "sparse", sparse, track=True,
                      crop_input_size=NODE_CROP_INPUT_SIZE,
                      label=f"ours sparse, tracking crop @{NODE_CROP_INPUT_SIZE} (the node's "
                            "crop size)"),
        ContenderSpec("blazepose_full", "blazepose", None, label="BlazePose Full (static)"),
        ContenderSpec("blazepose_full_video", "blazepose", None, track=True,
                      label="BlazePose Full (video mode: tracking)"),
    ]  # fmt: skip


#: The contender that runs the node's default path in f32 (its crop size follows
#: ``--crop-input-size``); the node's precision (``bf16_strips``) is its ``_bf16_strips`` twin.
NODE_TRACKING = "ours_dense_tracking_openvino"
#: Contenders whose crop size follows ``--crop-input-size`` with it (same path, other runtimes).
CROP_FOLLOWERS = ("ours_dense_tracking_ort", "ours_dense_tracking_openvino_bf16",
                  "ours_dense_tracking_openvino_square",
                  "ours_dense_tracking_openvino_bf16_strips")
#: Contenders whose strips follow ``--crop-input-widths`` / ``--strip-margin`` (the node's path
#: in another precision).
STRIP_FOLLOWERS = (NODE_TRACKING, "ours_dense_tracking_openvino_bf16_strips")


class Skip(Exception):
    """A contender that cannot run here; the message is the logged and recorded reason."""


# ---------------------------------------------------------------------------------------------
# Frames


@dataclasses.dataclass
class Frame:
    """One frame as every contender gets it: RGB pixels, intrinsics (None: nominal FoV), the
    person fill (NaN: no person), the sequence it belongs to (tracking restarts when it
    changes) and, for a video frame, the file and frame index (BlazePose's video mode)."""

    id: str
    source: str
    sequence: str
    rgb: np.ndarray
    intrinsics: Intrinsics | None
    fill: float
    video: str | None = None
    index: int | None = None


@dataclasses.dataclass
class FrameSet:
    """Frames and their references: ``ref`` holds ``bp_detected`` (N,), ``bp_px`` (N, 17, 2),
    ``bp_visibility`` (N, 17) and ``tri_mm`` (N, 17, 3; NaN where none), named as
    ``evaluation.real_heldout.source_reference`` names them whatever the reference is."""

    name: str
    frames: list[Frame]
    ref: dict[str, np.ndarray]
    reference_2d: str
    reference_3d: str
    sources: dict[str, Any]

    def groups(self) -> dict[str, np.ndarray]:
        """Frame selections: all, person fill < 25 % / >= 25 %, and per source if several."""
        fill = np.array([f.fill for f in self.frames], np.float64)
        out = {"all": np.ones(len(fill), bool), "small": fill < SMALL_PERSON_FRACTION,
               "large": fill >= SMALL_PERSON_FRACTION}  # fmt: skip
        sources = list(dict.fromkeys(f.source for f in self.frames))
        if len(sources) > 1:
            for sid in sources:
                out[f"source:{sid}"] = np.array([f.source == sid for f in self.frames])
        return out

    def record(self) -> dict[str, Any]:
        fill = np.array([f.fill for f in self.frames], np.float64)
        have = fill[np.isfinite(fill)]
        sizes = sorted({f"{f.rgb.shape[1]}x{f.rgb.shape[0]}" for f in self.frames})
        return {
            "frames": len(self.frames),
            "image_sizes": sizes,
            "frames_with_person": int(self.ref["bp_detected"].sum()),
            "frames_small_person": int((fill < SMALL_PERSON_FRACTION).sum()),
            "frames_large_person": int((fill >= SMALL_PERSON_FRACTION).sum()),
            "person_fill": {
                "what": "share of the image the person mask covers",
                **({"min": float(have.min()), "p10": float(np.percentile(have, 10)),
                    "median": float(np.median(have)), "p90": float(np.percentile(have, 90)),
                    "max": float(have.max())} if have.size else {}),
            },
            "reference_2d": self.reference_2d,
            "reference_3d": self.reference_3d,
            "frames_with_3d": int(np.isfinite(self.ref["tri_mm"]).all(axis=(1, 2)).sum()),
            "sources": self.sources,
        }  # fmt: skip


def load_real(labels: Path, sources: Sequence[str] | None, max_frames: int,
              contiguous: bool = False) -> FrameSet:
    """The labelled frames of the held-out (or ``sources``) label sets, in video order, at most
    ``max_frames`` per source, evenly spread (``real_heldout.select_rows``), or with
    ``contiguous`` the source's first ``max_frames`` labelled frames (what a camera node sees:
    consecutive frames, at the label cache's step)."""
    frames: list[Frame] = []
    refs: list[dict[str, np.ndarray]] = []
    info: dict[str, Any] = {}
    for sid, ls in heldout_sources(labels, sources).items():
        paths = {f["member"]: f["path"] for f in ls.manifest["files"]}
        n = len(ls.manifest["frames"])
        rows = (list(range(min(n, max_frames) if max_frames > 0 else n)) if contiguous
                else select_rows(n, max_frames))
        pos = {r: k for k, r in enumerate(rows)}
        ref = source_reference(ls, rows)
        order: list[int] = []
        for row, rgb in iter_rows(ls, rows):  # grouped by video, in frame order
            k = pos[row]
            meta = ls.manifest["frames"][row]
            h, w = rgb.shape[:2]
            teacher = ls.mask(meta["id"]) if ref["bp_detected"][k] else None
            ref["fill"][k] = person_fill(teacher)
            index = meta.get("index")
            frames.append(Frame(meta["id"], sid, f"{sid}/{meta.get('member')}", rgb,
                                frame_intrinsics(ls, row, w, h), float(ref["fill"][k]),
                                None if index is None else paths.get(meta["member"]),
                                None if index is None else int(index)))  # fmt: skip
            order.append(k)
        refs.append({key: ref[key][order] for key in ("bp_detected", "bp_px", "bp_visibility",
                                                       "tri_mm", "fill")})  # fmt: skip
        src = ls.manifest["source"]
        info[sid] = {"split": src.get("split"), "content": src.get("content"),
                     "licence": src.get("licence"), "views": src.get("views"),
                     "frames_labelled": len(ls.manifest["frames"]), "frames_used": len(rows),
                     "label_step": ls.manifest.get("step"),
                     "calibrated_intrinsics": bool(ls.triangulated is not None
                                                   and "K" in ls.triangulated)}  # fmt: skip
        LOG.info("real-frames: %s: %d frames decoded", sid, len(rows))
    return FrameSet("real", frames, {k: np.concatenate([r[k] for r in refs]) for k in refs[0]},
                    "BlazePose Full (the label cache's teacher; not ground truth)",
                    "triangulated Pose2Sim labels in each view's camera frame (multiview, close "
                    "to truth); sources without a triangulation have no 3D reference",
                    info)  # fmt: skip


def load_synthetic(folder: Path, max_frames: int) -> FrameSet:
    """The synthetic held-out renders: ground-truth 2D (visible and in frame) and 3D, their K."""
    from ..data.shards import ShardDataset

    ds = ShardDataset(folder)
    rows = select_rows(len(ds), max_frames)
    frames, px, vis, mm, fill = [], [], [], [], []
    for i in rows:
        s = ds.sample(int(i))
        rgb = np.ascontiguousarray(s["image"])
        h, w = rgb.shape[:2]
        f = float(ds.labels["mask_fraction"][int(i)])
        fid = f"synthetic_{int(i):05d}"
        frames.append(Frame(fid, "synthetic", fid, rgb,
                            Intrinsics.from_k(np.asarray(s["K"], np.float64), w, h), f))
        px.append(s["joints_2d"])
        vis.append(np.asarray(s["visible"], bool) & np.asarray(s["in_frame"], bool))
        mm.append(s["joints_3d"])
        fill.append(f)
    n = len(rows)
    ref = {"bp_detected": np.ones(n, bool), "bp_px": np.asarray(px, np.float64),
           "bp_visibility": np.asarray(vis, np.float64), "tri_mm": np.asarray(mm, np.float64),
           "fill": np.asarray(fill, np.float64)}  # fmt: skip
    return FrameSet("synthetic", frames, ref, "the render's 2D joints (visible and in frame)",
                    "the render's 3D joints (camera frame)",
                    {"synthetic": {"path": str(folder), "frames_in_split": len(ds),
                                   "frames_used": n}})  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Contenders


@dataclasses.dataclass
class Prediction:
    """One contender's answer on one frame: joints in image px, root-relative-able mm (None:
    2D only), person found, executed share of backbone MACs, whether a tracking crop ran, and
    the network's own time inside the call (ms)."""

    px: np.ndarray
    mm: np.ndarray | None
    found: bool
    density: float = 1.0
    cropped: bool = False
    network_ms: float = float("nan")
    #: the input's area over the whole frame's square input (a crop at 192 of a 256 model:
    #: 0.5625; a 192 × 128 strip 0.375); NaN where the runner does not know it
    input_area: float = float("nan")


class EstimatorRunner:
    """The node's per-frame computation (:class:`PoseEstimator`) around a backend (and the
    tracking crops' session, when they run at another size)."""

    def __init__(self, backend: Any, track: bool, confidence_threshold: float,
                 region: bool = True, crop_backend: Any = None,
                 strip_backends: Sequence[Any] = (),
                 strip_margin: float = NODE_STRIP_MARGIN) -> None:
        from ..pipeline.estimator import PoseEstimator

        self.backend = backend
        self.estimator = PoseEstimator(backend, confidence_threshold=confidence_threshold,
                                       track_person=track, region_from_pose=region,
                                       crop_backend=crop_backend,
                                       strip_backends=strip_backends,
                                       strip_margin=strip_margin)  # fmt: skip

    def reset(self) -> None:
        self.estimator.reset_tracking()

    def __call__(self, frame: Frame) -> Prediction:
        r = self.estimator.estimate(frame.rgb, frame.intrinsics)
        return Prediction(r.joints_px, r.joints_m * 1000.0, r.person_found, float(r.density),
                          r.roi is not None, r.timings_ms["inference"],
                          r.input_area(self.backend.info.input_size))  # fmt: skip

    def close(self) -> None:
        for b in self.estimator.backends:
            b.close()


class MoveNetRunner:
    """MoveNet as imported: letterbox (mean fill) + normalise as the network was imported,
    :class:`.ort_dense.MoveNetDense` in ONNX Runtime, MoveNet's decoding, COCO -> our joints."""

    def __init__(self, net: Any, model: bytes, threads: int, spin: bool) -> None:
        import onnxruntime as ort

        from ..pipeline.preprocess import mean_fill

        self.size = int(net.cfg.input_size)
        self.mean, self.std = tuple(net.cfg.input_mean), tuple(net.cfg.input_std)
        self.fill = mean_fill(self.mean)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not spin:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])

    def reset(self) -> None:
        pass

    def __call__(self, frame: Frame) -> Prediction:
        from ..data.movenet_teacher import DETECT_THRESHOLD
        from ..model.movenet_head import MoveNetOutput, decode
        from ..pipeline.preprocess import letterbox, normalise
        from ..teachers.movenet_map import map_to_h36m

        canvas, box = letterbox(frame.rgb, self.size, self.fill)
        x = normalise(canvas, self.mean, self.std)
        t0 = time.perf_counter()
        outs = self.sess.run(None, {"image": x})
        net_ms = (time.perf_counter() - t0) * 1e3
        with torch.inference_mode():
            kp = decode(MoveNetOutput(*(torch.from_numpy(o) for o in outs)))[0].numpy()
        joints, _ = map_to_h36m(box.normalised_to_image(kp[:, [1, 0]].astype(np.float64)),
                                kp[:, 2])  # fmt: skip
        found = bool(kp[:, 2].mean() >= DETECT_THRESHOLD)
        return Prediction(joints, None, found, 1.0, False, net_ms)

    def close(self) -> None:
        self.sess = None


@dataclasses.dataclass
class Options:
    threads: Sequence[int] = (1, 2)
    passes: int = 1
    warmup: int = 5
    block: int = 10
    settle: int = 3
    gap_s: float = 0.05
    ort_spin: bool = True
    confidence_threshold: float = 0.3
    mask_threshold: float = 0.5
    cache_dir: str | None = None


def describe(spec: ContenderSpec, options: Options) -> dict[str, Any]:
    """What runs for ``spec`` (checkpoint facts, runtime, dense MACs); raises :class:`Skip`."""
    from ..data.label_cache import sha256_file
    from ..model.checkpoint import load_checkpoint
    from ..model.flops import flops_report

    if spec.kind not in KINDS:
        raise ValueError(f"unknown contender kind {spec.kind!r} ({spec.name})")
    if spec.kind == "blazepose":
        from ..teachers.peer import peer_available

        ok, why = peer_available()
        if not ok:
            raise Skip(why)
        mode = ("video mode (static_image_mode=False: detector once, then landmarks on its "
                "own tracked ROI), each real video's frames in order, decoded by the runner"
                if spec.track else "static_image_mode (detector + landmarks every frame), "
                "lossless PNGs of the same pixels")  # fmt: skip
        return {"kind": "blazepose", "label": spec.label,
                "outputs": "2D + world 3D (hip-centred: root-relative metrics only)",
                "runtime": f"MediaPipe mp.solutions.pose, model_complexity 1 (Full), {mode}; "
                           "own venv, CPU affinity = the thread count's cores",
                "backbone_macs_dense": None, "track": spec.track}  # fmt: skip
    path = Path(spec.checkpoint or "")
    if not path.is_file():
        raise Skip(f"{path} not found")
    net, info = load_checkpoint(path)
    cfg = net.cfg
    if spec.kind == "sparse" and not net.gated_blocks():
        raise Skip(f"{path} is a dense model (no gated blocks): nothing for sparse-cpu to skip")
    if spec.kind == "dense" and net.gated_blocks():
        raise Skip(f"{path} is gated: the dense contender needs the dense checkpoint")
    if spec.kind == "movenet" and net.movenet is None:
        raise Skip(f"{path} has no MoveNet heads (import one with ./run import-weights)")
    s = int(spec.input_size or cfg.input_size)
    with torch.no_grad():
        rep = flops_report(net, net(torch.zeros(1, 3, s, s)), (s, s))
    network = rep.network_dense_macs
    if spec.kind == "movenet":
        network = rep.backbone_dense_macs + rep.neck_macs + rep.movenet_head_macs
    crop: dict[str, Any] = {}
    c = int(spec.crop_input_size or s) if spec.track else s
    if c != s:
        with torch.no_grad():
            crep = flops_report(net, net(torch.zeros(1, 3, c, c)), (c, c))
        crop = {"crop_input_size": c, "backbone_macs_dense_crop": float(crep.backbone_dense_macs),
                "crop_input_widths": [w for w in spec.crop_input_widths if w < c],
                "strip_margin": spec.strip_margin}
    runtime = {
        "sparse": f"sparse-cpu backend (compiled gather-scatter kernel, GEMMs in "
                  f"{spec.precision}, adaptive=False: always sparse; head gating on, as in the "
                  "node)",
        "dense": f"onnxruntime backend (portable graph of the dense checkpoint, spin_wait="
                 f"{options.ort_spin})" if spec.runtime == "onnxruntime" else
                 f"openvino backend (the same portable graph, precision {spec.precision}, "
                 "latency hint, one stream)",
        "movenet": f"ONNX Runtime, benchmarks.ort_dense.MoveNetDense (backbone + FPN + MoveNet's "
                   f"four heads) + model.movenet_head.decode (allow_spinning={options.ort_spin})",
    }[spec.kind]
    return {
        "kind": spec.kind, "label": spec.label, "checkpoint": str(path),
        "sha256": sha256_file(path), "model_hash": info.get("model_hash"),
        "input_size": s, "width_mult": cfg.width_mult, "gated": bool(net.gated_blocks()),
        "gate_strided": bool(cfg.gate_strided), "track": spec.track,
        "mask_source": cfg.mask_source if net.gated_blocks() else None,
        "region_from_pose": bool(spec.region and net.gated_blocks()),
        "outputs": "2D (MoveNet COCO-17 mapped to our joints)" if spec.kind == "movenet"
        else "2D + 3D", "runtime": runtime,
        "backbone_macs_dense": float(rep.backbone_dense_macs),
        "network_macs_dense": float(network), **crop,
    }  # fmt: skip


def make_runner(spec: ContenderSpec, threads: int, options: Options,
                exports: dict[str, bytes]) -> Any:
    """An in-process runner of ``spec`` with ``threads`` threads (``exports`` caches MoveNet's
    ONNX bytes across thread counts)."""
    from ..backends import create_backend
    from ..pipeline.estimator import open_tracking_sessions

    path = str(spec.checkpoint)
    if spec.kind in ("sparse", "dense"):
        dense = ("openvino", {"precision": spec.precision}) if spec.runtime == "openvino" \
            else ("onnxruntime", {"spin_wait": options.ort_spin})
        kind = {"sparse": ("sparse-cpu", {"mask_threshold": options.mask_threshold,
                                          "head_gating": True, "adaptive": False,
                                          "kernel_precision": spec.precision,
                                          "head": spec.head}),
                "dense": dense}  # fmt: skip
        name, own = kind[spec.kind]

        def open_at(size: int | None, width: int | None = None) -> Any:
            return create_backend(name, path, device="cpu", num_threads=threads,
                                  cache_dir=options.cache_dir, input_size=size,
                                  input_width=width, **own)

        backend, crop_backend, strips = open_tracking_sessions(
            open_at, spec.input_size, spec.crop_input_size if spec.track else None,
            spec.crop_input_widths if spec.track else ())
        return EstimatorRunner(backend, spec.track, options.confidence_threshold,
                               spec.region if spec.kind == "sparse" else True, crop_backend,
                               strips, spec.strip_margin)
    from ..model.checkpoint import load_checkpoint
    from .ort_dense import MoveNetDense, export_onnx

    net, _ = load_checkpoint(path)
    if path not in exports:
        s = int(net.cfg.input_size)
        exports[path] = export_onnx(MoveNetDense(net), torch.zeros(1, 3, s, s))
    return MoveNetRunner(net, exports[path], threads, options.ort_spin)


# ---------------------------------------------------------------------------------------------
# Timing and scoring


class Cycler:
    """Zero-argument call for ``time_interleaved``: the next frame of the set (round robin),
    tracking reset where the sequence changes; returns (frame position, Prediction) and keeps
    every call's frame position and each frame's first answer."""

    def __init__(self, runner: Any, frames: list[Frame]) -> None:
        self.runner, self.frames = runner, frames
        self.i = 0
        self.sequence: str | None = None
        self.calls: list[int] = []
        self.first: dict[int, Prediction] = {}

    def __call__(self) -> tuple[int, Prediction]:
        k = self.i % len(self.frames)
        self.i += 1
        frame = self.frames[k]
        if frame.sequence != self.sequence:
            self.runner.reset()
            self.sequence = frame.sequence
        pred = self.runner(frame)
        self.calls.append(k)
        self.first.setdefault(k, pred)
        return k, pred


def _sha1(ids: Sequence[str]) -> str:
    return hashlib.sha1("\n".join(ids).encode()).hexdigest()


def latency_block(samples: Sequence[tuple[float, float, int]], groups: dict[str, np.ndarray],
                  frames: list[Frame]) -> dict[str, Any]:
    """Per group: ``frame`` and ``network`` latency statistics of (ms, network ms, frame) calls,
    the number of distinct frames timed and the digest of the timed frame ids in call order."""
    out: dict[str, Any] = {}
    for g, sel in groups.items():
        rows = [s for s in samples if sel[s[2]]]
        if not rows:
            out[g] = None
            continue
        net = [s[1] for s in rows if np.isfinite(s[1])]
        out[g] = {"frame": latency_stats([s[0] for s in rows]),
                  "network": latency_stats(net) if net else None,
                  "frames_timed": len({s[2] for s in rows})}  # fmt: skip
    out["timed_frames_sha1"] = _sha1([frames[s[2]].id for s in samples])
    return out


def accuracy_block(fs: FrameSet, preds: Sequence[Prediction | None], sel: np.ndarray,
                   per_joint: bool) -> dict[str, Any]:
    """2D PCK (MoveNet's 15 joints and all 17), person-found rate and 3D (where both exist) of
    one contender's answers on the frames ``sel`` of ``fs``."""
    ref = {k: v[sel] for k, v in fs.ref.items()}
    chosen = [p for p, s in zip(preds, sel, strict=True) if s and p is not None]
    n = len(chosen)
    out: dict[str, Any] = {"frames": n}
    if not n:
        return out
    px = np.stack([p.px for p in chosen]).astype(np.float64)
    found = np.array([p.found for p in chosen])
    vis, box = counted_joints(ref)
    det = ref["bp_detected"]
    out["frames_with_person"] = int(det.sum())
    out["person_found_rate"] = float(found[det].mean()) if det.any() else float("nan")
    for key, joints in (("pck_15_joints", MOVENET_JOINTS), ("pck_17_joints", None)):
        b = pck_block(px, ref["bp_px"], vis, box, joints)
        if not per_joint:
            b = {k: v for k, v in b.items() if not k.startswith("per_joint")}
        out[key] = b
    out["pck@0.1"] = out["pck_15_joints"]["pck@0.1"]
    out["pck@0.2"] = out["pck_15_joints"]["pck@0.2"]
    if chosen[0].mm is not None:
        mm = np.stack([p.mm for p in chosen]).astype(np.float64)
        both = np.isfinite(ref["tri_mm"]).all(axis=(1, 2)) & np.isfinite(mm).all(axis=(1, 2))
        if both.any():
            b = pose3d_block(mm[both], ref["tri_mm"][both], fs.reference_3d)
            if not per_joint:
                b.pop("per_joint_mpjpe_mm", None)
            out["3d"] = b
            out["mpjpe_mm"] = b["mpjpe_mm"]
            out["pa_mpjpe_mm"] = b["pa_mpjpe_mm"]
    return out


def macs_block(desc: dict[str, Any], preds: Sequence[Prediction | None],
               groups: dict[str, np.ndarray]) -> dict[str, Any] | None:
    """Mean executed backbone MACs (and share of the dense backbone at the whole frame's input
    size) per group; a tracking crop at ``crop_input_size`` counts that size's MACs."""
    dense = desc.get("backbone_macs_dense")
    if dense is None:
        return None
    crop = desc.get("backbone_macs_dense_crop", dense) / dense
    dens = np.array([np.nan if p is None else p.density * (
        p.input_area if np.isfinite(p.input_area) else crop if p.cropped else 1.0)
        for p in preds], np.float64)  # fmt: skip
    out: dict[str, Any] = {"backbone_dense": dense}
    for g, sel in groups.items():
        if sel.any():
            f = float(np.mean(dens[sel]))
            out[g] = {"backbone_executed": f * dense, "backbone_fraction": f,
                      "tracking_crop_share": float(np.mean([p.cropped for p, s in
                                                            zip(preds, sel, strict=True)
                                                            if s and p is not None]))}
        else:
            out[g] = None
    return out


Samples = list[tuple[float, float, int]]  # (frame ms, network ms, frame position) per call


def _peer_prediction(pf: Any) -> Prediction:
    """A :class:`~..teachers.peer.PeerFrame` as a Prediction (NaN joints where nobody; 3D =
    its world landmarks, hip-centred: root-relative metrics only)."""
    if not pf.detected:
        return Prediction(np.full((skeleton.NUM_JOINTS, 2), np.nan),
                          np.full((skeleton.NUM_JOINTS, 3), np.nan), False)  # fmt: skip
    mm = (np.full((skeleton.NUM_JOINTS, 3), np.nan) if pf.joints_world_m is None
          else pf.joints_world_m * 1000.0)  # fmt: skip
    return Prediction(pf.joints_px, mm, True)


def run_blazepose(fs: FrameSet, threads: int, passes: int, video: bool
                  ) -> tuple[list[Prediction | None], Samples]:
    """BlazePose on ``fs`` pinned to ``threads`` cores: per frame its answer (None where it did
    not run) and its timed ``process`` calls as (ms, NaN, frame). Static mode: every frame as a
    lossless PNG, ``passes`` timed calls each. Video mode: each real video's frames in order
    (decoded by the runner), the first of each sequence untimed (graph start-up)."""
    from ..teachers.peer import run_peer
    from ..teachers.real_frames import RealFrame, video_frame_id

    cpus = sorted(os.sched_getaffinity(0))[:threads]
    preds: list[Prediction | None] = [None] * len(fs.frames)
    samples: Samples = []
    if not video:
        stills = [RealFrame(f.id, f.rgb, f"{fs.name}:{f.source}", f.id) for f in fs.frames]
        per = run_peer(stills, modes=("static",), warmup=3, repeats=passes,
                       cpus=cpus).frames["static"]  # fmt: skip
        for k, f in enumerate(fs.frames):
            preds[k] = _peer_prediction(per[f.id])
            samples += [(ms, float("nan"), k) for ms in per[f.id].latency_ms]
        return preds, samples
    by_sequence: dict[str, list[int]] = {}
    for k, f in enumerate(fs.frames):
        if f.video is not None and f.index is not None:
            by_sequence.setdefault(f.sequence, []).append(k)
    if not by_sequence:
        raise Skip(f"no video frames in the {fs.name} set")
    for j, (seq, ks) in enumerate(by_sequence.items()):
        sid = f"seq{j:03d}"
        frames = [RealFrame(video_frame_id(sid, int(fs.frames[k].index or 0)), fs.frames[k].rgb,
                            seq, sid, fs.frames[k].index) for k in ks]  # fmt: skip
        per = run_peer(frames, video_path=Path(str(fs.frames[ks[0]].video)), modes=("video",),
                       contiguous=False, cpus=cpus).frames["video"]  # fmt: skip
        for k, rf in zip(ks, frames, strict=True):
            pf = per[rf.id]
            preds[k] = _peer_prediction(pf)
            if not pf.warmup:
                samples += [(ms, float("nan"), k) for ms in pf.latency_ms]
    return preds, samples


@dataclasses.dataclass
class SetRun:
    """One frame set at one thread count: per contender the timed samples and the answers."""

    samples: dict[str, Samples]
    preds: dict[str, list[Prediction | None]]
    calls: dict[str, list[int]]
    wall_s: float


def run_set(fs: FrameSet, runners: dict[str, Any], peers: Sequence[ContenderSpec], threads: int,
            options: Options) -> tuple[SetRun, dict[str, str]]:
    """Time the in-process runners interleaved on ``fs``, then BlazePose (``peers``); (run,
    failures by contender)."""
    t0 = time.perf_counter()
    cyclers = {name: Cycler(r, fs.frames) for name, r in runners.items()}
    raw: dict[str, list[tuple[float, object]]] = {}
    failures: dict[str, str] = {}
    n = len(fs.frames)
    if cyclers:
        time_interleaved(cyclers, reps=max(1, options.passes) * n, warmup=options.warmup,
                         block=options.block, settle=options.settle, gap_s=options.gap_s,
                         samples=raw)  # fmt: skip
    samples: dict[str, Samples] = {}
    preds: dict[str, list[Prediction | None]] = {}
    for name, c in cyclers.items():
        samples[name] = [(ms, ret[1].network_ms, ret[0]) for ms, ret in raw[name]]  # type: ignore[index]
        missing = [k for k in range(n) if k not in c.first]
        for k in missing:  # only when reps + warm-up < frames (never with the defaults)
            c.runner.reset()
            c.first[k] = c.runner(fs.frames[k])
        preds[name] = [c.first[k] for k in range(n)]
    calls = {name: c.calls for name, c in cyclers.items()}
    for spec in peers:
        try:
            preds[spec.name], samples[spec.name] = run_blazepose(fs, threads, options.passes,
                                                                 video=spec.track)  # fmt: skip
        except Skip as exc:
            LOG.info("real-frames: %s not on %s: %s", spec.name, fs.name, exc)
        except Exception as exc:  # the peer is optional: say why and go on
            LOG.warning("real-frames: %s failed on %s: %s", spec.name, fs.name, exc)
            failures[spec.name] = f"failed on {fs.name}: {exc}"
    return SetRun(samples, preds, calls, time.perf_counter() - t0), failures


# ---------------------------------------------------------------------------------------------
# The run


def run(sets: list[FrameSet], specs: list[ContenderSpec], options: Options,
        command: str) -> list[dict[str, Any]]:
    """Every contender on every set at every thread count: one result dict per thread count."""
    described: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for spec in specs:
        try:
            described[spec.name] = describe(spec, options)
        except Skip as exc:
            LOG.warning("real-frames: skipping %s: %s", spec.name, exc)
            skipped[spec.name] = str(exc)
    active = [s for s in specs if s.name in described]
    in_process = [s for s in active if s.kind != "blazepose"]
    peers = [s for s in active if s.kind == "blazepose"]
    exports: dict[str, bytes] = {}
    accuracy_preds: dict[str, dict[str, list[Prediction | None]]] = {}
    results = []
    before = torch.get_num_threads()
    for t in options.threads:
        torch.set_num_threads(t)
        load_before = load_average()
        t_start = time.perf_counter()
        runners: dict[str, Any] = {}
        failed = dict(skipped)
        for spec in in_process:
            try:
                runners[spec.name] = make_runner(spec, t, options, exports)
            except Exception as exc:  # a contender that cannot load must not end the run
                LOG.warning("real-frames: %s could not start: %s", spec.name, exc)
                failed[spec.name] = f"could not start: {exc}"
        per_set: dict[str, Any] = {}
        try:
            for fs in sets:
                LOG.info("real-frames: %d thread(s), %s: %d frames, %d contenders", t, fs.name,
                         len(fs.frames), len(runners) + len(peers))  # fmt: skip
                sr, fails = run_set(fs, runners, peers, t, options)
                failed.update(fails)
                per_set[fs.name] = sr
        finally:
            for r in runners.values():
                r.close()
        for fs in sets:  # accuracy: each contender's first run that answered
            for name, p in per_set[fs.name].preds.items():
                accuracy_preds.setdefault(fs.name, {}).setdefault(name, p)
        results.append(_result(t, sets, per_set, accuracy_preds, described, failed, options,
                               command, load_before, time.perf_counter() - t_start))  # fmt: skip
    torch.set_num_threads(before)
    return results


def _agreement(a: list[Prediction | None], b: list[Prediction | None]) -> float:
    """Largest 2D difference (px) between two runs' answers (NaN-safe)."""
    d = [np.nanmax(np.abs(p.px - q.px)) for p, q in zip(a, b, strict=True)
         if p is not None and q is not None and np.isfinite(p.px).any()
         and np.isfinite(q.px).any()]
    return float(max(d)) if d else float("nan")


def _result(threads: int, sets: list[FrameSet], per_set: dict[str, SetRun],
            accuracy_preds: dict[str, dict[str, list[Prediction | None]]],
            described: dict[str, dict[str, Any]], failed: dict[str, str], options: Options,
            command: str, load_before: list[float], wall: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "benchmark": "real-frames (issue 17 §1)",
        "command": command,
        "source": source_state(),
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "threads": threads,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "env": thread_wait_env(),
        "wall_s": round(wall, 1),
        "settings": {"batch": 1, "passes": options.passes, "warmup": options.warmup,
                     "block": options.block, "settle": options.settle, "gap_s": options.gap_s,
                     "ort_spin": options.ort_spin,
                     "confidence_threshold": options.confidence_threshold,
                     "mask_threshold": options.mask_threshold,
                     "small_person_fill": SMALL_PERSON_FRACTION},  # fmt: skip
        "protocol": __doc__,
        "contenders": {n: d for n, d in described.items() if n not in failed},
        "skipped": failed,
        "sets": {fs.name: fs.record() for fs in sets},
        "results": {},
        "summary": {},
    }
    for fs in sets:
        sr = per_set[fs.name]
        groups = fs.groups()
        acc = accuracy_preds[fs.name]
        same = {tuple(c) for c in sr.calls.values()}
        block: dict[str, Any] = {
            "wall_s": round(sr.wall_s, 1),
            "same_frame_sequence_for_every_in_process_contender": len(same) <= 1,
            "contenders": {},
        }
        for name in sr.samples:
            if name not in acc:
                continue
            d = described[name]
            ran = np.array([p is not None for p in acc[name]])
            mine = {g: sel & ran for g, sel in groups.items()}  # frames it answered
            row = {
                "frames_answered": int(ran.sum()),
                "latency_ms": latency_block(sr.samples[name], mine, fs.frames),
                "macs": macs_block(d, acc[name], mine),
                "accuracy": {g: accuracy_block(fs, acc[name], sel, per_joint=g == "all")
                             for g, sel in mine.items()},
                "answers_max_px_difference_vs_first_thread_count":
                    _agreement(acc[name], sr.preds[name]) if sr.preds.get(name) else None,
            }  # fmt: skip
            block["contenders"][name] = row
            lat = row["latency_ms"]
            out["summary"].setdefault(fs.name, {})[name] = {
                g: None if lat.get(g) is None else {
                    "median_ms": lat[g]["frame"]["median_ms"], "p95_ms": lat[g]["frame"]["p95_ms"],
                    "network_median_ms": (lat[g]["network"] or {}).get("median_ms"),
                    "backbone_gmacs": None if row["macs"] is None or row["macs"][g] is None
                    else row["macs"][g]["backbone_executed"] / 1e9,
                    "pck@0.1": row["accuracy"][g].get("pck@0.1"),
                    "mpjpe_mm": row["accuracy"][g].get("mpjpe_mm"),
                } for g in (*GROUPS, *(k for k in groups if k.startswith("source:")))
            }  # fmt: skip
        out["results"][fs.name] = block
    return json_safe(out)


def result_path(out_dir: Path, threads: int) -> Path:
    return out_dir / f"real_frames_{threads}thread.json"


def write_results(results: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for r in results:
        p = result_path(out_dir, r["threads"])
        p.write_text(json.dumps(r, indent=1, allow_nan=False) + "\n")
        paths.append(p)
    return paths


def select_contenders(names: Sequence[str] | None, overrides: Sequence[str]
                      ) -> list[ContenderSpec]:
    """The default contenders, filtered by ``names`` and with ``NAME=PATH`` checkpoints."""
    specs = default_contenders()
    known = {s.name for s in specs}
    paths: dict[str, str] = {}
    for kv in overrides:
        name, sep, path = kv.partition("=")
        if not sep or name not in known:
            raise ValueError(f"--checkpoint wants NAME=PATH with NAME one of {sorted(known)}, "
                             f"got {kv!r}")
        paths[name] = path
    if names:
        unknown = sorted(set(names) - known)
        if unknown:
            raise ValueError(f"unknown contenders {unknown}; known: {sorted(known)}")
        specs = [s for s in specs if s.name in names]
    return [dataclasses.replace(s, checkpoint=paths.get(s.name, s.checkpoint)) for s in specs]


def load_sets(args: argparse.Namespace) -> list[FrameSet]:
    """The frame sets the arguments ask for; a missing one is logged and left out."""
    sets: list[FrameSet] = []
    if str(args.labels).lower() != "none":
        try:
            sets.append(load_real(Path(args.labels), args.sources, args.max_frames))
        except Exception as exc:
            LOG.warning("real-frames: no real frames (%s): %s", args.labels, exc)
    synth = args.synthetic
    if synth is None:
        synth = next((p for p in SYNTHETIC_DIRS if Path(p).is_dir()), None)
    if synth is not None and str(synth).lower() != "none":
        try:
            sets.append(load_synthetic(Path(synth), args.max_frames))
        except Exception as exc:
            LOG.warning("real-frames: no synthetic frames (%s): %s", synth, exc)
    return sets


def options_from(args: argparse.Namespace) -> Options:
    return Options(threads=tuple(args.threads), passes=args.passes, warmup=args.warmup,
                   block=args.block, settle=args.settle, gap_s=args.gap_ms / 1e3,
                   ort_spin=not args.no_ort_spin,
                   confidence_threshold=args.confidence_threshold,
                   mask_threshold=args.mask_threshold, cache_dir=args.cache_dir)  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                   help="thread counts, one result file each")
    p.add_argument("--labels", default=str(LABELS_DIR),
                   help="teacher-label cache ('none': no real frames)")
    p.add_argument("--sources", type=lambda s: [v for v in s.split(",") if v], default=None,
                   help="comma-separated label sources (default: every held-out one; "
                        "opencv_vtest adds many small pedestrians, a training source)")
    p.add_argument("--synthetic", default=None,
                   help=f"synthetic held-out split (default: first of {SYNTHETIC_DIRS}; 'none')")
    p.add_argument("--max-frames", type=int, default=0,
                   help="at most this many frames per real source and synthetic, evenly "
                        "spread (0 = all)")
    p.add_argument("--contenders", nargs="+", default=None,
                   help="only these (default: all of "
                        f"{[s.name for s in default_contenders()]})")
    p.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                   help="another checkpoint for a contender (repeatable)")
    p.add_argument("--passes", type=int, default=1, help="timed calls per frame")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls per contender first")
    p.add_argument("--block", type=int, default=10, help="timed calls per interleaved block")
    p.add_argument("--settle", type=int, default=3, help="untimed calls opening every block")
    p.add_argument("--gap-ms", type=float, default=50.0, help="idle time before every block")
    p.add_argument("--no-ort-spin", action="store_true",
                   help="ORT workers sleep between runs (the node's onnxruntime backend "
                        "default) instead of ORT's own default, spinning")
    p.add_argument("--crop-input-size", type=int, default=NODE_CROP_INPUT_SIZE,
                   help=f"input side of the tracking crops of {NODE_TRACKING}, the contender "
                        "that follows the node's crop_input_size; 0 = the model's own")
    p.add_argument("--crop-input-widths", type=int, nargs="*",
                   default=list(NODE_CROP_INPUT_WIDTHS),
                   help=f"strips of {NODE_TRACKING}'s crops (the node's crop_input_widths; "
                        "none: squares only)")
    p.add_argument("--strip-margin", type=float, default=NODE_STRIP_MARGIN,
                   help=f"{NODE_TRACKING}'s strip margin (the node's strip_margin)")
    p.add_argument("--confidence-threshold", type=float, default=0.3)
    p.add_argument("--mask-threshold", type=float, default=0.5)
    p.add_argument("--cache-dir", default=None, help="ONNX export cache of the backends")
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--plot", type=Path, default=None,
                   help="accuracy-latency PNG (default: OUT_DIR/real_frames.png)")


def check_arguments(args: argparse.Namespace) -> str | None:
    """Why the arguments cannot run, or None."""
    if any(t < 1 for t in args.threads):
        return "--threads must be >= 1"
    if args.max_frames < 0 or args.passes < 1 or args.warmup < 0:
        return "--max-frames and --warmup must be >= 0, --passes >= 1"
    if args.block < 1 or args.settle < 0 or args.gap_ms < 0:
        return "--block must be >= 1, --settle and --gap-ms >= 0"
    if not 0.0 < args.mask_threshold < 1.0 or not 0.0 <= args.confidence_threshold <= 1.0:
        return "--mask-threshold must be in (0, 1), --confidence-threshold in [0, 1]"
    if args.crop_input_size < 0 or (args.crop_input_size
                                    and input_size_problem(args.crop_input_size)):
        return f"--crop-input-size: {input_size_problem(max(args.crop_input_size, 1))}"
    bad = [w for w in args.crop_input_widths if input_size_problem(w)]
    if bad:
        return f"--crop-input-widths: {input_size_problem(bad[0])}"
    try:
        RoiConfig(strip_margin=args.strip_margin)
    except ValueError as exc:
        return f"--strip-margin: {exc}"
    return None


def main(args: argparse.Namespace, command: str) -> int:
    """The ``real-frames`` subcommand of ``python -m sparse_pose_ros.benchmarks``."""
    import sys

    problem = check_arguments(args)
    try:
        specs = [dataclasses.replace(s, crop_input_size=args.crop_input_size or None)
                 if s.name in (NODE_TRACKING, *CROP_FOLLOWERS) else s
                 for s in select_contenders(args.contenders, args.checkpoint)]  # fmt: skip
        specs = [dataclasses.replace(s, crop_input_widths=tuple(args.crop_input_widths),
                                     strip_margin=args.strip_margin)
                 if s.name in STRIP_FOLLOWERS else s for s in specs]  # fmt: skip
    except ValueError as exc:
        problem = problem or str(exc)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    sets = load_sets(args)
    if not sets:
        print("error: no frames (no label cache and no synthetic split): run ./run label",
              file=sys.stderr)
        return 1
    results = run(sets, specs, options_from(args), command)
    paths = write_results(results, args.out_dir)
    from .plot import plot_real_frames

    png = args.plot or args.out_dir / "real_frames.png"
    plot_real_frames(results, png)
    print(json.dumps({"json": [str(p) for p in paths], "png": str(png),
                      "skipped": results[0]["skipped"] if results else {},
                      "summary": {r["threads"]: r["summary"] for r in results}},
                     indent=1))  # fmt: skip
    return 0
