"""Gated MobileNetV2 inverted-residual block: X' = r(F(X) ∘ G + X).

F is 1×1 expand -> 3×3 depthwise -> 1×1 project (BN after each, ReLU6 after the first two).
G is the block's execution mask. In *masked dense* form (training, and the reference that the
gather-scatter path in ``sparse_pose_ros.sparse`` must equal) the expand output is zeroed
outside the receptive (dilated) mask and the depthwise/project outputs outside the mask, so the
result at every active position equals the ungated block there and inactive positions keep X.

``r`` is the identity by default: MobileNetV2's linear bottleneck argument (a ReLU after the
narrow residual sum destroys information) applies, and it keeps inactive positions untouched so
the sparse path needs no dense pass at all. ``residual_activation="relu"`` gives dynconv's
ResNet-style r = ReLU for experiments.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .masks import BlockMask, MaskUnit, receptive_mask

NormLayer = Callable[[int], nn.Module]

#: Padding conventions of 3×3 convs. "symmetric" is PyTorch's padding=1. "tf_same" is
#: TensorFlow's 'SAME', which MoveNet was trained with: identical at stride 1, but a stride-2
#: conv on an even input pads 0 before and 1 after (PRETRAINED.md, trap 1). Importing MoveNet
#: with symmetric padding shifts every keypoint by ~29 px at 256².
PADDINGS: tuple[str, ...] = ("symmetric", "tf_same")


def tf_same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TF 'SAME' along one axis of length ``size``."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding, computed from the input size at each call.

    The pads are fixed by the input shape, so a traced/exported graph holds a constant Pad; for
    the even feature sizes of a multiple-of-32 input they are (0, 1) on a stride-2 3×3 conv.
    ``explicit_pads(h, w)`` tells every other runtime (sparse executor, compiled kernels, FLOPs
    count) the same numbers.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs["padding"] = 0
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def explicit_pads(self, h: int, w: int) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) for an (h, w) input."""
        top, bottom = tf_same_pads(h, self.kernel_size[0], self.stride[0])
        left, right = tf_same_pads(w, self.kernel_size[1], self.stride[1])
        return top, bottom, left, right

    def forward(self, x: Tensor) -> Tensor:
        top, bottom, left, right = self.explicit_pads(int(x.shape[-2]), int(x.shape[-1]))
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def conv_pads(conv: nn.Conv2d, h: int, w: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) zero padding that ``conv`` applies to an (h, w) input."""
    if isinstance(conv, SameConv2d):
        return conv.explicit_pads(h, w)
    ph, pw = conv.padding  # type: ignore[misc]
    if not isinstance(ph, int) or not isinstance(pw, int):
        raise ValueError(f"string padding {conv.padding!r} is not supported")
    return ph, ph, pw, pw


def make_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
              groups: int = 1, bias: bool = False, padding: str = "symmetric") -> nn.Conv2d:
    """A k×k conv with the given padding convention (see :data:`PADDINGS`).

    Stride-1 convs are the same under both conventions, so only strided convs become
    :class:`SameConv2d` and every stride-1 conv stays a plain ``nn.Conv2d`` for every runtime.
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if padding == "tf_same" and stride > 1 and kernel_size > 1:
        return SameConv2d(in_channels, out_channels, kernel_size, stride, groups=groups,
                          bias=bias)
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2,
                     groups=groups, bias=bias)


