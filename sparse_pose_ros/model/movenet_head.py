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
import torch.nn.functional as F
from torch import Tensor, nn

from .fpn import SeparableConv
from .index_ops import first_max_index

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


def chosen_centre(center: Tensor) -> tuple[Tensor, Tensor]:
    """MoveNet's person choice: ``center`` (B, h, w) scores (after the sigmoid) -> the chosen
    centre cell (cy, cx), each (B,): the argmax of the score / (distance to the frame centre +
    1.8), so the person nearest the image centre wins (:func:`~.index_ops.first_max_index`,
    Gather in ONNX)."""
    b, h, w = center.shape
    idx = first_max_index((center * centre_weight(h, w, center)).flatten(1))  # (B,)
    cy = torch.div(idx, w, rounding_mode="floor")
    return cy, idx - cy * w


def _rough_keypoints(cy: Tensor, cx: Tensor, reg: Tensor) -> tuple[Tensor, Tensor]:
    """(B, 2K) regression read at the centre (y, x interleaved) -> rough (y, x), each (B, K)."""
    reg = reg.reshape(reg.shape[0], -1, 2)
    return (cy.to(reg.dtype).view(-1, 1) + reg[..., 0], cx.to(reg.dtype).view(-1, 1) + reg[..., 1])


def chosen_person(center: Tensor, regress: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``center`` (B, h, w) scores + ``regress`` (B, 2K, h, w) -> the chosen centre cell
    (cy, cx), each (B,), and the rough keypoints regressed from it (rough_y, rough_x), each
    (B, K), in grid cells. One rule (:func:`chosen_centre`) for :func:`decode` and
    :func:`person_region`."""
    cy, cx = chosen_centre(center)
    batch = torch.arange(center.shape[0], device=center.device)
    return (cy, cx, *_rough_keypoints(cy, cx, regress[batch, :, cy, cx]))


def branch_at(branch: nn.Module, feats: Tensor, cy: Tensor, cx: Tensor) -> Tensor:
    """``branch(feats)[b, :, cy[b], cx[b]]`` -> (B, C_out), computed on the 3×3 patch around
    the cell alone (zero-padded at the map's border, as the branch's depthwise pads).

    Why: the person box needs the regression at the chosen centre only; the whole-map branch
    (24 -> 96 -> 34 channels on 64 × 64 cells at Thunder's 256 px) was ~0.7 ms of the sparse
    path's neck + head in ONNX Runtime."""
    b, c = feats.shape[:2]
    if not isinstance(branch, MoveNetBranch):  # any other module: the whole map, then read
        return branch(feats)[torch.arange(b, device=feats.device), :, cy, cx]
    padded = F.pad(feats, (1, 1, 1, 1)).permute(0, 2, 3, 1)  # (B, h+2, w+2, C)
    taps = torch.arange(3, device=feats.device)
    rows = (cy.view(b, 1) + taps.view(1, 3)).view(b, 3, 1)  # padded row of centre - 1 + k
    cols = (cx.view(b, 1) + taps.view(1, 3)).view(b, 1, 3)
    batch = torch.arange(b, device=feats.device).view(b, 1, 1)
    patch = padded[batch, rows, cols].permute(0, 3, 1, 2)  # (B, C, 3, 3)
    sep = branch.sep
    z = sep.pointwise(F.conv2d(patch, sep.depthwise.weight, None, 1, 0, 1, c))
    z = F.relu(z) if sep.relu else z
    return branch.out(z).flatten(1)


def decode(out: MoveNetOutput) -> Tensor:
    """MoveNet's single-pose decoding -> (B, 17, 3) = (y, x, score), y and x in [0, 1].

    Person centre: argmax of sigmoid(center) / (distance to the frame centre + 1.8), so the
    person nearest the image centre wins. Rough keypoints: ``regress`` read at that centre.
    Per keypoint: argmax of sigmoid(heatmap) / (distance to its rough position + 1.8), plus
    ``offset`` read there; score = sigmoid(heatmap) at that cell. Coordinates are divided by the
    grid size (cells, not cell centres: that is what the graph does).
    """
    heat = torch.sigmoid(out.heatmap)
    b, k, h, w = heat.shape
    ys, xs = _grid(h, w, heat)
    _cy, _cx, rough_y, rough_x = chosen_person(torch.sigmoid(out.center)[:, 0], out.regress)
    batch = torch.arange(b, device=heat.device)
    dist = torch.sqrt((ys.view(1, 1, h, w) - rough_y.view(b, k, 1, 1)) ** 2
                      + (xs.view(1, 1, h, w) - rough_x.view(b, k, 1, 1)) ** 2)
    kidx = first_max_index((heat / (dist + DISTANCE_OFFSET)).flatten(2))  # (B, K)
    ky, kx = kidx // w, kidx % w
    kk = torch.arange(k, device=heat.device).view(1, k)
    bb = batch.view(b, 1)
    off_y = out.offset[bb, 2 * kk, ky, kx]
    off_x = out.offset[bb, 2 * kk + 1, ky, kx]
    score = heat[bb, kk, ky, kx]
    y = (ky.to(heat.dtype) + off_y) / h
    x = (kx.to(heat.dtype) + off_x) / w
    return torch.stack([y, x, score], dim=-1)


#: The person box's margin on each side, as a share of its longer side, and at least
#: :data:`PERSON_MARGIN_CELLS` grid cells (``person_region``). Chosen on the two-person Pose2Sim
#: trial (a training source; the node's tracking path, torch: person found 50 % without the
#: box; 97 % at 0.2, 94 % at 0.3 and 0.35, 71 % at 0.6, where the box takes in the other
#: person) and checked on the held-out frames (PCK@0.1 0.908 without, 0.908 / 0.911 / 0.911 /
#: 0.907; MPJPE 70 / 72 / 69 / 69 / 70 mm): 0.3 gives up a little of the first to lose nothing
#: on the second. ``docs/network.md`` §2f.
PERSON_MARGIN = 0.3
PERSON_MARGIN_CELLS = 2.0
#: Below this centre score (sigmoid) no person is chosen and the whole map is read, as without
#: the prior. Why: on a frame without people the box still concentrates the heatmaps' mass, and
#: the joints' confidence rose with it (120 people-free backgrounds: 3 read as a person with
#: the box everywhere, 1 with this gate, 0 without the prior), while the chosen person's centre
#: scores at least 0.52 (median 0.79) on the two-person trial's whole frames and 0.31 (median
#: 0.53) on vtest's small pedestrians; the gate left those sets' results as they were with the
#: box everywhere (person found 93.6 % / 87.4 %, held-out frames unchanged).
PERSON_MIN_SCORE = 0.2


def person_region(branches: nn.ModuleDict, feats: Tensor, margin: float = PERSON_MARGIN,
                  min_cells: float = PERSON_MARGIN_CELLS,
                  min_score: float = PERSON_MIN_SCORE,
                  center_logits: Tensor | None = None) -> Tensor:
    """(B, 1, h, w) 0/1 map: the box around the one person MoveNet's centre and regression
    heads pick, grown by ``margin`` × its longer side (at least ``min_cells``) on each side.

    Why: our HEMlets heatmaps know joints, not people. With two people in view each joint's map
    has a mode on each, the soft-argmax window lands on either, and the skeleton is a chimera
    of both whose confidence (the peak's share of the map) is split between them: on the
    two-person Pose2Sim trial the node found a person in half the frames. MoveNet solves the
    same problem with its centre heatmap (the person nearest the frame centre wins, so in a
    tracking crop the tracked one) and a regression of every keypoint from that centre; its
    heads come with the imported weights, so the box costs two small branches on the stride-4
    features and no training. Outside the box the heatmaps are switched off
    (``HemletsHead.forward``'s ``region``), so the readout and the confidence see one person.
    Where the chosen centre scores below ``min_score`` the map is all ones (nobody chosen).
    The same person choice and rough keypoints as :func:`decode`; built from reductions, Gather
    and comparisons, so it exports to ONNX. ``center_logits``: the centre branch's (B, 1, h, w)
    output when a runtime computed it already (the compiled FPN, ``sparse.fpn_plan``).
    """
    if center_logits is None:
        center_logits = branches["center"](feats)
    center = torch.sigmoid(center_logits)[:, 0]
    b, h, w = center.shape
    cy, cx = chosen_centre(center)
    rough_y, rough_x = _rough_keypoints(cy, cx, branch_at(branches["regress"], feats, cy, cx))
    faint = center[torch.arange(b, device=feats.device), cy, cx] < min_score  # nobody clear
    y0, y1 = rough_y.min(dim=1).values, rough_y.max(dim=1).values
    x0, x1 = rough_x.min(dim=1).values, rough_x.max(dim=1).values
    pad = torch.clamp(margin * torch.maximum(y1 - y0, x1 - x0), min=min_cells)
    ys, xs = _grid(h, w, feats)
    inside = ((ys >= (y0 - pad).view(b, 1, 1)) & (ys <= (y1 + pad).view(b, 1, 1))
              & (xs >= (x0 - pad).view(b, 1, 1)) & (xs <= (x1 + pad).view(b, 1, 1)))
    inside = inside | faint.view(b, 1, 1)
    return inside.to(feats.dtype).unsqueeze(1)
