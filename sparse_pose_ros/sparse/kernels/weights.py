"""Weights of a gated inverted-residual block in the CUDA kernels' / TensorRT plugin's layout.

BatchNorm folding itself lives in :mod:`sparse_pose_ros.sparse.folding` (one implementation for
every executor); this module only re-lays the folded dense conv weights out as the plugin's
inputs: out-channel-major matrices (the GEMM reads ``W[j, k]`` rows) and depthwise taps
``(C_e, 9)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...model.blocks import InvertedResidual, SameConv2d, conv_pads
from ..folding import FoldedConv, fold_block

#: Stand-in for W_expand / b_expand when the block has no expand conv: the plugin's inputs are
#: positional, so the slot must hold a tensor; one element keeps it cheap and obviously unused.
NO_EXPAND_PLACEHOLDER = np.zeros((1,), dtype=np.float32)


@dataclass(frozen=True)
class SparseBlockWeights:
    """Folded weights + fields of one gated block, exactly the plugin's inputs 2..7 and fields.

    Attributes:
        stride: depthwise stride (1 or 2).
        has_expand: whether the block has a 1×1 expand conv (expand ratio != 1).
        residual: whether the block adds its input (stride 1 and C_in == C_out).
        w_expand: (C_e, C) float32, or :data:`NO_EXPAND_PLACEHOLDER`.
        b_expand: (C_e,) float32, or :data:`NO_EXPAND_PLACEHOLDER`.
        w_dw: (C_e, 9) float32, taps row-major (ky * 3 + kx).
        b_dw: (C_e,) float32.
        w_proj: (C_o, C_e) float32.
        b_proj: (C_o,) float32.
        pad_before: zero rows/cols the depthwise pads before the input (both axes): 1 for
            PyTorch's padding=1, 0 for MoveNet's TF 'SAME' stride-2 conv on an even size.
    """

    stride: int
    has_expand: bool
    residual: bool
    w_expand: np.ndarray
    b_expand: np.ndarray
    w_dw: np.ndarray
    b_dw: np.ndarray
    w_proj: np.ndarray
    b_proj: np.ndarray
    pad_before: int = 1

    @property
    def hidden_channels(self) -> int:
        return int(self.w_dw.shape[0])

    @property
    def out_channels(self) -> int:
        return int(self.w_proj.shape[0])

    @property
    def in_channels(self) -> int:
        return int(self.w_expand.shape[1]) if self.has_expand else self.hidden_channels


def _matrix(conv: FoldedConv) -> tuple[np.ndarray, np.ndarray]:
    """(out, in*k*k) float32 weight and (out,) bias of a folded conv, C-contiguous."""
    w = conv.conv_weight.detach().float().cpu().numpy()
    b = conv.bias.detach().float().cpu().numpy()
    return np.ascontiguousarray(w.reshape(w.shape[0], -1)), np.ascontiguousarray(b)


def block_weights(block: InvertedResidual,
                  in_hw: tuple[int, int] | None = None) -> SparseBlockWeights:
    """BN-folded weights of ``block`` (eval-mode statistics) as the plugin's inputs 2..7.

    ``in_hw``: the block's input size, which fixes a TF 'SAME' depthwise's pad before (needed
    for such a block; a symmetric one pads 1 at any size).

    Raises:
        ValueError: when the block uses ``residual_activation="relu"`` (the kernels implement the
            identity residual of the default block) or a norm layer other than BatchNorm2d.
    """
    if block.residual_activation is not None:
        raise ValueError(
            "the sparse kernels implement the identity residual; "
            f"residual_activation={block.residual_activation!r} is not supported"
        )
    conv = block.depthwise[0]
    if isinstance(conv, SameConv2d):
        if in_hw is None:
            raise ValueError("a TF 'SAME' depthwise pads by input size: pass in_hw")
        top, _, left, _ = conv_pads(conv, *in_hw)
        if top != left:
            raise ValueError(f"the kernels take one pad before for both axes, got top {top} "
                             f"and left {left} at {in_hw} (use an input with equal parities)")
        pad_before = top
    else:
        pad_before = conv_pads(conv, 1, 1)[0]  # type: ignore[arg-type]
    folded = fold_block(block)
    if folded.expand is not None:
        w_expand, b_expand = _matrix(folded.expand)
    else:
        w_expand, b_expand = NO_EXPAND_PLACEHOLDER, NO_EXPAND_PLACEHOLDER
    w_dw, b_dw = _matrix(folded.depthwise)
    w_proj, b_proj = _matrix(folded.project)
    if w_dw.shape[1] != 9:
        raise ValueError(f"depthwise weight must have 9 taps per channel, got {w_dw.shape}")
    return SparseBlockWeights(
        stride=folded.stride,
        has_expand=folded.expand is not None,
        residual=folded.use_residual,
        w_expand=w_expand,
        b_expand=b_expand,
        w_dw=w_dw,
        b_dw=b_dw,
        w_proj=w_proj,
        b_proj=b_proj,
        pad_before=pad_before,
    )
