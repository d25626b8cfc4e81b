"""Does the imported MoveNet see people? MoveNet's own decoding on our network, scored against
MediaPipe BlazePose Full on real person crops (the import's end-to-end check, issue #15).

    ./run python -m sparse_pose_ros.evaluation.movenet_agreement \
        --checkpoint data_cache/pretrained/movenet-thunder.safetensors \
        --out results/movenet_import_agreement_thunder.json

Protocol (the one PRETRAINED.md's numbers were measured with):
1. frames: the still photos (scikit-image astronaut and camera, matplotlib grace_hopper, and
   opencv-doc's messi5 / basketball1 / basketball2) and every ``--vtest-step``-th frame of
   opencv-doc's vtest.avi;
2. BlazePose on each full frame (static mode on photos, tracking mode through the video);
   where it finds a person, a square crop of
   ``--side-factor`` × the box of its visible landmarks (zero-padded at borders), resized to the
   network's input size;
3. BlazePose again on each crop: the reference; the network on the same crop: MoveNet's 17
   COCO keypoints;
4. PCK@t: a keypoint counts where BlazePose's visibility > 0.5; it is correct when within
   t × the larger side of the box of BlazePose's counted keypoints. Also reported: a constant
   mean pose (mean of the reference keypoints over all crops, in crop coordinates) as the
   floor any model must beat.
The reference is a *teacher* (BlazePose), not ground truth: numbers are agreement.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..framing import person_square
from ..model.checkpoint import load_checkpoint
from ..model.movenet_head import COCO_KEYPOINTS, decode
from ..model.network import PoseNetwork
from ..teachers.peer import PeerError, run_peer
from ..teachers.real_frames import RealFrame, load_real_frames

#: BlazePose's 33 landmarks at MoveNet's 17 COCO keypoints (same names, same order).
COCO_TO_BLAZEPOSE = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
OPENCV_DOC_STILLS = ("messi5.jpg", "basketball1.png", "basketball2.png")
OPENCV_DOC_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
VISIBLE = 0.5
THRESHOLDS = (0.05, 0.1, 0.2)


@dataclass
class Crop:
    frame: RealFrame
    origin: tuple[int, int]  # top-left of the square in the frame (px, may be negative)
    side: int


def opencv_doc_stills(root: Path = OPENCV_DOC_DATA) -> list[RealFrame]:
    """opencv-doc's sport photos (Debian package ``opencv-doc``; absent ones are skipped)."""
    import cv2

    out = []
    for name in OPENCV_DOC_STILLS:
        bgr = cv2.imread(str(root / name), cv2.IMREAD_COLOR)
        if bgr is not None:
            stem = Path(name).stem
            out.append(RealFrame(stem, np.ascontiguousarray(bgr[:, :, ::-1]),
                                 f"opencv-doc {root / name}", stem))
    return out


def square_crop(image: np.ndarray, landmarks: np.ndarray, side_factor: float, size: int
                ) -> tuple[np.ndarray, tuple[int, int], int] | None:
    """Square of ``side_factor`` × the visible landmarks' box (``framing.person_square``, the
    project's one framing rule), zero-padded, resized to size² with an area filter."""
    import cv2

    h, w = image.shape[:2]
    vis = landmarks[:, 3] > VISIBLE
    if vis.sum() < 4:
        return None
    centre, side_f = person_square(landmarks[vis, :2] * np.array([w, h]), side_factor, 32.0)
    side = int(round(side_f))
    x0, y0 = (np.round(centre - side / 2.0)).astype(int)
    canvas = np.zeros((side, side, 3), np.uint8)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if sx1 <= sx0 or sy1 <= sy0:
        return None
    canvas[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA), (x0, y0), side


def movenet_keypoints(net: PoseNetwork, crops: list[np.ndarray]) -> np.ndarray:
    """(N, 17, 3) = (y, x, score) from MoveNet's heads and decoding on our network."""
    mean = torch.tensor(net.cfg.input_mean).view(1, 3, 1, 1)
    std = torch.tensor(net.cfg.input_std).view(1, 3, 1, 1)
    out = []
    with torch.no_grad():
        for rgb in crops:
            x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
            out.append(decode(net((x - mean) / std, with_movenet=True).movenet)[0].numpy())
    return np.stack(out)


