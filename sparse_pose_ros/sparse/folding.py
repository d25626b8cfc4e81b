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
    fill: Tensor | None = None  # (C_out,) what a skipped output cell takes (``skip_fill``)


def folded_weights(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """(weight, bias) of ``conv`` followed by eval-mode ``bn``: BN(conv(x)) = conv'(x) + b'."""
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        w = conv.weight * scale.view(-1, 1, 1, 1)
        b = bn.bias - bn.running_mean * scale
        if conv.bias is not None:
            b = b + conv.bias * scale
    return w, b


def fold_batchnorm(seq: nn.Module) -> nn.Sequential:
    """Any stack of Conv2d / BatchNorm2d / ReLU (in forward order, e.g. the person locator's
    ``features``) as plain convs with BatchNorm folded in: the same function with half the ops.
    Runtimes fold once per weight change because at ~4 M MACs the locator's cost is its op
    count, not its arithmetic."""
    layers: list[nn.Module] = []
    mods = [m for m in seq.modules() if isinstance(m, nn.Conv2d | nn.BatchNorm2d | nn.ReLU)]
    i = 0
    while i < len(mods):
        m = mods[i]
        if isinstance(m, nn.Conv2d) and i + 1 < len(mods) and isinstance(mods[i + 1],
                                                                       nn.BatchNorm2d):
            conv = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                             m.dilation, m.groups, bias=True)
            w, b = folded_weights(m, mods[i + 1])
            conv.weight.data, conv.bias.data = w.detach().clone(), b.detach().clone()
            layers.append(conv)
            i += 2
            continue
        layers.append(m)
        i += 1
    return nn.Sequential(*layers).eval()


def fold_conv_bn(unit: ConvBN) -> FoldedConv:
    """Fold ``Conv2d -> BatchNorm2d [-> ReLU6]`` into (weight, bias)."""
    conv, bn = unit[0], unit[1]
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
        raise ValueError(
            f"expected Conv2d + BatchNorm2d, got {type(conv).__name__}, {type(bn).__name__}"
        )
    w, b = folded_weights(conv, bn)
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
        fill=(block.skip_fill.detach().float().contiguous().clone()
              if block.skip_fill is not None else None),
    )
