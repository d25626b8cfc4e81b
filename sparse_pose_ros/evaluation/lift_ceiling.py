"""How much of the 3D error is lifting, and how much is the 2D: the model's lifter on exact 2D.

Why: the node's 3D is the network's 2D joints, the lifter's root-relative depth and a root
depth fitted to a body-size prior (``pipeline.lift``). Against the triangulated Pose2Sim labels
only the sum is measured by ``real_heldout``; feeding the lifter the labels' own 2D (the
triangulated joints projected with their view's calibrated K) instead of the network's takes
the 2D error out, and fitting with the true root depth instead of the prior takes the scale out.
What is left at each step says which lever is worth pulling: better 2D, a better lifter, or a
better body-size prior (``docs/network.md`` §5d has the numbers this produced).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import skeleton
from ..model.lifter import PoseLifter
from ..pipeline.lift import REFERENCE_BONE_LENGTHS_M, fit_root_depth, viewing_rays
from ..training.metrics import mpjpe, pa_mpjpe


def triangulated_views(tri: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 17, 3) camera-frame metres of every valid frame × view of a ``triangulated.npz``
    with all joints labelled, and (N, 3, 3) each one's view K."""
    valid = np.asarray(tri["valid"], bool)
    cam = np.asarray(tri["joints_cam_m"], np.float64)[valid]  # (F, V, J, 3)
    k = np.broadcast_to(np.asarray(tri["K"], np.float64), (cam.shape[0], *np.shape(tri["K"])))
    cam, k = cam.reshape(-1, skeleton.NUM_JOINTS, 3), k.reshape(-1, 3, 3)
    ok = np.isfinite(cam).all(axis=(1, 2)) & (cam[..., 2] > 0).all(axis=1)
    return cam[ok], k[ok]


@torch.no_grad()
def lift_from_true_2d(lifter: PoseLifter, bone_lengths_m: tuple[float, ...],
                      depth_range_mm: float, cam_m: np.ndarray, k: np.ndarray
                      ) -> dict[str, Any]:
    """MPJPE (mm, root-relative) of exact 2D + the lifter's depth, with the root depth the
    node would fit (the model's bone lengths, or Human3.6M's when it has none), with
    Human3.6M's, and with the true root depth; PA-MPJPE of the lifted pose."""
    if not len(cam_m):
        raise ValueError("no triangulated skeleton to lift")
    uvw = np.einsum("nij,nkj->nki", k, cam_m)
    uv = uvw[..., :2] / uvw[..., 2:]
    dz = lifter.eval()(torch.as_tensor(uv, dtype=torch.float32)).double().numpy()
    dz *= depth_range_mm / 1000.0
    fx, fy = k[:, 0, 0, None], k[:, 1, 1, None]
    cx, cy = k[:, 0, 2, None], k[:, 1, 2, None]
    rays = viewing_rays(uv, fx, fy, cx, cy)
    truth = (cam_m - cam_m[:, :1]) * 1000.0
    ones = np.ones(skeleton.NUM_BONES)

    def rel(root: np.ndarray) -> np.ndarray:
        pts = rays * (root[:, None] + dz)[..., None]
        return (pts - pts[:, :1]) * 1000.0

    def fitted(ref: tuple[float, ...]) -> np.ndarray:
        return rel(np.array([fit_root_depth(rays[i], dz[i], ones, np.asarray(ref))[0]
                             for i in range(len(rays))]))  # fmt: skip

    own = bone_lengths_m or REFERENCE_BONE_LENGTHS_M
    true_root = rel(cam_m[:, skeleton.ROOT, 2])
    return {
        "frames": int(len(cam_m)),
        "mpjpe_mm_fitted_root": mpjpe(fitted(own), truth),
        "mpjpe_mm_fitted_root_h36m_bones": mpjpe(fitted(REFERENCE_BONE_LENGTHS_M), truth),
        "mpjpe_mm_true_root": mpjpe(true_root, truth),
        "pa_mpjpe_mm": pa_mpjpe(true_root, truth),
        "bone_lengths": "model" if bone_lengths_m else "Human3.6M means",
    }
