"""A pose prior for depth: an MLP that reads root-relative depth off the 2D skeleton.

Why: the depth branch of the HEMlets head has to infer each joint's depth from pixels, and on
our budget it barely learns it — with the *true* 2D joints and the head's depth, held-out
synthetic MPJPE is ~150 mm, against ~170 mm for no depth at all. The shape of a 2D skeleton
already says most of the depth (a foreshortened forearm points at or away from the camera; a
knee only bends one way), and that relation can be learned from 3D poses alone, without
rendering: from the true 2D joints a lifter trained in a minute on the training split's labels
gives ~60 mm (Martinez et al., ICCV 2017, "A simple yet effective baseline for 3d human pose
estimation", is the classic of the kind). ``training.train_lifter`` trains it on the 3D labels
with 2D noise and merged left/right pairs (what the image network's mistakes look like) and
attaches it to a trained network; ``PoseNetwork`` then replaces the head's z with the lifter's.

Input: the network's x, y in [0, 1] of its square input. They are made root-relative and
divided by their RMS distance to the root, so the lifter sees the skeleton's shape only — the
same whatever the person's size, position or the crop (intrinsics are not needed: with square
pixels, ray directions and pixel offsets differ by the focal length, a scale this removes).
Output: root-relative depth in units of ``depth_range_mm`` (the network's z convention), 0 at
the root.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import skeleton

#: Smallest RMS radius of a skeleton (in input units) the normalisation divides by: a collapsed
#: skeleton (an untrained network puts every joint in one place) must not blow up the input.
MIN_RADIUS = 1e-3


def normalise_2d(xy: Tensor) -> Tensor:
    """(B, J, 2) joints -> (B, 2J): root-relative, divided by the RMS distance to the root."""
    rel = xy - xy[:, skeleton.ROOT : skeleton.ROOT + 1]
    radius = rel.pow(2).sum(dim=-1).mean(dim=-1).sqrt().clamp_min(MIN_RADIUS)
    return (rel / radius[:, None, None]).flatten(1)


class PoseLifter(nn.Module):
    """2D skeleton -> root-relative depth (see the module docstring).

    Args:
        hidden: width of the two hidden layers.
        dropout: dropout after each hidden layer (training only).
    """

    def __init__(self, hidden: int = 512, dropout: float = 0.1) -> None:
        super().__init__()
        if hidden <= 0:
            raise ValueError(f"hidden must be > 0, got {hidden}")
        j = skeleton.NUM_JOINTS
        self.hidden = hidden  # NetworkConfig.lifter_hidden of a network that carries it
        self.mlp = nn.Sequential(
            nn.Linear(2 * j, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, j),
        )  # fmt: skip

    def forward(self, xy: Tensor) -> Tensor:
        """(B, J, 2) x, y in [0, 1] of the input -> (B, J) depth / depth range, 0 at the root."""
        if xy.dim() != 3 or xy.shape[1:] != (skeleton.NUM_JOINTS, 2):
            raise ValueError(f"xy must be (B, {skeleton.NUM_JOINTS}, 2), got {tuple(xy.shape)}")
        z = self.mlp(normalise_2d(xy.float()))
        return z - z[:, skeleton.ROOT : skeleton.ROOT + 1]

    def refine(self, joints: Tensor) -> Tensor:
        """(B, J, 3) network joints -> the same x, y with the lifter's z."""
        z = self.forward(joints[..., :2]).to(joints.dtype)
        return torch.cat([joints[..., :2], z.unsqueeze(-1)], dim=-1)
