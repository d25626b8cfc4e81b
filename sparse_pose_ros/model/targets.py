"""Ground-truth targets for the HEMlets head: 2D heatmaps, heatmap triplets with Λ, joints.

Conventions (shared with ``model.heads`` and ``model.losses``):

- 2D joint positions are in [0, 1] of the *input image*; heatmap pixel ``i`` has its centre at
  ``(i + 0.5) / size``, the same convention the soft-argmax uses, so a target Gaussian peaks
  exactly where the soft-argmax of a delta would land.
- Depth ``z`` is root-relative camera depth divided by ``depth_range_mm`` (positive = farther
  from the camera than the pelvis), clamped to [-1, 1] because neither depth head can output
  beyond that range.
- ``visibility`` is a *label weight*, not an occlusion flag: 1 = this joint's annotation is to be
  trusted (synthetic renders label occluded joints too), 0 = no annotation. A joint whose 2D
  position falls outside the image gets weight 0 as well: no heatmap can represent it.

HEMlets triplets (Zhou et al., ICCV 2019; "HEMlets PoSh", arXiv 2003.04894), the reading
implemented here. For every skeletal part k = (parent p -> child c) of ``skeleton.BONES`` there
are three maps T_k^{-1}, T_k^{0}, T_k^{+1} (channels ``3k``, ``3k + 1``, ``3k + 2``):

- the relative depth (polarity) is r(z_p, z_c) = +1 if the child is *nearer* the camera than the
  parent by more than ε (z_c < z_p - ε), -1 if it is *farther* by more than ε (z_c > z_p + ε) and
  0 if |z_c - z_p| <= ε;
- T^0 always holds the parent's Gaussian (the part's anchor, "zero polarity");
- the child's Gaussian goes into T^r: into T^0 as well when r = 0 (merged with ``max`` so both
  peaks stay at 1), into T^{+1} or T^{-1} otherwise; the remaining channel(s) are zero;
- Λ (``triplet_weight``) masks whole parts whose relative depth is not known: it is the product
  of the parent's and the child's label weights, broadcast over the three channels and all pixels.
  This is the role Λ plays in HEMlets' L_HEM (parts without a depth-order label, e.g. in-the-wild
  images with partial annotations, contribute nothing).

ε is expressed in normalised z units. The paper text available to us does not give a number, so
we chose ``DEFAULT_EPSILON = 0.05``: 50 mm at the default 1000 mm depth range, about the accuracy
of a mocap joint centre and below the depth change of a 30 cm forearm tilted by 10°, so "same
depth" means "indistinguishable", not "roughly similar".
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from .. import skeleton

#: Tolerance of the relative-depth polarity in normalised z units (see module docstring).
DEFAULT_EPSILON: float = 0.05


@dataclass
class PoseTargets:
    """Targets of one batch.

    Attributes:
        heatmaps: (B, J, h, w) Gaussians (peak 1) at visible joints, zero maps elsewhere.
        triplets: (B, 3·P, h, w) HEMlets maps, part-major channel order [-1, 0, +1].
        triplet_weight: (B, 3·P, h, w) Λ: 1 where a part's polarity is known, else 0.
        joints: (B, J, 3): x, y in [0, 1] of the input image, z in [-1, 1].
        joint_weight: (B, J) label weight of each joint (0 = ignore).
    """

    heatmaps: Tensor
    triplets: Tensor
    triplet_weight: Tensor
    joints: Tensor
    joint_weight: Tensor

    def to(self, device: torch.device | str) -> PoseTargets:
        """Copy of the targets on ``device`` (for the training loop)."""
        return PoseTargets(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def root_relative_depth(
    joints_cam_mm: Tensor, depth_range_mm: float, root: int = skeleton.ROOT
) -> Tensor:
    """Camera-frame joints in mm (..., J, 3) -> normalised root-relative depth z (..., J).

    z = (Z_j - Z_root) / depth_range_mm; positive means farther from the camera than the root.
    Not clamped: callers that build targets clamp, callers that evaluate errors should not.
    """
    if depth_range_mm <= 0:
        raise ValueError(f"depth_range_mm must be > 0, got {depth_range_mm}")
    if joints_cam_mm.ndim < 2 or joints_cam_mm.shape[-1] != 3:
        raise ValueError(f"joints_cam_mm must be (..., J, 3), got {tuple(joints_cam_mm.shape)}")
    if not 0 <= root < joints_cam_mm.shape[-2]:
        raise ValueError(f"root index {root} out of range for {joints_cam_mm.shape[-2]} joints")
    z = joints_cam_mm[..., 2]
    return (z - z[..., root : root + 1]) / depth_range_mm


def relative_depth(z_parent: Tensor, z_child: Tensor, epsilon: float = DEFAULT_EPSILON) -> Tensor:
    """HEMlets polarity r(z_p, z_c) in {-1, 0, +1} (int64): +1 = child nearer the camera."""
    if epsilon < 0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")
    diff = z_child - z_parent
    r = torch.zeros_like(diff, dtype=torch.int64)
    r = torch.where(diff < -epsilon, torch.ones_like(r), r)
    return torch.where(diff > epsilon, -torch.ones_like(r), r)


def gaussian_maps(points: Tensor, size: int, sigma: float) -> Tensor:
    """Unnormalised Gaussians (peak 1) at ``points`` (B, N, 2) in [0, 1] -> (B, N, size, size)."""
    centres = (torch.arange(size, dtype=points.dtype, device=points.device) + 0.5) / size
    # Distances in heatmap pixels, so sigma is in heatmap pixels whatever the input size.
    dx = (centres.view(1, 1, 1, size) - points[..., 0, None, None]) * size
    dy = (centres.view(1, 1, size, 1) - points[..., 1, None, None]) * size
    return torch.exp(-(dx * dx + dy * dy) / (2.0 * sigma * sigma))


def _check_inputs(joints2d: Tensor, joints_z: Tensor, visibility: Tensor) -> None:
    j = skeleton.NUM_JOINTS
    if joints2d.ndim != 3 or joints2d.shape[1:] != (j, 2):
        raise ValueError(f"joints2d must be (B, {j}, 2), got {tuple(joints2d.shape)}")
    b = joints2d.shape[0]
    if joints_z.shape != (b, j):
        raise ValueError(f"joints_z must be ({b}, {j}), got {tuple(joints_z.shape)}")
    if visibility.shape != (b, j):
        raise ValueError(f"visibility must be ({b}, {j}), got {tuple(visibility.shape)}")
    for name, t in (("joints2d", joints2d), ("joints_z", joints_z), ("visibility", visibility)):
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} contains NaN or inf")


def build_targets(
    joints2d: Tensor,
    joints_z: Tensor,
    visibility: Tensor,
    heatmap_size: int,
    sigma: float = 2.0,
    epsilon: float = DEFAULT_EPSILON,
) -> PoseTargets:
    """Build heatmaps, HEMlets triplets, Λ and joint targets for a batch.

    Args:
        joints2d: (B, J, 2) x, y in [0, 1] of the input image.
        joints_z: (B, J) root-relative depth / depth range (see :func:`root_relative_depth`).
        visibility: (B, J) label weights in [0, 1].
        heatmap_size: side of the square heatmaps (input size / 4 for the default network).
        sigma: Gaussian standard deviation in heatmap pixels.
        epsilon: polarity tolerance in normalised z units.
    """
    if heatmap_size <= 0:
        raise ValueError(f"heatmap_size must be > 0, got {heatmap_size}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    _check_inputs(joints2d, joints_z, visibility)
    dtype = joints2d.dtype if joints2d.is_floating_point() else torch.float32
    joints2d = joints2d.to(dtype)
    inside = ((joints2d >= 0.0) & (joints2d <= 1.0)).all(dim=-1)
    weight = visibility.to(dtype).clamp(0.0, 1.0) * inside.to(dtype)

    gauss = gaussian_maps(joints2d, heatmap_size, sigma)  # (B, J, h, w)
    present = (weight > 0).to(dtype)[..., None, None]
    heatmaps = gauss * present

    parents = torch.tensor([p for p, _ in skeleton.BONES], device=joints2d.device)
    children = torch.tensor([c for _, c in skeleton.BONES], device=joints2d.device)
    g_parent, g_child = heatmaps[:, parents], heatmaps[:, children]  # (B, P, h, w)
    r = relative_depth(joints_z[:, parents], joints_z[:, children], epsilon)  # (B, P)
    sel = [(r == pol).to(dtype)[..., None, None] for pol in (-1, 0, 1)]
    t_minus = g_child * sel[0]
    t_zero = torch.maximum(g_parent, g_child * sel[1])
    t_plus = g_child * sel[2]
    b, p = r.shape
    triplets = torch.stack([t_minus, t_zero, t_plus], dim=2).reshape(b, 3 * p, *heatmaps.shape[-2:])

    part_weight = weight[:, parents] * weight[:, children]  # (B, P)
    triplet_weight = part_weight.repeat_interleave(3, dim=1)[..., None, None].expand_as(triplets)

    z = joints_z.to(dtype).clamp(-1.0, 1.0)
    joints = torch.cat([joints2d, z.unsqueeze(-1)], dim=-1)
    return PoseTargets(
        heatmaps=heatmaps,
        triplets=triplets,
        triplet_weight=triplet_weight.contiguous(),
        joints=joints,
        joint_weight=weight,
    )
