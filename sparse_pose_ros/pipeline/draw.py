"""Pictures of a pose: 2D skeleton over the image, execution-mask overlay.

Used by the node (``publish_mask_overlay``) and the demo PNGs, so what RViz shows and what the
README shows are drawn by the same code.
"""

from __future__ import annotations

import cv2
import numpy as np

from .. import skeleton


def _bgr255(rgb01: tuple[float, float, float]) -> tuple[int, int, int]:
    """Skeleton colours are RGB in [0, 1]; our canvases are RGB uint8."""
    return tuple(int(round(c * 255)) for c in rgb01)  # type: ignore[return-value]


def draw_skeleton(
    rgb: np.ndarray,
    joints_px: np.ndarray,
    confidence: np.ndarray | None = None,
    min_confidence: float = 0.0,
) -> np.ndarray:
    """Copy of ``rgb`` (H, W, 3) uint8 with bones and joints drawn in the skeleton colours.

    Joints below ``min_confidence`` (and their bones) are left out.
    """
    out = np.ascontiguousarray(rgb.copy())
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 160))
    pts = np.asarray(joints_px, dtype=np.float64)
    ok = np.all(np.isfinite(pts), axis=1)
    if confidence is not None:
        ok &= np.asarray(confidence) >= min_confidence
    ipts = np.round(np.nan_to_num(pts)).astype(np.int64).clip(-10 * max(h, w), 10 * max(h, w))
    for (p, c), colour in zip(skeleton.BONES, skeleton.BONE_COLOURS, strict=True):
        if ok[p] and ok[c]:
            cv2.line(out, tuple(ipts[p]), tuple(ipts[c]), _bgr255(colour), thick, cv2.LINE_AA)
    for j, colour in enumerate(skeleton.JOINT_COLOURS):
        if ok[j]:
            cv2.circle(out, tuple(ipts[j]), thick + 2, _bgr255(colour), -1, cv2.LINE_AA)
    return out


def mask_overlay(rgb: np.ndarray, mask: np.ndarray, alpha: float = 0.35) -> np.ndarray:
    """Image dimmed where nothing executed, tinted where the blocks ran (uint8 RGB)."""
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match image {rgb.shape[:2]}")
    m = (mask.astype(np.float32) / 255.0)[:, :, None]
    tint = np.array([255.0, 60.0, 200.0], np.float32)
    base = rgb.astype(np.float32) * (0.3 + 0.7 * m)
    out = base * (1.0 - alpha * m) + tint * (alpha * m)
    return out.clip(0, 255).astype(np.uint8)
