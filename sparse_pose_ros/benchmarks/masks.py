"""Spatially coherent benchmark masks ("a person in the frame"), not salt noise.

Salt noise would make the dilated set almost full at any density and so misrepresent what a
real mask costs; a person is one compact upright region, so the benchmark uses an upright
ellipse-shaped blob grown to an exact density.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..model.network import Backbone


def blob_mask(batch: int, h: int, w: int, density: float, aspect: float = 2.0) -> Tensor:
    """(B, 1, H, W) binary mask with round(density·H·W) active positions forming one upright
    blob centred in the frame (height/width ≈ ``aspect``), growing to fill the frame at 1.0."""
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density must be in [0, 1], got {density}")
    if h <= 0 or w <= 0 or batch <= 0:
        raise ValueError(f"invalid mask shape {(batch, h, w)}")
    ys = (torch.arange(h, dtype=torch.float32) + 0.5 - h / 2) / (h / 2)
    xs = (torch.arange(w, dtype=torch.float32) + 0.5 - w / 2) / (w / 2) * aspect
    dist = ys.view(-1, 1) ** 2 + xs.view(1, -1) ** 2
    k = int(round(density * h * w))
    flat = torch.zeros(h * w)
    if k:
        order = torch.argsort(dist.reshape(-1), stable=True)
        flat[order[:k]] = 1.0
    return flat.view(1, 1, h, w).expand(batch, 1, h, w).contiguous()


def set_blob_masks(
    backbone: Backbone, batch: int, input_hw: tuple[int, int], density: float
) -> None:
    """Give every gated block of ``backbone`` a fixed blob mask of the given density."""
    h, w = (input_hw[0] - 1) // 2 + 1, (input_hw[1] - 1) // 2 + 1
    for blk in backbone.blocks:
        h, w = (h - 1) // blk.stride + 1, (w - 1) // blk.stride + 1
        if blk.gated:
            blk.fixed_mask = blob_mask(batch, h, w, density)


def clear_fixed_masks(backbone: Backbone) -> None:
    """Back to the learned masks."""
    for blk in backbone.blocks:
        blk.fixed_mask = None
