"""Spatial execution masks (dynconv-style mask unit) and the helpers that derive where to compute.

A mask unit is a 1×1 convolution that emits one logit per *output* position of its block
(strided like the block). Training uses the Gumbel-softmax straight-through trick so the forward
pass is binary (what inference will execute) while gradients flow through the soft sigmoid.
Inference thresholds the logit with no noise, so the same frame always gives the same mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class BlockMask:
    """Masks of one gated block, all shaped (B, 1, H, W).

    Attributes:
        hard: binary mask at the block's output resolution (where depthwise + project run).
        dilated: binary mask at the block's *input* resolution covering every position the
            depthwise 3×3 reads for an active output (where the expand 1×1 conv must run).
        soft: sigmoid probabilities (for the sparsity loss and for logging).
        logits: raw mask-unit logits.
    """

    hard: Tensor
    dilated: Tensor
    soft: Tensor
    logits: Tensor


def logit(p: float) -> float:
    """Probability -> logit, so users set ``mask_threshold`` as an intuitive probability."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"mask threshold must be a probability in (0, 1), got {p}")
    return math.log(p / (1.0 - p))


def receptive_mask(mask: Tensor, stride: int, in_hw: tuple[int, int],
                   pad_before: int | tuple[int, int] = 1) -> Tensor:
    """Input positions read by a padded 3×3 conv (stride 1 or 2) at the active output positions.

    For stride 1 this is the 3×3 dilation of ``mask``. For stride 2 output (i, j) reads inputs
    (2i-p .. 2i-p+2) per axis with p = ``pad_before`` (1 for PyTorch's symmetric padding, 0 for
    TF 'SAME' on an even side; a (top, left) pair when the two axes differ, as TF 'SAME' does on
    an even × odd input); a transposed convolution with a 3×3 box kernel scatters each active
    output onto exactly that footprint. The result is cropped/padded to the input size so odd
    sizes work.
    """
    if stride == 1:
        return F.max_pool2d(mask, kernel_size=3, stride=1, padding=1)
    top, left = (pad_before, pad_before) if isinstance(pad_before, int) else pad_before
    if top not in (0, 1) or left not in (0, 1):
        raise ValueError(f"pad_before must be 0 or 1 for a 3×3 conv, got {pad_before}")
    box = mask.new_ones(1, 1, 3, 3)
    spread = F.conv_transpose2d(mask, box, stride=stride, padding=(top, left),
                                output_padding=(stride - 1 if top else 0,
                                                stride - 1 if left else 0))
    h, w = in_hw
    spread = spread[:, :, :h, :w]
    if spread.shape[-2] < h or spread.shape[-1] < w:
        spread = F.pad(spread, (0, w - spread.shape[-1], 0, h - spread.shape[-2]))
    # Straight-through: forward is binary, gradient is the box-spread of the mask's gradient.
    binary = (spread > 0).to(mask.dtype)
    # (x - x.detach()) is exactly 0, so the forward value stays exactly binary.
    return binary + (spread - spread.detach()) if mask.requires_grad else binary


class MaskUnit(nn.Module):
    """1×1 conv -> one execution logit per output position.

    Attributes set by the training scheduler (not constructor arguments, because they change
    during training): ``tau`` (Gumbel temperature) and ``gumbel_noise`` (noise on/off). The
    inference threshold ``threshold_logit`` is set from a probability with
    :meth:`set_threshold`; 0.0 (p = 0.5) matches the training decision boundary.
    """

    def __init__(self, in_channels: int, stride: int = 1, init_bias: float = 2.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 1, kernel_size=1, stride=stride, bias=True)
        # Start "mostly on" so early training sees the whole body; the sparsity loss then
        # pushes density towards the budget (dynconv initialises the same way in spirit).
        nn.init.normal_(self.conv.weight, std=0.01)
        nn.init.constant_(self.conv.bias, init_bias)
        self.tau: float = 1.0
        self.gumbel_noise: bool = True
        self.threshold_logit: float = 0.0

    def set_threshold(self, probability: float) -> None:
        self.threshold_logit = logit(probability)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Return (hard, soft, logits), each (B, 1, H_out, W_out)."""
        s = self.conv.stride[0]
        if self.training and s > 1:
            # The same 1x1 conv on the subsampled input. Why not the strided conv: PyTorch
            # 2.13's CPU backward of a 1-output-channel 1x1 stride-2 conv on channels-last
            # features (how training runs) corrupts the heap and kills the process
            # (test_mask_unit_strided_backward_channels_last). Inference keeps the plain conv,
            # so exported graphs are unchanged.
            logits = F.conv2d(x[:, :, ::s, ::s], self.conv.weight, self.conv.bias)
        else:
            logits = self.conv(x)
        if self.training:
            if self.gumbel_noise:
                u1 = torch.rand_like(logits).clamp_(1e-6, 1 - 1e-6)
                u2 = torch.rand_like(logits).clamp_(1e-6, 1 - 1e-6)
                g = -torch.log(-torch.log(u1)) + torch.log(-torch.log(u2))  # g1 - g2
                soft = torch.sigmoid((logits + g) / self.tau)
            else:
                soft = torch.sigmoid(logits / self.tau)
            hard = (soft >= 0.5).to(soft.dtype)
            # Straight-through: hard forward, soft backward. Parenthesised so the forward value
            # is exactly 0/1 (hard + soft - soft rounds 1 to 1 - 2^-24 for some soft values).
            hard = hard + (soft - soft.detach())
        else:
            soft = torch.sigmoid(logits)
            hard = (logits >= self.threshold_logit).to(logits.dtype)
        return hard, soft, logits
