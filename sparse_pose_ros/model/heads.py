"""HEMlets head: 2D heatmaps, part-centric heatmap triplets and a depth branch with soft-argmax.

Reading of HEMlets (Zhou et al., ICCV 2019 / "HEMlets PoSh", arXiv 2003.04894) implemented here
(targets in ``model.targets``, which documents ε and Λ):
- per skeletal part k (parent p -> child c, ``skeleton.BONES``: 16 parts; the authors' code uses
  14) three maps T_k^{-1}, T_k^{0}, T_k^{+1}, channel order part-major [k: -1, 0, +1]. T^0 holds
  the parent joint; the child joint sits in T^r with r(z_p, z_c) = +1 (child nearer the camera by
  more than ε), 0 (|z_c - z_p| <= ε, so T^0 then holds both joints) or -1 (child farther);
- 2D joint heatmaps (J channels). Here they are the *logits* of the 2D soft-argmax;
- the depth branch sees the features concatenated with the 2D heatmaps and the triplets (in the
  authors' code the heatmaps + triplets, 14·3 + J channels, are encoded and concatenated to the
  feature map before the volume regression), so the explicit depth-order evidence feeds 3D;
- joints come from a soft-argmax (integral regression), so the whole head is differentiable.

Depth modes (the volumetric head is HEMlets' biggest cost: 17 × 64 bins at 64×64 from 1024
channels ≈ 4.8 GMAC in the original):
- ``"volumetric"``: a J·D-channel volume, softmax over all D·h·w voxels of a joint, soft-argmax
  over the whole volume (HEMlets' readout; voxel centres at (i + 0.5)/size, z bins mapped to
  (-1, 1)). It can represent several depth hypotheses per pixel.
- ``"factorized"`` (default): one depth value per joint per pixel, tanh-bounded to (-1, 1), and
  z = its expectation under the joint's 2D softmax; x, y from the 2D softmax. This is the
  volumetric soft-argmax restricted to volumes whose depth distribution is a point mass at every
  pixel. It loses per-pixel multi-modal depth (which an expectation averages away anyway) and
  costs J instead of J·D output channels (64× fewer for D = 64). See docs/network.md.

Head gating (``NetworkConfig.head_gating``, the "masks -> heatmaps" idea): the heads are read
only inside a *region* derived from the backbone's last execution mask (``head_region``): that
mask dilated by one cell at its own resolution, nearest-upsampled to the head's. Outside it the
heatmap logits are ``REGION_OFF_LOGIT`` (softmax weight exactly 0 in float32), the triplets 0,
so the joints depend on the region's pixels only and a sparse runtime computes the stride-4
convs and the soft-argmax there alone. An empty region (no person) means the whole map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import skeleton
from .blocks import ConvBN
from .index_ops import first_max_index

#: Heatmap logit outside the head region: exp(REGION_OFF_LOGIT - max) underflows to 0 in float32
#: for any logit the head produces, and it is finite (no inf - inf = nan in a softmax).
REGION_OFF_LOGIT = -1.0e4


def head_region(gate: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, 1, h, w) 0/1 execution mask -> (B, 1, *size) 0/1 head region.

    Dilated by one cell (3×3) at the mask's resolution so joints at the mask's edge keep their
    heatmap tails, then nearest-upsampled; a batch item whose region is empty gets the whole map.
    """
    region = F.interpolate(F.max_pool2d(gate, 3, 1, 1), size=size, mode="nearest")
    empty = region.flatten(1).amax(dim=1) <= 0
    return torch.where(empty.view(-1, 1, 1, 1), torch.ones_like(region), region)


def softmax_2d(heatmaps: Tensor) -> Tensor:
    """Spatial softmax per channel: (B, C, H, W) -> probabilities summing to 1 over H×W."""
    b, c, h, w = heatmaps.shape
    return F.softmax(heatmaps.reshape(b, c, h * w), dim=-1).reshape(b, c, h, w)


def expected_xy(prob: Tensor) -> Tensor:
    """Soft-argmax coordinates of (B, C, H, W) probabilities, normalised to [0, 1] of the map.

    Pixel centres sit at (i + 0.5) / size so a delta at pixel i maps back to its centre.
    """
    _, _, h, w = prob.shape
    xs = (torch.arange(w, device=prob.device, dtype=prob.dtype) + 0.5) / w
    ys = (torch.arange(h, device=prob.device, dtype=prob.dtype) + 0.5) / h
    x = (prob.sum(dim=2) * xs).sum(dim=-1)
    y = (prob.sum(dim=3) * ys).sum(dim=-1)
    return torch.stack([x, y], dim=-1)


