"""MoveNet SinglePose's four CenterNet heads and its own decoding, on the stride-4 features.

Kept beside our HEMlets head as the 2D teacher (distillation targets while training) and as a
reference in evaluation: with imported weights, ``decode`` reproduces what Google's graph
outputs (``test/pretrained`` checks it against a numpy execution of the TF.js graph).

Each head is a separable conv (depthwise 3×3 without bias, pointwise 1×1 to ``hidden`` with
bias, ReLU) then a 1×1 conv with bias: ``heatmap`` 17 (sigmoid), ``center`` 1 (sigmoid),
``regress`` 34 and ``offset`` 34 (grid cells, channels interleaved y, x per keypoint).
Keypoints are COCO-17: nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles, left
before right.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .fpn import SeparableConv

COCO_KEYPOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
NUM_KEYPOINTS = len(COCO_KEYPOINTS)
#: Added to distances (in grid cells) before dividing scores by them, as MoveNet's graph does.
DISTANCE_OFFSET = 1.8
#: head name -> output channels (and whether a sigmoid follows in the graph).
HEADS: dict[str, tuple[int, bool]] = {
    "heatmap": (NUM_KEYPOINTS, True),
    "center": (1, True),
    "regress": (2 * NUM_KEYPOINTS, False),
    "offset": (2 * NUM_KEYPOINTS, False),
}


@dataclass
class MoveNetOutput:
    """Raw head outputs, each (B, C, h, w): ``heatmap`` and ``center`` are logits (apply
    ``sigmoid`` for MoveNet's scores), ``regress`` and ``offset`` are in grid cells."""

    heatmap: Tensor
    center: Tensor
    regress: Tensor
    offset: Tensor


class MoveNetBranch(nn.Module):
    """One head: separable conv 3×3 + ReLU, then a 1×1 conv."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int) -> None:
        super().__init__()
        self.sep = SeparableConv(in_channels, hidden)
        self.out = nn.Conv2d(hidden, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.sep(x))


class MoveNetHeads(nn.Module):
    """The four heads of MoveNet on the FPN's stride-4 features."""

    def __init__(self, in_channels: int = 24, hidden: int = 96) -> None:
        super().__init__()
        self.branches = nn.ModuleDict(
            {name: MoveNetBranch(in_channels, hidden, c) for name, (c, _) in HEADS.items()}
        )

    def forward(self, feats: Tensor) -> MoveNetOutput:
        return MoveNetOutput(**{name: b(feats) for name, b in self.branches.items()})


def _grid(h: int, w: int, like: Tensor) -> tuple[Tensor, Tensor]:
    ys = torch.arange(h, device=like.device, dtype=like.dtype).view(h, 1).expand(h, w)
    xs = torch.arange(w, device=like.device, dtype=like.dtype).view(1, w).expand(h, w)
    return ys, xs


def centre_weight(h: int, w: int, like: Tensor) -> Tensor:
    """(h, w) map 1 / (distance to the frame centre + 1.8), the person-centre prior.

    The frame centre is cell (h/2, w/2), not the geometric (size - 1)/2: that is what the
    graph's constant weighting map holds; the importer checks the graph's map against this one
    (``pretrained.movenet.check_decoding_constants``)."""
    ys, xs = _grid(h, w, like)
    return 1.0 / (torch.sqrt((ys - h / 2.0) ** 2 + (xs - w / 2.0) ** 2) + DISTANCE_OFFSET)


def decode(out: MoveNetOutput) -> Tensor:
    """MoveNet's single-pose decoding -> (B, 17, 3) = (y, x, score), y and x in [0, 1].

    Person centre: argmax of sigmoid(center) / (distance to the frame centre + 1.8), so the
    person nearest the image centre wins. Rough keypoints: ``regress`` read at that centre.
    Per keypoint: argmax of sigmoid(heatmap) / (distance to its rough position + 1.8), plus
    ``offset`` read there; score = sigmoid(heatmap) at that cell. Coordinates are divided by the
    grid size (cells, not cell centres: that is what the graph does).
    """
    heat = torch.sigmoid(out.heatmap)
    center = torch.sigmoid(out.center)[:, 0]
    b, k, h, w = heat.shape
    ys, xs = _grid(h, w, heat)
    idx = (center * centre_weight(h, w, heat)).flatten(1).argmax(dim=1)  # (B,)
    cy, cx = idx // w, idx % w
    batch = torch.arange(b, device=heat.device)
    reg = out.regress[batch, :, cy, cx].view(b, k, 2)  # (B, K, 2) y, x in cells
    rough_y = cy.to(heat.dtype).view(b, 1) + reg[..., 0]
    rough_x = cx.to(heat.dtype).view(b, 1) + reg[..., 1]
    dist = torch.sqrt((ys.view(1, 1, h, w) - rough_y.view(b, k, 1, 1)) ** 2
                      + (xs.view(1, 1, h, w) - rough_x.view(b, k, 1, 1)) ** 2)
    kidx = (heat / (dist + DISTANCE_OFFSET)).flatten(2).argmax(dim=2)  # (B, K)
    ky, kx = kidx // w, kidx % w
    kk = torch.arange(k, device=heat.device).view(1, k)
    bb = batch.view(b, 1)
    off_y = out.offset[bb, 2 * kk, ky, kx]
    off_x = out.offset[bb, 2 * kk + 1, ky, kx]
    score = heat[bb, kk, ky, kx]
    y = (ky.to(heat.dtype) + off_y) / h
    x = (kx.to(heat.dtype) + off_x) / w
    return torch.stack([y, x, score], dim=-1)
