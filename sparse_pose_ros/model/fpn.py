"""MoveNet's feature pyramid: stride-32 features back to stride 4 (the neck of the imported
network, ``NetworkConfig.neck == "fpn"``).

Layout, read off the TF.js graph of MoveNet SinglePose v4 (``center_net_mobile_net_v2fpn``):

    y = conv1x1(features_s32) -> widths[0]                       (bias, no activation)
    for each tap (stride 16, 8, 4), finer each time:
        y = bilinear_x2(y) + lateral_1x1(tap)                     (half-pixel centres, bias)
        y = relu(pointwise_1x1(depthwise_3x3(y)))                 (separable conv; depthwise
                                                                   has no bias)

with widths 64 -> 32 -> 24 -> 24 for both Thunder and Lightning. Keras' ``UpSampling2D``
(bilinear) is TF ``ResizeBilinear`` with ``half_pixel_centers=True``, which is PyTorch's
``interpolate(mode="bilinear", align_corners=False)`` for an exact ×2. The neck has no BatchNorm:
its convs carry real biases, so it trains like any conv stack.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class SeparableConv(nn.Module):
    """Keras ``SeparableConv2D``: depthwise 3×3 (no bias) then pointwise 1×1 (bias), ReLU.

    Stride 1 only, where TF 'SAME' and PyTorch's padding=1 agree.
    """

    def __init__(self, in_channels: int, out_channels: int, relu: bool = True) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels,
                                   bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1)
        self.relu = relu
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        y = self.pointwise(self.depthwise(x))
        return F.relu(y) if self.relu else y


def upsample2x(x: Tensor) -> Tensor:
    """Bilinear ×2 with half-pixel centres (TF ``ResizeBilinear``, half_pixel_centers=True)."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class MoveNetFPN(nn.Module):
    """Top-down FPN from the stride-32 features to stride 4.

    Args:
        in_channels: channels of the stride-32 features (1280 in MoveNet).
        tap_channels: channels of the taps at strides 16, 8, 4 (coarse to fine).
        widths: output width after the top conv and after each of the three levels.
    """

    def __init__(self, in_channels: int, tap_channels: tuple[int, ...],
                 widths: tuple[int, ...] = (64, 32, 24, 24)) -> None:
        super().__init__()
        if len(widths) != len(tap_channels) + 1:
            raise ValueError(
                f"FPN needs {len(tap_channels) + 1} widths for {len(tap_channels)} taps, "
                f"got {widths}"
            )
        self.top = nn.Conv2d(in_channels, widths[0], 1)
        self.laterals = nn.ModuleList(
            nn.Conv2d(c, w, 1) for c, w in zip(tap_channels, widths[:-1], strict=True)
        )
        self.refine = nn.ModuleList(
            SeparableConv(w_in, w_out) for w_in, w_out in zip(widths[:-1], widths[1:],
                                                                strict=True)
        )
        self.out_channels = widths[-1]

    def forward(self, x: Tensor, taps: list[Tensor]) -> Tensor:
        """``taps`` coarse to fine (strides 16, 8, 4), each twice the previous level's size."""
        y = self.top(x)
        for tap, lateral, refine in zip(taps, self.laterals, self.refine, strict=True):
            y = refine(upsample2x(y) + lateral(tap))
        return y
