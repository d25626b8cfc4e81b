"""Run a network over a held-out loader and compute every accuracy and mask number we report.

Used by the periodic evaluation inside ``train`` and by the ``evaluate`` CLI, so both report
the same quantities computed the same way.

3D protocol: the network predicts x, y in the input image and a root-relative depth z. Joints are
lifted to the camera frame with the input's intrinsics and the *ground-truth root depth* (the
usual protocol for root-relative monocular methods that do not estimate absolute distance):
Z_j = Z_root + z_j · depth_range_mm, X_j = (u_j − c_x) · Z_j / f_x, Y_j likewise; then both
skeletons are made root-relative and compared (MPJPE, protocol 1; PA-MPJPE, protocol 2).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .. import skeleton
from ..model.flops import block_flops_sparse, flops_report
from .metrics import MaskStats, PoseAccumulator

LOG = logging.getLogger(__name__)

#: Frames where the person covers less than this share of the image count as "small person".
SMALL_PERSON_FRACTION = 0.25


def lift_to_camera(
    joints: Tensor,
    intrinsics: Tensor,
    root_depth_mm: Tensor,
    input_size: int,
    depth_range_mm: float,
) -> Tensor:
    """Network joints (B, J, 3) -> camera-frame mm (B, J, 3) using the given root depth.

    ``joints`` x, y are in [0, 1] of the input with pixel i's centre at (i + 0.5) / size, the
    intrinsics are in pixel-index convention (centre of pixel i at i), so u = x · size − 0.5.
    """
    u = joints[..., 0] * input_size - 0.5
    v = joints[..., 1] * input_size - 0.5
    z = root_depth_mm[:, None] + joints[..., 2] * depth_range_mm
    fx, fy = intrinsics[:, 0, 0, None], intrinsics[:, 1, 1, None]
    cx, cy = intrinsics[:, 0, 2, None], intrinsics[:, 1, 2, None]
    return torch.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], dim=-1)


def to_pixels(joints: Tensor, input_size: int) -> Tensor:
    """[0, 1] coordinates -> pixel-index coordinates of the input image."""
    return joints[..., :2] * input_size - 0.5


@dataclass
class _FrameFlops:
    """Per-frame FLOPs numbers of one batch, each (B,) or (B, blocks)."""

    gated_density: np.ndarray
    backbone_fraction: np.ndarray
    blocks: np.ndarray


def per_frame_flops(net: nn.Module, output: Any, input_hw: tuple[int, int]) -> _FrameFlops:
    """FLOPs accounting of every frame of a batch (``flops_report`` averages over the batch).

    The batch report gives the shape-only constants (dense MACs per block, stem, mask units);
    the executed MACs of gated blocks are recomputed from each frame's own mask counts with the
    same formula (``block_flops_sparse``).
    """
    rep = flops_report(net, output, input_hw)
    b = output.joints.shape[0]
    executed = np.zeros((b, len(rep.blocks)))
    dense = np.array([r.dense_macs for r in rep.blocks])
    for k, (block, mask) in enumerate(zip(net.backbone.blocks, output.masks, strict=True)):
        if mask is None:
            executed[:, k] = dense[k]
            continue
        n_active = (mask.hard.detach() > 0.5).flatten(1).sum(dim=1).double().cpu()
        n_dilated = (mask.dilated.detach() > 0.5).flatten(1).sum(dim=1).double().cpu()
        executed[:, k] = np.asarray(block_flops_sparse(block, n_active, n_dilated))
    gated = np.array([r.gated for r in rep.blocks])
    if gated.any():
        gated_density = executed[:, gated].sum(axis=1) / dense[gated].sum()
    else:
        gated_density = np.ones(b)
    backbone = (rep.stem_macs + executed.sum(axis=1) + rep.mask_unit_macs) / rep.backbone_dense_macs
    return _FrameFlops(gated_density, backbone, executed / dense)


def midpoint_labels(joints_cam: Tensor, joints_2d: Tensor, visible: Tensor
                    ) -> tuple[Tensor, Tensor, Tensor]:
    """Synthetic labels (SMPL-X torso joints) in a ``midpoint_torso`` network's definition:
    3D and 2D mid-points (``skeleton.MIDPOINT_JOINTS``), a mid-point visible when both of its
    ends are — so a network is scored against the skeleton it is meant to output."""
    m = torch.tensor(skeleton.midpoint_matrix(), dtype=joints_cam.dtype, device=joints_cam.device)
    vis = visible.clone()
    for joint, a, b in skeleton.MIDPOINT_JOINTS:
        vis[:, joint] = vis[:, a] & vis[:, b]
    return m @ joints_cam, m.to(joints_2d.dtype) @ joints_2d, vis


@torch.no_grad()
def evaluate_model(
    net: nn.Module,
    loader: Any,
    device: torch.device,
    max_frames: int = 0,
    pck_alpha: float = 0.1,
    pixels_by_index: dict[int, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Accuracy, FLOPs and mask metrics of ``net`` over ``loader`` (batches of :class:`Batch`).

    Args:
        net: a PoseNetwork (put in eval mode here; the caller restores train mode).
        loader: iterable of :class:`Batch`.
        device: where to run.
        max_frames: stop after this many frames (0 = the whole loader).
        pck_alpha: PCK threshold as a fraction of the person box.
        pixels_by_index: if given, filled with each frame's predicted (J, 2) joints in input
            pixels, keyed by ``Batch.index`` (the boxes of the two-pass protocol's second pass).
    """
    net.eval()
    cfg = net.cfg
    size = cfg.input_size
    acc = PoseAccumulator()
    gated_idx = [i for i, b in enumerate(net.backbone.blocks) if b.gated]
    mask_stats = {i: MaskStats() for i in gated_idx}
    frames: list[_FrameFlops] = []
    fills: list[float] = []
    seen = 0
    t0 = time.perf_counter()
    for batch in loader:
        if max_frames and seen >= max_frames:
            break
        batch = batch.to(device)
        take = (
            batch.images.shape[0]
            if not max_frames
            else min(batch.images.shape[0], max_frames - seen)
        )
        if take < batch.images.shape[0]:
            batch = batch.slice(take)
        output = net(batch.images)
        joints = output.joints.float()
        gt_cam, gt_2d, visible = batch.joints_cam_mm, batch.joints2d, batch.visibility > 0
        if cfg.midpoint_torso:  # score in the definition the net outputs
            gt_cam, gt_2d, visible = midpoint_labels(gt_cam, gt_2d, visible)
        root_z = gt_cam[:, 0, 2]
        pred_cam = lift_to_camera(joints, batch.intrinsics, root_z, size, cfg.depth_range_mm)
        pred_px = to_pixels(joints, size).cpu().numpy()
        if pixels_by_index is not None:
            pixels_by_index.update(zip(batch.index.tolist(), pred_px, strict=True))
        acc.update(
            pred_cam.cpu().numpy(),
            gt_cam.cpu().numpy(),
            pred_px,
            to_pixels(gt_2d, size).cpu().numpy(),
            visible.cpu().numpy(),
        )
        sil = batch.silhouette.cpu().numpy() > 0
        fills.extend(sil.reshape(sil.shape[0], -1).mean(axis=1).tolist())
        for i in gated_idx:
            mask_stats[i].update(output.masks[i].hard[:, 0].cpu().numpy(), sil)
        frames.append(per_frame_flops(net, output, (size, size)))
        seen += take
    if not seen:
        raise ValueError("the evaluation loader yielded no frames")
    elapsed = time.perf_counter() - t0

    result: dict[str, Any] = acc.summary(pck_alpha)
    fill = np.asarray(fills)
    gated_density = np.concatenate([f.gated_density for f in frames])
    backbone = np.concatenate([f.backbone_fraction for f in frames])
    block_density = np.concatenate([f.blocks for f in frames]).mean(axis=0)
    small = fill < SMALL_PERSON_FRACTION
    result.update(
        {
            "eval_seconds": elapsed,
            "torso": "midpoints" if cfg.midpoint_torso else "as labelled",
            "person_fill_mean": float(fill.mean()),
            "backbone_flops_fraction": float(backbone.mean()),
            "gated_density": float(gated_density.mean()),
            "per_block_density": [float(v) for v in block_density],
            "gated_blocks": gated_idx,
            "small_person_frames": int(small.sum()),
            "small_person_gated_density": float(gated_density[small].mean())
            if small.any()
            else None,
            "small_person_backbone_fraction": float(backbone[small].mean())
            if small.any()
            else None,
        }
    )
    if gated_idx:
        result["mask"] = {
            str(i): {
                "recall": mask_stats[i].recall,
                "precision": mask_stats[i].precision,
                "density": mask_stats[i].density,
            }
            for i in gated_idx
        }
        first = mask_stats[gated_idx[0]]
        result["first_gated_block"] = gated_idx[0]
        result["first_gated_recall"] = first.recall
        result["first_gated_precision"] = first.precision
    return result