def pck_table(pred_xy: np.ndarray, ref_xy: np.ndarray, ref_vis: np.ndarray
              ) -> dict[str, Any]:
    """Pooled PCK over counted keypoints (and per keypoint) for (N, 17, 2) arrays."""
    counted = ref_vis > VISIBLE
    sizes = []
    for pts, c in zip(ref_xy, counted, strict=True):
        box = pts[c]
        sizes.append(float(np.max(box.max(axis=0) - box.min(axis=0))) if c.sum() >= 2 else 0.0)
    size = np.array(sizes)[:, None]
    ok = counted & (size > 0)
    err = np.linalg.norm(pred_xy - ref_xy, axis=-1) / np.where(size > 0, size, 1.0)
    table: dict[str, Any] = {"crops": int((ok.sum(axis=1) > 0).sum()),
                             "keypoints_counted": int(ok.sum())}
    for t in THRESHOLDS:
        hit = (err <= t) & ok
        table[f"pck@{t:g}"] = round(float(hit.sum() / max(ok.sum(), 1)), 4)
        table[f"per_keypoint_pck@{t:g}"] = {
            name: (round(float(hit[:, k].sum() / ok[:, k].sum()), 4) if ok[:, k].sum() else None)
            for k, name in enumerate(COCO_KEYPOINTS)
        }
    return table


def evaluate(checkpoint: Path, vtest_step: int, side_factor: float, vtest_max: int | None
             ) -> dict[str, Any]:
    net, info = load_checkpoint(checkpoint)
    if net.movenet is None:
        raise ValueError(f"{checkpoint} has no MoveNet heads (import one with ./run "
                         "import-weights)")
    size = net.cfg.input_size
    stills = load_real_frames(include_video=False) + opencv_doc_stills()
    video = load_real_frames(vtest_step=vtest_step, vtest_max_frames=vtest_max,
                             include_stills=False)
    from ..teachers.real_frames import VTEST_PATH

    crops: list[Crop] = []
    # Stills: BlazePose's detector on each photo. The video: its tracking mode over every frame
    # (static mode finds 3 of vtest's 40 sampled frames: the pedestrians are small).
    for group, video_path, mode in ((stills, None, "static"), (video, VTEST_PATH, "video")):
        if not group:
            continue
        peer = run_peer(group, video_path=video_path, modes=(mode,), contiguous=True)
        for f in group:
            pf = peer.frames[mode].get(f.id)
            if pf is None or not pf.detected or pf.landmarks is None:
                continue
            cut = square_crop(f.image, pf.landmarks, side_factor, size)
            if cut is not None:
                pixels, origin, side = cut
                crops.append(Crop(RealFrame(f"{f.id}_crop", pixels, f.source, f.sequence),
                                  origin, side))
    ref = run_peer([c.frame for c in crops], modes=("static",))
    keep = [c for c in crops if ref.frames["static"].get(c.frame.id) is not None
            and ref.frames["static"][c.frame.id].detected]
    lms = np.stack([ref.frames["static"][c.frame.id].landmarks for c in keep])[:, COCO_TO_BLAZEPOSE]
    ref_xy, ref_vis = lms[:, :, :2] * size, lms[:, :, 3]
    pred = movenet_keypoints(net, [c.frame.image for c in keep])
    pred_xy = pred[:, :, [1, 0]] * size
    mean_pose = np.broadcast_to(ref_xy.mean(axis=0), ref_xy.shape)
    sources = sorted({c.frame.sequence for c in keep})
    return {
        "what": "MoveNet decoding on the imported network vs BlazePose Full (teacher, not "
                "ground truth) on real person crops",
        "command": " ".join(["python -m sparse_pose_ros.evaluation.movenet_agreement",
                             *sys.argv[1:]]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch": torch.__version__},
        "checkpoint": str(checkpoint),
        "model_hash": info["model_hash"],
        "source": info["meta"].get("source", {}),
        "input_size": size,
        "side_factor": side_factor,
        "frames_with_blazepose_person": len(crops),
        "crops_scored": len(keep),
        "sources": sources,
        "blazepose": ref.info,
        "ours": pck_table(pred_xy, ref_xy, ref_vis),
        "mean_pose_baseline": pck_table(mean_pose, ref_xy, ref_vis),
        "mean_score": round(float(pred[:, :, 2].mean()), 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--vtest-step", type=int, default=10)
    parser.add_argument("--vtest-max", type=int, default=None)
    parser.add_argument("--side-factor", type=float, default=1.25)
    args = parser.parse_args(argv)
    try:
        result = evaluate(args.checkpoint, args.vtest_step, args.side_factor, args.vtest_max)
    except (PeerError, ValueError, OSError) as exc:
        print(f"movenet_agreement: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    o, m = result["ours"], result["mean_pose_baseline"]
    print(f"{result['crops_scored']} crops: PCK@0.1 {o['pck@0.1']:.3f} @0.2 {o['pck@0.2']:.3f} "
          f"(mean pose {m['pck@0.1']:.3f} / {m['pck@0.2']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