def strip_to_square(joints: Tensor, h: int, w: int) -> Tensor:
    """(B, J, ≥2) joints with x, y in [0, 1] of an (h, w) map -> [0, 1] of the centred square
    of side max(h, w) that the map is the middle strip of.

    Why: a tracking crop for an upright person can be the central columns of the square
    window (``pipeline.preprocess.Letterbox.input_width``): the network reads only the strip,
    at the square's resolution, and everything after it (the lifter, which learned square-crop
    coordinates, and the mapping back to the image) sees the square's frame. Identity on a
    square map.
    """
    if h == w:
        return joints
    side = float(max(h, w))
    scale = joints.new_tensor([w / side, h / side])
    xy = (joints[..., :2] - 0.5) * scale + 0.5
    return torch.cat([xy, joints[..., 2:]], dim=-1)


def factorized_soft_argmax(heatmaps: Tensor, depth: Tensor) -> Tensor:
    """(B, J, h, w) heatmap logits + (B, J, h, w) per-pixel depth logits -> (B, J, 3) joints.

    x, y: soft-argmax of the 2D softmax; z: expectation of tanh(depth) under the same softmax.
    """
    return _soft_argmax_with_depth_map(heatmaps, torch.tanh(depth))


def peak_window(heatmaps: Tensor, radius: int) -> Tensor:
    """Heatmap logits with everything farther than ``radius`` cells (Chebyshev) from each map's
    argmax set to ``REGION_OFF_LOGIT``: the soft-argmax of the result is a *local* one.

    Why: the whole-map soft-argmax averages every mode of the map, so a second person, a
    left/right ambiguity or background clutter pulls the joint towards the middle of them. On
    MoveNet's features a small person in a whole camera frame keeps such modes, and the global
    readout missed joints the argmax found (PCK@0.1 vs BlazePose on 30 held-out Pose2Sim frames:
    0.52 global, 0.80 argmax, 0.82 soft-argmax within 2 cells of it; ``models/MODEL_CARD.md``).
    Ties break to the first maximum; the index comes from :func:`first_max_index` (not an
    ArgMax, which OpenVINO runs slowly) and the window from Where, so it exports to ONNX."""
    b, j, h, w = heatmaps.shape
    idx = first_max_index(heatmaps.reshape(b, j, h * w))
    cy = torch.div(idx, w, rounding_mode="floor").view(b, j, 1, 1)
    cx = (idx - cy.view(b, j) * w).view(b, j, 1, 1)
    ys = torch.arange(h, device=heatmaps.device).view(1, 1, h, 1)
    xs = torch.arange(w, device=heatmaps.device).view(1, 1, 1, w)
    inside = ((ys - cy).abs() <= radius) & ((xs - cx).abs() <= radius)
    return torch.where(inside, heatmaps, torch.full_like(heatmaps, REGION_OFF_LOGIT))


def _soft_argmax_with_depth_map(heatmaps: Tensor, depth_map: Tensor, window: int = 0) -> Tensor:
    """:func:`factorized_soft_argmax` on the already bounded per-pixel depth ``tanh(depth)``
    (the head keeps that map as an output, so it is computed once); ``window`` > 0 reads x, y
    and z within that many cells of each map's peak (:func:`peak_window`)."""
    if heatmaps.shape != depth_map.shape:
        raise ValueError(
            f"heatmaps {tuple(heatmaps.shape)} and depth {tuple(depth_map.shape)} differ"
        )
    prob = softmax_2d(peak_window(heatmaps, window) if window > 0 else heatmaps)
    z = (prob * depth_map).sum(dim=(2, 3))
    return torch.cat([expected_xy(prob), z.unsqueeze(-1)], dim=-1)


def volumetric_soft_argmax(volume: Tensor) -> Tensor:
    """(B, J, D, h, w) volume logits -> (B, J, 3): soft-argmax over the whole volume per joint.

    x, y in [0, 1] of the map (voxel centres at (i + 0.5)/size), z bin centres spread over
    (-1, 1): bin d has z = (d + 0.5)/D·2 - 1.
    """
    if volume.ndim != 5:
        raise ValueError(f"volume must be (B, J, D, h, w), got {tuple(volume.shape)}")
    b, j, d, h, w = volume.shape
    vol = F.softmax(volume.reshape(b, j, d * h * w), dim=-1).reshape(b, j, d, h, w)
    xy = expected_xy(vol.sum(dim=2))
    zs = (torch.arange(d, device=vol.device, dtype=vol.dtype) + 0.5) / d * 2.0 - 1.0
    z = (vol.sum(dim=(3, 4)) * zs).sum(dim=-1)
    return torch.cat([xy, z.unsqueeze(-1)], dim=-1)


