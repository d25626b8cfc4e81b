"""Person locator: one cheap look at the whole image that says where every gated block computes.

Why a locator instead of each block's own 1×1 mask unit: a mask unit sees only its block's input
at one position. In the first blocks (strides 2–8, ~40 % of the backbone's MACs) that input is
edges and colours, so at 97 % recall of person cells the units fitted on MoveNet's frozen
features kept 90 % of the background on (the previous sparse checkpoint executed 0.88 of the
backbone on held-out whole frames where people fill 2 % of the input). A person is a shape
tens of pixels tall: deciding needs that much context, which the backbone only has where it is
too late to save anything. The locator sees the image at half resolution through a conv and
four small separable convs (receptive field ≈ 220 px of the input, 4.3 M MACs = 0.4 % of
Thunder's backbone) and emits one logit per stride-16 cell; every gated block executes the cells it
marks, dilated by a margin and resampled to the block's grid. One decision shared by all
blocks also keeps them consistent: a cell a block computes was computed by the blocks before it.

What it does not do (measured, ``models/MODEL_CARD.md``): generalise to unseen scenes. Trained
from scratch on ~7 k samples it turns on 21 % of the cells of held-out samples of the training
sources but 0.67 of the backbone on the held-out lab and park videos, and misses people there.
In video the previous frame's skeleton decides instead (``Backbone.forward(region=...)``).

Training (``training.locator_fit``): teacher person segmentation (BlazePose) and synthetic
silhouettes → per-cell targets, weighted BCE, then the logit offset calibrated so a chosen share
of the person cells of held-out samples is on. The calibrated offset is a buffer, so the
inference threshold stays a probability around 0.5 as for mask units (``set_threshold``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .masks import logit

#: stride of the locator's output cells relative to the network input
LOCATOR_STRIDE = 16


def _separable(cin: int, cout: int, stride: int, dilation: int = 1) -> nn.Sequential:
    pad = dilation
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, padding=pad, dilation=dilation, groups=cin, bias=False),
        nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
        nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )  # fmt: skip


class PersonLocator(nn.Module):
    """Normalised image (B, 3, S, S) → person logits (B, 1, S/16, S/16).

    Layers as a table (input downsampled ×2 by average pooling first): conv 3×3 s2 3→16,
    separable s2 16→32, separable s2 32→``width``, two separable s1 at dilation 2 and 4
    (context without more resolution), 1×1 → 1 logit.
    """

    def __init__(self, width: int = 48) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, padding=1, bias=False), nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            _separable(16, 32, 2),
            _separable(32, width, 2),
            _separable(width, width, 1, dilation=2),
            _separable(width, width, 1, dilation=4),
        )  # fmt: skip
        self.classify = nn.Conv2d(width, 1, 1)
        #: logit offset from calibration (``training.locator_fit.calibrate``): added to the
        #: raw logit so that logit ≥ 0 keeps the calibrated recall of person cells
        self.register_buffer("offset", torch.zeros(()))
        self.threshold_logit: float = 0.0

    def set_threshold(self, probability: float) -> None:
        """Inference threshold as a probability (0.5 = the calibrated operating point)."""
        self.threshold_logit = logit(probability)

    def macs(self, input_size: int) -> int:
        """MACs of one look at an ``input_size``² image (convs only; the pooling is free)."""
        side = input_size // 2
        total = 0
        for conv in [m for m in self.modules() if isinstance(m, nn.Conv2d)]:
            side = (side + 2 * conv.padding[0] - conv.dilation[0] * (conv.kernel_size[0] - 1)
                    - 1) // conv.stride[0] + 1  # fmt: skip
            per = conv.kernel_size[0] * conv.kernel_size[1] * conv.in_channels // conv.groups
            total += side * side * per * conv.out_channels
        return total

    def forward(self, x: Tensor, features: nn.Module | None = None) -> Tensor:
        """Calibrated logits at stride 16 (raw logit + offset). ``features``: the same stack
        with BatchNorm folded (``sparse.folding.fold_batchnorm``), as runtimes pass it."""
        h, w = x.shape[-2:]
        if h % LOCATOR_STRIDE or w % LOCATOR_STRIDE:
            raise ValueError(f"input {h}x{w} is not a multiple of {LOCATOR_STRIDE}")
        y = (features or self.features)(F.avg_pool2d(x, 2))
        return self.classify(y) + self.offset

    def cells(self, x: Tensor, margin: int, features: nn.Module | None = None) -> Tensor:
        """Binary (B, 1, S/16, S/16) cells to execute: logit ≥ threshold, dilated by
        ``margin`` cells (the person moves a little beyond what the locator saw, and each
        block's 3×3 reads one ring around what it computes)."""
        hard = (self.forward(x, features) >= self.threshold_logit).to(x.dtype)
        if margin > 0:
            hard = F.max_pool2d(hard, 2 * margin + 1, stride=1, padding=margin)
        return hard


def cells_from_box(box_xyxy: np.ndarray | None, size: int, margin: int = 1,
                   expand: float = 1.2) -> np.ndarray:
    """(S/16, S/16) float32 0/1: the stride-16 cells a person box covers, the box first grown
    ``expand``× about its centre (the joints are inside the body's outline: head top, hands,
    feet reach past them; and the person moves between frames), then dilated by ``margin``
    cells. ``box_xyxy``: (x0, y0, x1, y1) in input pixels; None → no cell."""
    n = size // LOCATOR_STRIDE
    cells = np.zeros((n, n), np.float32)
    if box_xyxy is None:
        return cells
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    if not all(np.isfinite([x0, y0, x1, y1])):
        return cells
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2 * expand, (y1 - y0) / 2 * expand
    c0 = int(np.floor((cx - hw) / LOCATOR_STRIDE)) - margin
    c1 = int(np.floor((cx + hw) / LOCATOR_STRIDE)) + margin
    r0 = int(np.floor((cy - hh) / LOCATOR_STRIDE)) - margin
    r1 = int(np.floor((cy + hh) / LOCATOR_STRIDE)) + margin
    r0, r1, c0, c1 = max(r0, 0), min(r1, n - 1), max(c0, 0), min(c1, n - 1)
    if r0 <= r1 and c0 <= c1:
        cells[r0:r1 + 1, c0:c1 + 1] = 1.0
    return cells


def cells_to_grid(cells: Tensor, grid: tuple[int, int], ring: bool = True) -> Tensor:
    """Stride-16 cells resampled onto a block's output grid: each finer cell takes its parent
    cell's decision (nearest); a coarser cell is on if any child is (max), plus one ring
    (``ring``).

    Why the ring on coarser grids: a block's 3×3 reads one cell past what it computes, and a
    cell the previous block skipped holds zeros (or stale input); on the stride-32 grid one cell
    is 32 px, a whole limb of a small person. Measured on 60 training samples of Thunder with the
    run-time region (error of the neck output on person pixels, relative to the dense network):
    0.25 without the ring, 0.11 with it, for 0.44 → 0.51 of the backbone's MACs; a ring on every
    grid gave 0.12 at 0.57. Why a model with ``skip_fill`` reads a caller's region without it
    (``Backbone.region_ring``): its skipped cells hold each block's mean output, not zeros, and
    on the 515 held-out real whole frames (previous pose's region, expand 1.3, margin 1) the
    ring took 0.47 instead of 0.40 of the MACs for the same result (PCK@0.1 0.694 / 0.695,
    person found 97.9 / 97.7 %, MPJPE 158 / 159 mm; ``docs/network.md`` §2b)."""
    h, w = cells.shape[-2:]
    gh, gw = grid
    if (gh, gw) == (h, w):
        return cells
    if gh >= h and gw >= w:
        return F.interpolate(cells, size=(gh, gw), mode="nearest")
    pooled = F.adaptive_max_pool2d(cells, (gh, gw))
    return F.max_pool2d(pooled, 3, stride=1, padding=1) if ring else pooled
