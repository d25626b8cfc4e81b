"""MoveNet (Google's weights imported into our network) as a cached teacher of the label corpus.

For every labelled frame of a label set (:mod:`.label_cache`): a square crop around the person,
MoveNet's heads on it (``PoseNetwork(x, with_movenet=True)``, the imported checkpoint of
``./run import-weights --from movenet-thunder``), MoveNet's own decoding
(:func:`sparse_pose_ros.model.movenet_head.decode`: 17 COCO keypoints + scores), and the
keypoint heatmaps kept as the distillation target. Written as ``movenet.npz`` beside
``blazepose.npz`` (format in :mod:`.label_cache`) by ``./run label`` (``training.label``); it
needs the frames and BlazePose's boxes of an existing set, not BlazePose itself.

The crop (stored per row as ``crop`` = x0, y0, side in image pixels; keypoints and heatmaps
refer to it):

* BlazePose found the person (at least :data:`MIN_VISIBLE_LANDMARKS` landmarks with visibility
  > :data:`VISIBLE`): the square of :data:`SIDE_FACTOR` × the box of those landmarks, centred on
  the box, at least :data:`MIN_SIDE_PX` (``framing.person_square``, the project's one framing
  rule) — the crops MoveNet's agreement with BlazePose was measured on (PCK@0.1 0.89 for Thunder,
  ``evaluation.movenet_agreement``). MoveNet then describes the same person as BlazePose.
* else the whole frame **letterboxed**: a square of the longer side centred on the frame, the
  rest zeros — what MoveNet's own tracker runs on while it has no person (TF.js pose-detection's
  ``initCropRegion``). Nothing of the frame is cut (a centre crop would lose the sides of a wide
  frame), so a person BlazePose missed is still in view, only small; MoveNet's centre prior
  then picks the person nearest the frame centre.

Pixels outside the image are zeros (black), as in the agreement crops; the square is shrunk to
the network's input with an area filter, enlarged (small people) bilinearly. A frame is
``detected`` when the mean of its 17 keypoint scores is ≥ :data:`DETECT_THRESHOLD`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..framing import person_square
from ..model.checkpoint import load_checkpoint
from ..model.movenet_head import NUM_KEYPOINTS, decode
from ..model.network import PoseNetwork
from ..teachers import movenet_map
from .label_cache import MOVENET_FILE, LabelSet, iter_images, sha256_file
from .real_sources import REPO_ROOT

DEFAULT_CHECKPOINT = REPO_ROOT / "data_cache" / "pretrained" / "movenet-thunder.safetensors"
#: Crop side over the larger side of BlazePose's visible-landmark box (as the agreement crops).
SIDE_FACTOR = 1.25
MIN_SIDE_PX = 32.0
#: BlazePose visibility above which a landmark frames the crop, and how many are needed.
VISIBLE = 0.5
MIN_VISIBLE_LANDMARKS = 4
#: Mean keypoint score at or above which MoveNet "found a person": 0.2 is the score above
#: which TF.js pose-detection's MoveNet tracker trusts a keypoint (MIN_CROP_KEYPOINT_SCORE).
DETECT_THRESHOLD = 0.2
DEFAULT_BATCH = 8

#: What defines the labels (a cached set with other settings or another model is relabelled).
SETTINGS: dict[str, Any] = {
    "crop": f"square of {SIDE_FACTOR} x the box of BlazePose's landmarks with visibility > "
            f"{VISIBLE} (at least {MIN_VISIBLE_LANDMARKS}; side >= {MIN_SIDE_PX:g} px), centred "
            "(framing.person_square); else the whole frame letterboxed (square of the longer "
            "side, centred)",
    "side_factor": SIDE_FACTOR,
    "min_side_px": MIN_SIDE_PX,
    "visible": VISIBLE,
    "min_visible_landmarks": MIN_VISIBLE_LANDMARKS,
    "fallback": "letterbox",
    "padding": "zeros",
    "resize": "cv2 INTER_AREA when shrinking, INTER_LINEAR when enlarging",
    "decode": "model.movenet_head.decode (MoveNet's single-pose decoding)",
    "heatmaps": "uint8 round(255 * sigmoid(heatmap logits)), the crop's stride-4 grid",
    "detect_threshold": DETECT_THRESHOLD,
    "detect_rule": "mean of the 17 keypoint scores >= detect_threshold",
}


def crop_box(landmarks: np.ndarray | None, width: int, height: int) -> tuple[int, int, int, bool]:
    """(x0, y0, side, from_blazepose): the square the network sees, in image pixels.

    ``landmarks``: BlazePose's (33, 4) row (x, y normalised to the image, z, visibility), or
    None / NaN when it found nobody: then the letterboxed whole frame.
    """
    if landmarks is not None:
        lm = np.asarray(landmarks, np.float64)
        vis = np.nan_to_num(lm[:, 3]) > VISIBLE
        pts = lm[vis, :2] * np.array([width, height])
        if vis.sum() >= MIN_VISIBLE_LANDMARKS and np.all(np.isfinite(pts)):
            centre, side_f = person_square(pts, SIDE_FACTOR, MIN_SIDE_PX)
            side = int(round(side_f))
            x0, y0 = (int(v) for v in np.round(centre - side / 2.0))
            return x0, y0, side, True
    side = max(width, height)
    return (width - side) // 2, (height - side) // 2, side, False


def crop_square(image: np.ndarray, x0: int, y0: int, side: int, size: int) -> np.ndarray:
    """The square [x0, x0 + side) × [y0, y0 + side) of ``image`` (zeros outside it), resized to
    size × size (area filter when shrinking, bilinear when enlarging)."""
    import cv2

    h, w = image.shape[:2]
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + side, w), min(y0 + side, h)
    if sx1 <= sx0 or sy1 <= sy0:
        return np.zeros((size, size, 3), np.uint8)
    square = cv2.copyMakeBorder(
        np.ascontiguousarray(image[sy0:sy1, sx0:sx1]), sy0 - y0, y0 + side - sy1,
        sx0 - x0, x0 + side - sx1, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    if side == size:
        return square
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interp)


def pck_vs_blazepose(movenet: dict[str, np.ndarray], blazepose: dict[str, np.ndarray],
                     sizes: np.ndarray, thresholds: tuple[float, ...] = (0.1, 0.2)
                     ) -> dict[str, Any]:
    """How close MoveNet's keypoints are to BlazePose's landmarks of the same name, on the
    frames MoveNet saw cropped around BlazePose's person (a check of the labels, not of truth).

    A keypoint counts where BlazePose's visibility > :data:`VISIBLE`; it is correct within
    t × the larger side of the box of the frame's counted BlazePose keypoints (frames with at
    least 2), as in ``evaluation.movenet_agreement``. ``sizes``: (N, 2) image width, height.
    """
    rows = np.flatnonzero(movenet["crop_from_blazepose"] & blazepose["detected"].astype(bool))
    lm = blazepose["landmarks"][rows][:, list(movenet_map.BLAZEPOSE_OF_COCO)].astype(np.float64)
    ref = lm[..., :2] * sizes[rows, None, :]
    counted = np.nan_to_num(lm[..., 3]) > VISIBLE
    box = np.array([np.ptp(r[c], axis=0).max() if c.sum() >= 2 else 0.0
                    for r, c in zip(ref, counted, strict=True)]).reshape(-1, 1)
    counted &= box > 0
    err = np.linalg.norm(movenet["keypoints_px"][rows] - ref, axis=-1) / np.maximum(box, 1e-9)
    out: dict[str, Any] = {"frames": int((counted.sum(axis=1) > 0).sum()),
                           "keypoints": int(counted.sum())}
    for t in thresholds:
        out[f"pck@{t:g}"] = (round(float(((err <= t) & counted).sum() / counted.sum()), 4)
                             if counted.any() else None)
    return out


@torch.no_grad()
def run_crops(net: PoseNetwork, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """MoveNet on (B, S, S, 3) uint8 RGB crops -> ((B, 17, 3) y, x in [0, 1] of the crop and
    score; (B, 17, h, w) uint8 heatmaps; mean executed share of the gated blocks' positions)."""
    cfg = net.cfg
    mean = torch.tensor(cfg.input_mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.input_std).view(1, 3, 1, 1)
    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 255.0
    out = net((x - mean) / std, with_movenet=True)
    assert out.movenet is not None
    keypoints = decode(out.movenet).numpy()
    heat = torch.round(255.0 * torch.sigmoid(out.movenet.heatmap)).to(torch.uint8).numpy()
    hard = [m.hard.float().mean().item() for m in out.masks if m is not None]
    return keypoints, heat, float(np.mean(hard)) if hard else 1.0


@dataclass
class MoveNetTeacher:
    """A loaded MoveNet checkpoint and what identifies it in the cache."""

    net: PoseNetwork
    path: Path
    model_hash: str
    sha256: str
    meta: dict[str, Any]

    @classmethod
    def load(cls, path: Path = DEFAULT_CHECKPOINT) -> MoveNetTeacher:
        """Raises FileNotFoundError (with the import command) when ``path`` is missing,
        ``model.checkpoint.CheckpointError`` when it is unreadable, ValueError when the network
        has no MoveNet heads."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"MoveNet checkpoint {path} missing: run ./run import-weights "
                                    "--from movenet-thunder")
        net, info = load_checkpoint(path)
        if net.movenet is None:
            raise ValueError(f"{path} has no MoveNet heads (import one with ./run import-weights)")
        return cls(net, path, info["model_hash"], sha256_file(path), info["meta"])

    def is_current(self, ls: LabelSet) -> bool:
        """Whether ``ls`` already holds this checkpoint's labels with these settings (and the
        file whose rows follow its frames)."""
        rec = ls.manifest.get("teachers", {}).get("movenet")
        if not rec or rec.get("model_hash") != self.model_hash or rec.get("settings") != SETTINGS:
            return False
        path = ls.folder / rec.get("file", MOVENET_FILE)
        try:
            with np.load(path) as z:
                return list(z["frame_ids"]) == ls.frame_ids
        except (OSError, KeyError, ValueError):
            return False

    def label(self, ls: LabelSet, batch: int = DEFAULT_BATCH
              ) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
        """MoveNet on every frame of ``ls``: (``movenet.npz`` arrays, the manifest's teacher
        record, a summary for the corpus report).

        Raises:
            ValueError: a source file changed since BlazePose labelled it (sha256 or size), or
                a frame is missing from it.
        """
        import cv2

        for rec in ls.manifest.get("files", []):
            if rec.get("path") and rec.get("sha256") and sha256_file(Path(rec["path"])) != rec[
                    "sha256"]:
                raise ValueError(f"{rec['path']} changed since BlazePose labelled it (sha256): "
                                 "relabel the source (./run label --force)")
        frames = ls.manifest["frames"]
        n, size = len(frames), self.net.cfg.input_size
        bp = ls.blazepose
        crop = np.zeros((n, 3), np.float32)
        from_bp = np.zeros(n, bool)
        raw = np.full((n, NUM_KEYPOINTS, 3), np.nan, np.float32)
        heatmaps: np.ndarray | None = None
        densities: list[float] = []
        done = np.zeros(n, bool)
        rows: list[int] = []
        pixels: list[np.ndarray] = []
        t0 = time.perf_counter()

        def flush() -> None:
            nonlocal heatmaps
            kp, heat, density = run_crops(self.net, np.stack(pixels))
            if heatmaps is None:
                heatmaps = np.zeros((n, *heat.shape[1:]), np.uint8)
            raw[rows], heatmaps[rows] = kp, heat
            done[rows] = True
            densities.extend([density] * len(rows))
            rows.clear()
            pixels.clear()

        for row, image in iter_images(ls):
            f = frames[row]
            h, w = image.shape[:2]
            if (w, h) != (f["width"], f["height"]):
                raise ValueError(f"{f['id']}: frame is {w}x{h}, BlazePose labelled "
                                 f"{f['width']}x{f['height']}: relabel the source")
            lm = bp["landmarks"][row] if bp["detected"][row] else None
            x0, y0, side, from_bp[row] = crop_box(lm, w, h)
            crop[row] = (x0, y0, side)
            rows.append(row)
            pixels.append(crop_square(image, x0, y0, side, size))
            if len(rows) == batch:
                flush()
        if rows:
            flush()
        if heatmaps is None and n == 0:
            heatmaps = np.zeros((0, NUM_KEYPOINTS, size // 4, size // 4), np.uint8)
        if not done.all() or heatmaps is None:
            missing = [frames[i]["id"] for i in np.flatnonzero(~done)[:3]]
            raise ValueError(f"{ls.manifest['source']['id']}: frames not decoded: {missing}")
        seconds = time.perf_counter() - t0
        xy = np.stack([crop[:, None, 0] + raw[..., 1] * crop[:, None, 2],
                       crop[:, None, 1] + raw[..., 0] * crop[:, None, 2]], axis=-1)
        scores = raw[..., 2]
        detected = scores.mean(axis=1) >= DETECT_THRESHOLD
        h36m_px, h36m_score = movenet_map.map_to_h36m(xy, scores)
        arrays = {
            "keypoints_px": xy.astype(np.float32), "scores": scores.astype(np.float32),
            "crop": crop, "crop_from_blazepose": from_bp, "heatmaps": heatmaps,
            "h36m_px": h36m_px.astype(np.float32), "h36m_score": h36m_score.astype(np.float32),
            "detected": detected, "frame_ids": np.array([f["id"] for f in frames]),
        }
        sizes = np.array([(f["width"], f["height"]) for f in frames], float).reshape(-1, 2)
        bp_det = bp["detected"].astype(bool)
        agreement = {"both": int((detected & bp_det).sum()),
                     "movenet_only": int((detected & ~bp_det).sum()),
                     "blazepose_only": int((~detected & bp_det).sum()),
                     "neither": int((~detected & ~bp_det).sum())}
        record = {
            "file": MOVENET_FILE,
            "checkpoint": str(self.path),
            "checkpoint_sha256": self.sha256,
            "model_hash": self.model_hash,
            "model": self.meta.get("source", {}).get("model"),
            "weights_source": self.meta.get("source", {}),
            "input_size": size,
            "heatmap_size": list(heatmaps.shape[2:]),
            "versions": {"torch": torch.__version__, "numpy": np.__version__,
                         "opencv": cv2.__version__},
            "settings": SETTINGS,
            "h36m_mapping": movenet_map.APPROXIMATIONS,
            "threads": torch.get_num_threads(),
            "batch": batch,
            "mask_density": round(float(np.mean(densities)), 4),
            "seconds": round(seconds, 2),
            "frames": n,
            "detected": int(detected.sum()),
            "crops_from_blazepose": int(from_bp.sum()),
            "detected_vs_blazepose": agreement,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        summary = {
            "frames": n, "detected": int(detected.sum()),
            "detection_rate": round(float(detected.mean()), 4) if n else None,
            "crops_from_blazepose": int(from_bp.sum()), "detected_vs_blazepose": agreement,
            "seconds": round(seconds, 1), "ms_per_frame": round(1e3 * seconds / max(n, 1), 1),
            "mean_score": round(float(scores.mean()), 4) if n else None,
            "pck_vs_blazepose": pck_vs_blazepose(arrays, bp, sizes),
        }
        return arrays, record, summary