class Neck(nn.Module):
    """Light FPN: upsample stride-16 features to stride 4, adding the stride-8 and stride-4 skips.

    Depthwise-separable convs keep it cheap; it replaces HEMlets' three 256-channel deconvs.
    """

    def __init__(self, in_channels: int, skip_channels: tuple[int, int], channels: int) -> None:
        super().__init__()
        self.reduce = ConvBN(in_channels, channels, 1)
        self.skips = nn.ModuleList(ConvBN(c, channels, 1) for c in skip_channels)
        self.refine = nn.ModuleList(
            nn.Sequential(
                ConvBN(channels, channels, 3, groups=channels),
                ConvBN(channels, channels, 1),
            )
            for _ in skip_channels
        )

    def forward(self, x: Tensor, skips: list[Tensor]) -> Tensor:
        y = self.reduce(x)
        for skip, lateral, refine in zip(skips, self.skips, self.refine, strict=True):
            y = F.interpolate(y, size=skip.shape[-2:], mode="nearest") + lateral(skip)
            y = refine(y)
        return y


class HemletsHead(nn.Module):
    """Heads on stride-4 features.

    Returns (heatmaps, triplets, joints) with heatmaps (B, J, h, w) logits, triplets
    (B, 3·P, h, w) regressed maps (P = number of skeletal parts, channel order part-major:
    [part0: -1, 0, +1, part1: ...]) and joints (B, J, 3): x, y in [0, 1] of the input image,
    z in [-1, 1] = root-relative depth / ``depth_range``.
    """

    def __init__(self, channels: int, depth_bins: int = 64, depth_mode: str = "factorized",
                 readout_window: int = 0) -> None:
        super().__init__()
        if readout_window < 0 or (readout_window and depth_mode != "factorized"):
            raise ValueError("readout_window must be >= 0 (and > 0 only with the factorized head)"
                             f", got {readout_window} with {depth_mode!r}")
        #: 0 = soft-argmax over the whole map; r > 0 = within r cells of the peak.
        self.readout_window = int(readout_window)
        if depth_mode not in ("factorized", "volumetric"):
            raise ValueError(f"depth_mode must be 'factorized' or 'volumetric', got {depth_mode!r}")
        if depth_bins < 2:
            raise ValueError(f"depth_bins must be >= 2, got {depth_bins}")
        j, p = skeleton.NUM_JOINTS, skeleton.NUM_BONES
        self.depth_mode = depth_mode
        self.depth_bins = depth_bins
        self.heatmap = nn.Conv2d(channels, j, 1)
        self.triplet = nn.Conv2d(channels, 3 * p, 1)
        fused = channels + j + 3 * p
        depth_out = j if depth_mode == "factorized" else j * depth_bins
        self.depth = nn.Conv2d(fused, depth_out, 1)
        # Output layers start near zero (HEMlets initialises with std 0.001): uniform softmax,
        # z = 0 and empty triplet maps, so the first losses measure the targets, not the noise of
        # a random init summed over h·w pixels (L_HEM was ~700 at 64×64 with the default init).
        for conv in (self.heatmap, self.triplet, self.depth):
            nn.init.normal_(conv.weight, std=1e-3)
            nn.init.zeros_(conv.bias)

    def forward(
        self, feats: Tensor, region: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """(heatmaps, triplets, joints, depth map).

        ``region``: optional (B, 1, h, w) 0/1 map from :func:`head_region`; see the module
        docstring. Inside it every output equals the ungated head's. The depth map is the
        per-pixel root-relative depth ``tanh(depth logits)`` (B, J, h, w) of the factorized
        mode (None for the volumetric one): the *location map* that ``depth_supervision:
        location`` trains."""
        heatmaps = self.heatmap(feats)
        triplets = self.triplet(feats)
        depth = self.depth(torch.cat([feats, heatmaps, triplets], dim=1))
        if region is not None:
            inside = region > 0
            heatmaps = torch.where(inside, heatmaps, torch.full_like(heatmaps, REGION_OFF_LOGIT))
            triplets = triplets * region
        if self.depth_mode == "factorized":
            depth_map = torch.tanh(depth)
            joints = _soft_argmax_with_depth_map(heatmaps, depth_map, self.readout_window)
            return heatmaps, triplets, joints, depth_map
        b, j, h, w = heatmaps.shape
        joints = volumetric_soft_argmax(depth.reshape(b, j, self.depth_bins, h, w))
        return heatmaps, triplets, joints, None
