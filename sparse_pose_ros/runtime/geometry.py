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

import functools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .options import strip_width

#: (top, bottom, left, right) zero padding of a PyTorch padding=1 3×3 conv: the default of
#: every block of a stride-16 export (and of geometry JSON written before pads were recorded).
SYMMETRIC_PADS: tuple[int, int, int, int] = (1, 1, 1, 1)


def _conv_out(size: int, stride: int, pad_total: int = 2, kernel: int = 3) -> int:
    """Output side of a ``kernel``-wide convolution with ``pad_total`` zeros added along the
    axis (the default, a 3×3 with padding 1, gives (size - 1) // stride + 1)."""
    return (size + pad_total - kernel) // stride + 1


def _explicit_pads(conv: Any, h: int, w: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) that ``conv`` pads an (h, w) input with.

    Duck-typed on ``model.blocks.SameConv2d.explicit_pads`` (TF 'SAME': the pads depend on the
    input size) so this module never imports torch: ONNX-only runtimes import it too."""
    if hasattr(conv, "explicit_pads"):
        top, bottom, left, right = conv.explicit_pads(h, w)
        return int(top), int(bottom), int(left), int(right)
    ph, pw = conv.padding
    return int(ph), int(ph), int(pw), int(pw)


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
    #: (top, bottom, left, right) zero padding of the 3×3 depthwise at this input size: 1 all
    #: round for PyTorch's padding=1, (0, 1, 0, 1) for TF 'SAME' at stride 2 on an even input
    #: (MoveNet). Runtimes that gather the depthwise taps themselves read the window start here.
    pads: tuple[int, int, int, int] = SYMMETRIC_PADS

    @property
    def out_hw(self) -> tuple[int, int]:
        top, bottom, left, right = self.pads
        return (_conv_out(self.in_hw[0], self.stride, top + bottom),
                _conv_out(self.in_hw[1], self.stride, left + right))

    @property
    def pad_before(self) -> tuple[int, int]:
        """(top, left): where the depthwise window of output (0, 0) starts, before the input."""
        return self.pads[0], self.pads[2]

    def dense_macs(self) -> int:
        n_in = self.in_hw[0] * self.in_hw[1]
        n_out = self.out_hw[0] * self.out_hw[1]
        return self._macs(n_in, n_out)

    def executed_macs(self, hard: np.ndarray | None) -> int:
        """MACs run for a (H_out, W_out) 0/1 mask; ``None`` (ungated) means dense."""
        if hard is None:
            return self.dense_macs()
        n_active, n_dilated = self.mask_counts(hard)
        return self._macs(n_dilated, n_active)

    def mask_counts(self, hard: np.ndarray) -> tuple[int, int]:
        """(active outputs, dilated inputs) of a (H_out, W_out) 0/1 mask: the counts a sparse
        runtime executes (the compiled kernel keeps the same two per block)."""
        hard = _check_mask(hard, self.out_hw)
        return (int(np.count_nonzero(hard)), int(np.count_nonzero(
            receptive_mask_np(hard, self.stride, self.in_hw, self.pad_before))))

    def _macs(self, n_expand: int, n_out: int) -> int:
        ce = self.hidden_channels
        expand = n_expand * self.in_channels * ce if self.has_expand else 0
        return expand + n_out * (9 * ce + ce * self.out_channels)


@dataclass(frozen=True)
class NetworkGeometry:
    """Stem + every backbone block (gated or not) + the backbone's last 1×1 conv at one input
    size.

    ``last_macs``: MoveNet's 1×1 conv to 1280 after the last block (``Backbone.last``), dense,
    part of the backbone as in ``model.flops``; 0 for the stride-16 networks (and for geometry
    JSON written before it existed, which only such networks wrote).
    """

    input_size: int
    stem_macs: int
    blocks: tuple[BlockGeometry, ...]
    last_macs: int = 0
    #: MACs of the person locator that masks every gated block (``mask_source: locator``);
    #: 0 = the blocks' own mask units decide
    locator_macs: int = 0
    #: width of a non-square input (a strip of the ``input_size`` square); 0 = square
    input_width: int = 0

    @property
    def gated_indices(self) -> tuple[int, ...]:
        return tuple(i for i, b in enumerate(self.blocks) if b.gated)

    def dense_macs(self) -> int:
        return self.stem_macs + sum(b.dense_macs() for b in self.blocks) + self.last_macs

    def mask_unit_macs(self) -> int:
        """MACs of deciding the masks: the locator's, else every gated block's mask unit."""
        if self.locator_macs:
            return self.locator_macs
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
        return self.density_from_counts([self.blocks[i].mask_counts(m)
                                         for i, m in zip(gated, masks, strict=True)])

    def density_from_counts(self, counts: Sequence[tuple[int, int]]) -> tuple[float, list[float]]:
        """:meth:`density` from each gated block's (n_active, n_dilated) where the runtime
        counted them while building its index lists (the compiled sparse CPU kernel).

        Why: re-deriving 17 receptive masks in numpy took ~0.3 ms a frame on MoveNet Thunder;
        the kernel already holds the counts (tests check both give the same numbers)."""
        gated = self.gated_indices
        if len(counts) != len(gated):
            raise ValueError(f"expected {len(gated)} gated-block counts, got {len(counts)}")
        dense_total, fixed = self._mask_independent_macs
        executed = fixed
        block_density = []
        for i, (n_active, n_dilated) in zip(gated, counts, strict=True):
            blk = self.blocks[i]
            executed += blk._macs(int(n_dilated), int(n_active))
            block_density.append(int(n_active) / (blk.out_hw[0] * blk.out_hw[1]))
        return executed / dense_total, block_density

    @functools.cached_property
    def _mask_independent_macs(self) -> tuple[int, int]:
        """(dense total, executed MACs no mask changes: stem, last conv, the mask decision and
        every ungated block): the same every frame, so taken once per geometry."""
        ungated = sum(b.dense_macs() for b in self.blocks if not b.gated)
        return (self.dense_macs(),
                self.stem_macs + self.last_macs + self.mask_unit_macs() + ungated)

    def to_json(self) -> str:
        return json.dumps(
            {
                "input_size": self.input_size,
                "stem_macs": self.stem_macs,
                "last_macs": self.last_macs,
                "locator_macs": self.locator_macs,
                "input_width": self.input_width,
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
                    pads=_pads(b.get("pads", SYMMETRIC_PADS)),
                )
                for b in d["blocks"]
            )
            return cls(int(d["input_size"]), int(d["stem_macs"]), blocks,
                       int(d.get("last_macs", 0)), int(d.get("locator_macs", 0)),
                       int(d.get("input_width", 0)))
        except (KeyError, TypeError, IndexError, json.JSONDecodeError) as exc:
            raise ValueError(f"malformed block geometry: {exc}") from exc


def _pads(value: Any) -> tuple[int, int, int, int]:
    pads = tuple(int(v) for v in value)
    if len(pads) != 4 or min(pads) < 0:
        raise ValueError(f"malformed block geometry: pads {value!r} are not 4 sizes >= 0")
    return pads  # type: ignore[return-value]


def network_geometry(net: Any, input_size: int, input_width: int = 0) -> NetworkGeometry:
    """Geometry of a :class:`~sparse_pose_ros.model.network.PoseNetwork` at ``input_size``
    (``input_width`` wide when it is not 0: a strip of that square).

    Reads module attributes only (no forward pass, no torch import), so it is cheap enough to
    call whenever a backend is built.
    """
    stem_conv = net.backbone.stem[0]
    strip = strip_width(input_size, input_width)
    width = strip or int(input_size)
    top, bottom, left, right = _explicit_pads(stem_conv, input_size, width)
    kh, kw = (int(k) for k in stem_conv.kernel_size)
    s = int(stem_conv.stride[0])
    hw = (_conv_out(input_size, s, top + bottom, kh), _conv_out(width, s, left + right, kw))
    stem_macs = hw[0] * hw[1] * kh * kw * int(stem_conv.in_channels) * int(stem_conv.out_channels)
    blocks: list[BlockGeometry] = []
    for block in net.backbone.blocks:
        depthwise = block.depthwise[0]
        if tuple(int(k) for k in depthwise.kernel_size) != (3, 3):
            raise ValueError("block geometry describes 3×3 depthwise convs only, got kernel "
                             f"{tuple(depthwise.kernel_size)}")
        g = BlockGeometry(
            in_channels=int(block.in_channels),
            hidden_channels=int(block.hidden_channels),
            out_channels=int(block.out_channels),
            stride=int(block.stride),
            in_hw=hw,
            has_expand=block.expand is not None,
            gated=bool(block.gated),
            residual=bool(block.use_residual),
            pads=_explicit_pads(depthwise, *hw),
        )
        blocks.append(g)
        hw = g.out_hw
    last = getattr(net.backbone, "last", None)
    last_macs = 0
    if last is not None:
        conv = last[0]
        last_macs = hw[0] * hw[1] * int(conv.in_channels) * int(conv.out_channels) // int(
            conv.groups) * int(conv.kernel_size[0]) * int(conv.kernel_size[1])
    locator = getattr(net.backbone, "locator", None)
    locator_macs = int(locator.macs(input_size)) if locator is not None else 0
    if strip and locator is not None:
        raise ValueError("a person locator's cells are square: no strip input for it")
    return NetworkGeometry(input_size, stem_macs, tuple(blocks), last_macs, locator_macs,
                           strip)


def _check_mask(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != hw:
        raise ValueError(f"mask shape {mask.shape} does not match block output {hw}")
    return mask != 0


def receptive_mask_np(hard: np.ndarray, stride: int, in_hw: tuple[int, int],
                      pad_before: tuple[int, int] = (1, 1)) -> np.ndarray:
    """Input positions a padded 3×3 conv reads for the active outputs (numpy twin of
    :func:`sparse_pose_ros.model.masks.receptive_mask`): output (i, j) reads inputs
    (s·i-p .. s·i-p+2) per axis with p = ``pad_before`` (top, left) — 1 for PyTorch's
    padding=1, 0 for TF 'SAME' at stride 2 on an even side — cropped to the input."""
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride}")
    top, left = (int(v) for v in pad_before)
    if top not in (0, 1) or left not in (0, 1) or (stride == 1 and (top, left) != (1, 1)):
        raise ValueError(f"pad_before must be 0 or 1 (1 at stride 1), got {pad_before}")
    hard = np.asarray(hard) != 0
    h, w = in_hw
    # Place each output at its centre tap s·i - p + 1 in an input canvas padded by 1 on each
    # side (canvas index = input index + 1), then OR the 3×3 shifts.
    centre = np.zeros((h + 2, w + 2), dtype=bool)
    ho, wo = hard.shape
    ho, wo = min(ho, (h + stride - 1) // stride), min(wo, (w + stride - 1) // stride)
    cy, cx = 2 - top, 2 - left
    centre[cy : cy + stride * ho : stride, cx : cx + stride * wo : stride] = hard[:ho, :wo]
    # the 3x3 window is a product of two 1-D ones: OR the row shifts, then the column shifts
    # (4 array ops instead of 9; the node pays this for every gated block of every frame)
    rows = centre[:-2] | centre[1:-1] | centre[2:]
    return rows[:, :-2] | rows[:, 1:-1] | rows[:, 2:]


def confidence_radius(h: int, w: int) -> int:
    """Half-size (heatmap cells) of the window a joint's confidence sums its softmax over
    (``backends.base.joint_confidence``, ``sparse/csrc/window_head.cpp``): 2 on a 64 x 64 map;
    a strip's map gets its square's, from the longer side."""
    return max(1, round(max(h, w) / 32))