class ConvBN(nn.Sequential):
    """Conv2d (no bias) + norm + optional ReLU6, the MobileNetV2 building unit."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        activation: bool = True,
        norm_layer: NormLayer = nn.BatchNorm2d,
        padding: str = "symmetric",
    ) -> None:
        layers: list[nn.Module] = [
            make_conv(in_channels, out_channels, kernel_size, stride, groups=groups,
                      padding=padding),
            norm_layer(out_channels),
        ]
        if activation:
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)
        self.out_channels = out_channels


class InvertedResidual(nn.Module):
    """MobileNetV2 block, optionally gated by a spatial execution mask.

    Args:
        in_channels: C_b of the block input.
        out_channels: channels of the block output.
        stride: 1 or 2 (depthwise stride).
        expand_ratio: t; hidden width C_e = round(C_b * t).
        gated: attach a mask unit. Residual blocks compute r(F(X)∘G + X); a non-residual block
            (stride 2 or C_in != C_out) computes F(X)∘G, i.e. zero features where G = 0.
        skip_fill: (gated blocks) hold a per-channel vector ``skip_fill`` that a skipped cell
            takes instead of zero: r((F(X)∘G + f∘(1 − G)) + X). Fitted as the mean of F over
            training frames (``training.skip_fill``): the layers after a gated block were
            trained (as MoveNet) on dense features, and zeros there are far outside what they
            saw — the mean is the cheapest guess of a cell nobody computed.
        residual_activation: ``None`` (identity, default) or ``"relu"``.
        norm_layer: callable building the norm layer (BatchNorm2d by default).
        padding: padding convention of the depthwise conv (:data:`PADDINGS`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        expand_ratio: float,
        gated: bool = False,
        residual_activation: str | None = None,
        norm_layer: NormLayer = nn.BatchNorm2d,
        padding: str = "symmetric",
        skip_fill: bool = False,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if residual_activation not in (None, "relu"):
            raise ValueError(
                f"residual_activation must be None or 'relu', got {residual_activation!r}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.hidden_channels = int(round(in_channels * expand_ratio))
        self.use_residual = stride == 1 and in_channels == out_channels
        self.residual_activation = residual_activation
        self.expand: nn.Module | None = (
            ConvBN(in_channels, self.hidden_channels, 1, norm_layer=norm_layer)
            if expand_ratio != 1
            else None
        )
        self.depthwise = ConvBN(
            self.hidden_channels,
            self.hidden_channels,
            3,
            stride,
            groups=self.hidden_channels,
            norm_layer=norm_layer,
            padding=padding,
        )
        self.project = ConvBN(
            self.hidden_channels, out_channels, 1, activation=False, norm_layer=norm_layer
        )
        self.mask_unit: MaskUnit | None = MaskUnit(in_channels, stride) if gated else None
        self.skip_fill: Tensor | None
        if gated and skip_fill:
            self.register_buffer("skip_fill", torch.zeros(out_channels))
        else:
            self.skip_fill = None
        #: Set by benchmarks/tests to execute a given binary mask (B,1,H_out,W_out) instead of
        #: the learned one; ``None`` in normal use.
        self.fixed_mask: Tensor | None = None

    @property
    def gated(self) -> bool:
        return self.mask_unit is not None

    def _finish(self, x: Tensor, out: Tensor) -> Tensor:
        if self.use_residual:
            out = out + x
            if self.residual_activation == "relu":
                out = torch.relu(out)
        return out

    def compute_mask(self, x: Tensor, given: Tensor | None = None) -> BlockMask:
        """Run the mask unit (or take ``fixed_mask``, else ``given``: a mask decided outside the
        block, e.g. by the network's person locator) and derive the expand-conv mask."""
        assert self.mask_unit is not None
        fixed = self.fixed_mask if self.fixed_mask is not None else given
        if fixed is not None:
            hard = fixed.to(dtype=x.dtype, device=x.device)
            soft = hard
            logits = hard * 2.0 - 1.0
        else:
            hard, soft, logits = self.mask_unit(x)
        dilated = receptive_mask(hard, self.stride, (x.shape[-2], x.shape[-1]),
                                 pad_before=self.depthwise_pad_before(x))
        return BlockMask(hard=hard, dilated=dilated, soft=soft, logits=logits)

    def depthwise_pad_before(self, x: Tensor) -> tuple[int, int]:
        """(top, left) zero rows/cols the depthwise conv pads before the input (1 symmetric; 0
        for a TF 'SAME' stride-2 conv on an even side): where its 3×3 window starts."""
        top, _, left, _ = conv_pads(self.depthwise[0], int(x.shape[-2]), int(x.shape[-1]))
        return top, left

    def forward_dense(self, x: Tensor) -> Tensor:
        """The ungated block (what a dense model runs)."""
        h = self.expand(x) if self.expand is not None else x
        return self._finish(x, self.project(self.depthwise(h)))

    def forward_masked(self, x: Tensor, mask: BlockMask) -> Tensor:
        """Masked dense reference: exactly what the gather-scatter path must reproduce."""
        h = self.expand(x) if self.expand is not None else x
        h = h * mask.dilated
        h = self.depthwise(h) * mask.hard
        out = self.project(h) * mask.hard
        return self._finish(x, self.fill_skipped(out, mask.hard))

    def fill_skipped(self, out: Tensor, hard: Tensor) -> Tensor:
        """``out`` plus the skip fill at the cells ``hard`` skips (``out`` itself without a
        fill). ``out``: the branch F∘G, or the block's output X + F∘G — both hold nothing
        extra there. The masked reference and the exported plugin graph both use it."""
        if self.skip_fill is None:
            return out
        return out + (1.0 - hard) * self.skip_fill.view(1, -1, 1, 1).to(out.dtype)

    def forward(self, x: Tensor, given: Tensor | None = None
                ) -> tuple[Tensor, BlockMask | None]:
        """``given``: the (B, 1, H_out, W_out) mask to execute instead of the mask unit's."""
        if not self.gated:
            return self.forward_dense(x), None
        mask = self.compute_mask(x, given)
        return self.forward_masked(x, mask), mask


def freeze_batchnorm(net: nn.Module) -> None:
    """Put every BatchNorm of ``net`` in eval mode: running statistics are used and not updated.

    Why: an imported MoveNet's BatchNorm is folded (mean 0, var 1 − eps stand in for the real
    statistics), so train-mode batch statistics ruin the pretrained features (PRETRAINED.md,
    trap 3). Gamma and beta stay trainable. Call after every ``net.train()``."""
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
