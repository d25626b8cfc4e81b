"""Fold BatchNorm into conv weights once, in the layouts the gather-scatter kernels consume.

Why: at inference BN is an affine map per channel, so ``BN(conv(x)) = conv'(x) + b'``. Folding
removes one elementwise pass per conv (three per block) and lets the 1×1 convs become a single
``addmm`` on gathered rows. Weights are stored channels-last friendly:

* expand / project 1×1: ``(C_in, C_out)`` so ``rows @ W`` works on (N, C_in) gathered rows;
* depthwise 3×3: ``(9, C)`` with tap order (dy, dx) row-major, matching the neighbour table of
  :mod:`sparse_pose_ros.sparse.indices`.

Folding is done once per network (cached by :class:`~sparse_pose_ros.sparse.executor.
SparseBackbone`); call ``refresh()`` there after changing weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..model.blocks import ConvBN, InvertedResidual


@dataclass
class FoldedConv:
    """A conv with BN folded in. ``weight`` layout depends on the conv kind (see module doc)."""

    weight: Tensor
    bias: Tensor
    relu6: bool
    conv_weight: Tensor  # (C_out, C_in/groups, k, k) folded, for dense F.conv2d execution
    stride: int
    groups: int


@dataclass
class FoldedBlock:
    """One inverted-residual block ready for execution (all tensors contiguous, no grad)."""

    expand: FoldedConv | None
    depthwise: FoldedConv
    project: FoldedConv
    stride: int
    use_residual: bool
    residual_relu: bool
    in_channels: int
    hidden_channels: int
    out_channels: int
    mask_weight: Tensor | None  # (C_in,) mask-unit 1×1 conv weight
    mask_bias: Tensor | None  # () mask-unit bias


def fold_conv_bn(unit: ConvBN) -> FoldedConv:
    """Fold ``Conv2d -> BatchNorm2d [-> ReLU6]`` into (weight, bias)."""
    conv, bn = unit[0], unit[1]
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
        raise ValueError(
            f"expected Conv2d + BatchNorm2d, got {type(conv).__name__}, {type(bn).__name__}"
        )
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        w = conv.weight * scale.view(-1, 1, 1, 1)
        b = bn.bias - bn.running_mean * scale
        if conv.bias is not None:
            b = b + conv.bias * scale
    relu6 = len(unit) > 2
    c_out, c_in_g, kh, kw = w.shape
    if kh == 1 and kw == 1 and conv.groups == 1:
        flat = w.reshape(c_out, c_in_g).t().contiguous()  # (C_in, C_out)
    elif conv.groups == c_out and c_in_g == 1 and kh == 3 and kw == 3:
        flat = w.reshape(c_out, 9).t().contiguous()  # (9, C)
    else:
        flat = w.reshape(c_out, -1).contiguous()
    return FoldedConv(
        weight=flat.detach().clone(),
        bias=b.detach().contiguous().clone(),
        relu6=relu6,
        conv_weight=w.detach().contiguous().clone(),
        stride=conv.stride[0],
        groups=conv.groups,
    )


def fold_block(block: InvertedResidual) -> FoldedBlock:
    """Fold every ConvBN of ``block`` and copy the mask-unit weights."""
    mw = mb = None
    if block.mask_unit is not None:
        conv = block.mask_unit.conv
        mw = conv.weight.detach().reshape(-1).contiguous().clone()
        mb = (
            conv.bias.detach().reshape(()).clone()
            if conv.bias is not None
            else torch.zeros((), dtype=conv.weight.dtype)
        )
    return FoldedBlock(
        expand=fold_conv_bn(block.expand) if block.expand is not None else None,
        depthwise=fold_conv_bn(block.depthwise),
        project=fold_conv_bn(block.project),
        stride=block.stride,
        use_residual=block.use_residual,
        residual_relu=block.residual_activation == "relu",
        in_channels=block.in_channels,
        hidden_channels=block.hidden_channels,
        out_channels=block.out_channels,
        mask_weight=mw,
        mask_bias=mb,
    )
