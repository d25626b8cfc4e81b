"""The training/evaluation batch: network input plus every label the losses and metrics need.

Datasets (synthetic shards, Human3.6M) yield per-frame dicts in the ``data.shards.ShardDataset``
item format; :func:`collate` turns a list of such items — already warped to the network input size
by the dataset's transform — into a :class:`Batch` of tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from .. import skeleton
from ..model.targets import root_relative_depth


@dataclass
class Batch:
    """A batch at the network's input resolution S.

    Attributes:
        images: (B, 3, S, S) float32, normalised with the network's mean/std.
        joints2d: (B, J, 2) in [0, 1] of the input (pixel i's centre at (i + 0.5) / S).
        joints_z: (B, J) root-relative depth / depth_range_mm (not clamped).
        visibility: (B, J) label weight (1 = labelled and inside the image).
        joints_cam_mm: (B, J, 3) camera-frame joints in mm (for the 3D metrics).
        intrinsics: (B, 3, 3) intrinsics of the input image (pixel-index convention).
        silhouette: (B, S, S) uint8 person mask (for mask recall/precision).
        index: (B,) int64 frame index in its split (-1 when the dataset has none); keys the
            two-pass evaluation's first-pass boxes.
    """

    images: Tensor
    joints2d: Tensor
    joints_z: Tensor
    visibility: Tensor
    joints_cam_mm: Tensor
    intrinsics: Tensor
    silhouette: Tensor
    index: Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(
            **{
                f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
                for f in fields(self)
            }
        )

    def slice(self, n: int) -> Batch:
        """The first ``n`` frames."""
        return Batch(**{f.name: getattr(self, f.name)[:n] for f in fields(self)})

    def pin_memory(self) -> Batch:
        return Batch(**{f.name: getattr(self, f.name).pin_memory() for f in fields(self)})

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _stack(samples: list[dict[str, Any]], key: str) -> Tensor:
    try:
        return torch.stack([torch.as_tensor(s[key]) for s in samples])
    except KeyError as exc:
        raise ValueError(f"sample lacks {key!r}; keys: {sorted(samples[0])}") from exc


def collate(
    samples: list[dict[str, Any]],
    input_size: int,
    depth_range_mm: float,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> Batch:
    """Stack dataset items (``data.shards.ShardDataset`` format, at ``input_size``) into a Batch.

    Items hold ``image`` (3, S, S) RGB in [0, 1], ``mask`` (1, S, S), ``joints_2d`` (J, 2) px,
    ``joints_3d`` (J, 3) mm, ``in_frame`` (J,) and ``K`` (3, 3) of the S×S image.
    """
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    images = _stack(samples, "image").float()
    if images.shape[1:] != (3, input_size, input_size):
        raise ValueError(
            f"images must be (3, {input_size}, {input_size}) after the transform, got "
            f"{tuple(images.shape[1:])}"
        )
    j2d = _stack(samples, "joints_2d").float()
    j3d = _stack(samples, "joints_3d").float()
    if j2d.shape[1:] != (skeleton.NUM_JOINTS, 2) or j3d.shape[1:] != (skeleton.NUM_JOINTS, 3):
        raise ValueError(
            f"joints must be (J, 2) and (J, 3), got {tuple(j2d.shape[1:])}, {tuple(j3d.shape[1:])}"
        )
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return Batch(
        images=(images - m) / s,
        joints2d=(j2d + 0.5) / input_size,
        joints_z=root_relative_depth(j3d, depth_range_mm),
        # Synthetic frames label every joint in 3D, occluded or not; only joints outside the
        # image lose their label (no heatmap can hold them).
        visibility=_stack(samples, "in_frame").float(),
        joints_cam_mm=j3d,
        intrinsics=_stack(samples, "K").float(),
        silhouette=(_stack(samples, "mask").reshape(len(samples), input_size, input_size) > 0.5).to(
            torch.uint8
        ),
        index=torch.as_tensor([int(s.get("index", -1)) for s in samples], dtype=torch.int64),
    )


class Collator:
    """Picklable collate function for DataLoader workers."""

    def __init__(
        self,
        input_size: int,
        depth_range_mm: float,
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ) -> None:
        self.input_size = input_size
        self.depth_range_mm = depth_range_mm
        self.mean = tuple(mean)
        self.std = tuple(std)

    def __call__(self, samples: list[dict[str, Any]]) -> Batch:
        return collate(samples, self.input_size, self.depth_range_mm, self.mean, self.std)
