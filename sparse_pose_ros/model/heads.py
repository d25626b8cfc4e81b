"""HEMlets head: 2D heatmaps, part-centric heatmap triplets and a depth branch with soft-argmax.

Reading of HEMlets (Zhou et al., ICCV 2019 / "HEMlets PoSh", arXiv 2003.04894) implemented here:
- per skeletal part (parent p -> child c) three heatmap channels T^{-1}, T^0, T^{+1}; the channel
  r(z_p, z_c) ∈ {-1, 0, +1} (child farther / same depth within ε / nearer, see
  ``model.targets``) holds a Gaussian at the child joint (and the 0 channel also at the parent),
  the other channels are zero;
- 2D joint heatmaps (J channels);
- the volumetric branch takes the features *fused with* the 2D heatmaps and triplets (HEMlets
  feeds them back into the 3D branch) and produces per-joint depth evidence;
- joints come from a soft-argmax (integral regression), so the whole head is differentiable.

Economy (the volumetric head is HEMlets' biggest cost, 17 × 64 bins at 64×64 from 1024 channels):
``depth_mode="volumetric"`` keeps the full J×D volume with soft-argmax over the whole volume;
``depth_mode="factorized"`` (default) predicts one depth value per joint per pixel and takes its
expectation under the joint's 2D softmax. That is the volume soft-argmax restricted to volumes
whose depth distribution is a point mass per pixel; it loses multi-modal depth per pixel but
costs J instead of J×D channels (64× fewer for D = 64).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import skeleton
from .blocks import ConvBN


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

    def __init__(self, channels: int, depth_bins: int = 64, depth_mode: str = "factorized") -> None:
        super().__init__()
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

    def forward(self, feats: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        heatmaps = self.heatmap(feats)
        triplets = self.triplet(feats)
        depth = self.depth(torch.cat([feats, heatmaps, triplets], dim=1))
        b, j, h, w = heatmaps.shape
        if self.depth_mode == "factorized":
            prob = softmax_2d(heatmaps)
            xy = expected_xy(prob)
            z = (prob * torch.tanh(depth)).sum(dim=(2, 3))
        else:
            d = self.depth_bins
            vol = F.softmax(depth.reshape(b, j, d * h * w), dim=-1).reshape(b, j, d, h, w)
            xy = expected_xy(vol.sum(dim=2))
            zs = (torch.arange(d, device=vol.device, dtype=vol.dtype) + 0.5) / d * 2.0 - 1.0
            z = (vol.sum(dim=(3, 4)) * zs).sum(dim=-1)
        return heatmaps, triplets, torch.cat([xy, z.unsqueeze(-1)], dim=-1)
