"""Backbone compute accounting from execution masks, in numpy only.

Every backend (torch, ONNX Runtime, TensorRT) reports the same ``density`` for the same masks,
so the accounting lives here and needs nothing but the hard masks and the block geometry. The
geometry travels inside exported ONNX files (metadata ``block_geometry``) so a runtime without
PyTorch can still compute it.

The definition is that of :mod:`sparse_pose_ros.model.flops` (``FlopsReport.backbone_fraction``,
the seed's per-block formulas): executed = stem + ungated blocks dense + gated blocks sparse +
mask units, divided by stem + all blocks dense. ``model.flops`` works on torch modules and
``PoseOutput``; this module is its numpy twin for runtimes that only have the output masks, and
the tests check the two agree.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


def _conv_out(size: int, stride: int) -> int:
    """Output side of a 3×3, padding-1 convolution (also a strided 1×1 with padding 0)."""
    return (size - 1) // stride + 1


@dataclass(frozen=True)
class BlockGeometry:
    """Shape facts of one inverted-residual block at a fixed input size."""

    in_channels: int
    hidden_channels: int
    out_channels: int
    stride: int
    in_hw: tuple[int, int]
    has_expand: bool
    gated: bool
    residual: bool

    @property
    def out_hw(self) -> tuple[int, int]:
        return (_conv_out(self.in_hw[0], self.stride), _conv_out(self.in_hw[1], self.stride))

    def dense_macs(self) -> int:
        n_in = self.in_hw[0] * self.in_hw[1]
        n_out = self.out_hw[0] * self.out_hw[1]
        return self._macs(n_in, n_out)

    def executed_macs(self, hard: np.ndarray | None) -> int:
        """MACs run for a (H_out, W_out) 0/1 mask; ``None`` (ungated) means dense."""
        if hard is None:
            return self.dense_macs()
        hard = _check_mask(hard, self.out_hw)
        n_active = int(hard.sum())
        n_dilated = int(receptive_mask_np(hard, self.stride, self.in_hw).sum())
        return self._macs(n_dilated, n_active)

    def _macs(self, n_expand: int, n_out: int) -> int:
        ce = self.hidden_channels
        expand = n_expand * self.in_channels * ce if self.has_expand else 0
        return expand + n_out * (9 * ce + ce * self.out_channels)


@dataclass(frozen=True)
class NetworkGeometry:
    """Stem + every backbone block (gated or not) at one input size."""

    input_size: int
    stem_macs: int
    blocks: tuple[BlockGeometry, ...]

    @property
    def gated_indices(self) -> tuple[int, ...]:
        return tuple(i for i, b in enumerate(self.blocks) if b.gated)

    def dense_macs(self) -> int:
        return self.stem_macs + sum(b.dense_macs() for b in self.blocks)

    def mask_unit_macs(self) -> int:
        return sum(b.in_channels * b.out_hw[0] * b.out_hw[1] for b in self.blocks if b.gated)

    def density(self, masks: list[np.ndarray]) -> tuple[float, list[float]]:
        """(executed fraction of backbone MACs, active fraction per gated block).

        A gated model with every position active reports slightly above 1.0: its mask units
        are extra work the dense model does not have.

        ``masks`` holds one (H_out, W_out) 0/1 array per gated block, in block order.
        """
        gated = self.gated_indices
        if len(masks) != len(gated):
            raise ValueError(f"expected {len(gated)} gated-block masks, got {len(masks)}")
        by_block: dict[int, np.ndarray] = dict(zip(gated, masks, strict=True))
        executed = self.stem_macs + self.mask_unit_macs()
        for i, b in enumerate(self.blocks):
            executed += b.executed_macs(by_block.get(i))
        block_density = [float(np.asarray(m).mean()) for m in masks]
        return executed / self.dense_macs(), block_density

    def to_json(self) -> str:
        return json.dumps(
            {
                "input_size": self.input_size,
                "stem_macs": self.stem_macs,
                "blocks": [asdict(b) for b in self.blocks],
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> NetworkGeometry:
        """Inverse of :meth:`to_json`; ValueError on anything malformed."""
        try:
            d: dict[str, Any] = json.loads(text)
            blocks = tuple(
                BlockGeometry(
                    in_channels=int(b["in_channels"]),
                    hidden_channels=int(b["hidden_channels"]),
                    out_channels=int(b["out_channels"]),
                    stride=int(b["stride"]),
                    in_hw=(int(b["in_hw"][0]), int(b["in_hw"][1])),
                    has_expand=bool(b["has_expand"]),
                    gated=bool(b["gated"]),
                    residual=bool(b["residual"]),
                )
                for b in d["blocks"]
            )
            return cls(int(d["input_size"]), int(d["stem_macs"]), blocks)
        except (KeyError, TypeError, IndexError, json.JSONDecodeError) as exc:
            raise ValueError(f"malformed block geometry: {exc}") from exc


def network_geometry(net: Any, input_size: int) -> NetworkGeometry:
    """Geometry of a :class:`~sparse_pose_ros.model.network.PoseNetwork` at ``input_size``.

    Reads module attributes only (no forward pass, no torch import), so it is cheap enough to
    call whenever a backend is built.
    """
    stem_conv = net.backbone.stem[0]
    side = _conv_out(input_size, int(stem_conv.stride[0]))
    k = int(stem_conv.kernel_size[0]) * int(stem_conv.kernel_size[1])
    stem_macs = side * side * k * int(stem_conv.in_channels) * int(stem_conv.out_channels)
    hw = (side, side)
    blocks: list[BlockGeometry] = []
    for block in net.backbone.blocks:
        g = BlockGeometry(
            in_channels=int(block.in_channels),
            hidden_channels=int(block.hidden_channels),
            out_channels=int(block.out_channels),
            stride=int(block.stride),
            in_hw=hw,
            has_expand=block.expand is not None,
            gated=bool(block.gated),
            residual=bool(block.use_residual),
        )
        blocks.append(g)
        hw = g.out_hw
    return NetworkGeometry(input_size, stem_macs, tuple(blocks))


def _check_mask(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != hw:
        raise ValueError(f"mask shape {mask.shape} does not match block output {hw}")
    return mask != 0


def receptive_mask_np(hard: np.ndarray, stride: int, in_hw: tuple[int, int]) -> np.ndarray:
    """Input positions a padded 3×3 conv reads for the active outputs (numpy twin of
    :func:`sparse_pose_ros.model.masks.receptive_mask`): output (i, j) reads inputs
    (s·i-1 .. s·i+1, s·j-1 .. s·j+1), cropped to the input."""
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride}")
    hard = np.asarray(hard) != 0
    h, w = in_hw
    # Place each output at its centre tap s·i in a padded input canvas, then OR the 3×3 shifts.
    centre = np.zeros((h + 2, w + 2), dtype=bool)
    ho, wo = hard.shape
    centre[1 : 1 + stride * ho : stride, 1 : 1 + stride * wo : stride] = hard[
        : (h + stride - 1) // stride, : (w + stride - 1) // stride
    ]
    out = np.zeros((h, w), dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            out |= centre[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
    return out
