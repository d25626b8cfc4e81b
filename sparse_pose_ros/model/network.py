"""Backbone + HEMlets head built from a small, overridable config.

The architecture is data (``NetworkConfig.arch``), as in torchvision's MobileNetV2: each row is
``(t, c, n, s)`` = expand ratio, output channels, repeats, stride of the first repeat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from torch import Tensor, nn

from .blocks import ConvBN, InvertedResidual
from .heads import HemletsHead, Neck, head_region
from .lifter import PoseLifter
from .masks import BlockMask

# t, c, n, s — MobileNetV2 up to stride 16 (the 160/320-channel stride-32 stages are dropped:
# pose needs resolution more than depth, and they would be upsampled away by the neck anyway).
MOBILENETV2_S16: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
)


def _make_divisible(v: float, divisor: int = 8) -> int:
    """Round channels to a multiple of 8 (as torchvision) without dropping more than 10 %."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@dataclass
class NetworkConfig:
    """Everything that defines the network's shape. Stored with every checkpoint.

    Attributes:
        input_size: square input side in pixels (multiple of 16).
        width_mult: channel multiplier of the backbone.
        arch: rows of (t, c, n, s).
        stem_channels: channels of the stride-2 stem conv (before width_mult).
        gated: attach mask units (False = the dense model).
        gate_strided: also gate blocks without a residual (stride 2 or channel change); their
            output becomes F(X)∘G. Off by default: see README "Masks of stride-2 blocks".
        residual_activation: r in r(F(X)∘G + X): None (identity) or "relu".
        head_channels: width of the neck/head at stride 4.
        depth_bins: depth bins of the volumetric head.
        depth_mode: "factorized" or "volumetric" (see ``model.heads``).
        depth_range_mm: root-relative depth that z = ±1 stands for.
        lifter_hidden: width of the pose-prior lifter (``model.lifter``) whose depth replaces
            the head's z; 0 = none. Attached after training by ``training.train_lifter``.
        head_gating: read the heads only inside the region of the last execution mask
            (``model.heads.head_region``); needs a gated backbone. An inference choice: the
            weights are the same, see ``PoseNetwork.set_head_gating``.
        input_mean, input_std: RGB normalisation, input = (rgb / 255 - mean) / std. Stored with
            the weights (and in exported ONNX metadata) so no runtime repeats the constants.
    """

    input_size: int = 256
    width_mult: float = 1.0
    arch: tuple[tuple[int, int, int, int], ...] = MOBILENETV2_S16
    stem_channels: int = 32
    gated: bool = True
    gate_strided: bool = False
    residual_activation: str | None = None
    head_channels: int = 64
    depth_bins: int = 64
    depth_mode: str = "factorized"
    depth_range_mm: float = 1000.0
    head_gating: bool = False
    lifter_hidden: int = 0
    input_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    input_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.input_size <= 0 or self.input_size % 16:
            raise ValueError(f"input_size must be a positive multiple of 16, got {self.input_size}")
        if self.width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {self.width_mult}")
        rows = tuple(tuple(int(v) for v in row) for row in self.arch)
        for row in rows:
            if len(row) != 4 or row[3] not in (1, 2) or row[1] <= 0 or row[2] <= 0 or row[0] <= 0:
                raise ValueError(f"arch rows must be (t>0, c>0, n>0, s in {{1,2}}), got {row}")
        if sum(1 for r in rows if r[3] == 2) + 1 != 4:
            raise ValueError("arch must reach stride 16 (three stride-2 rows after the stem)")
        self.arch = rows  # type: ignore[assignment]
        self.input_mean = tuple(float(v) for v in self.input_mean)  # type: ignore[assignment]
        self.input_std = tuple(float(v) for v in self.input_std)  # type: ignore[assignment]
        if len(self.input_mean) != 3 or len(self.input_std) != 3 or min(self.input_std) <= 0:
            raise ValueError("input_mean/input_std must be 3 values, std > 0")
        if self.lifter_hidden < 0:
            raise ValueError(f"lifter_hidden must be >= 0, got {self.lifter_hidden}")
        if self.head_gating and not self.gated:
            raise ValueError("head_gating needs a gated backbone (gated: true)")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["arch"] = [list(r) for r in self.arch]
        d["input_mean"] = list(self.input_mean)
        d["input_std"] = list(self.input_std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetworkConfig:
        d = dict(d)
        if "arch" in d:
            d["arch"] = tuple(tuple(r) for r in d["arch"])
        for key in ("input_mean", "input_std"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


@dataclass
class PoseOutput:
    """Network output.

    Attributes:
        heatmaps: (B, J, h, w) 2D heatmap logits at stride 4.
        triplets: (B, 3·P, h, w) HEMlets maps.
        joints: (B, J, 3): x, y in [0, 1] of the input, z in [-1, 1] (× depth_range_mm).
        masks: one entry per backbone block: its BlockMask, or None for ungated blocks.
        depth: (B, J, h, w) per-pixel root-relative depth in [-1, 1] (factorized head): the
            location map ``loss.depth_supervision: location`` trains; None for the volumetric
            head.
    """

    heatmaps: Tensor
    triplets: Tensor
    joints: Tensor
    masks: list[BlockMask | None]
    depth: Tensor | None = None


class Backbone(nn.Module):
    """MobileNetV2-style backbone; returns stride-4, stride-8 and stride-16 features + masks."""

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        stem = _make_divisible(cfg.stem_channels * cfg.width_mult)
        self.stem = ConvBN(3, stem, 3, stride=2)
        blocks: list[InvertedResidual] = []
        in_ch = stem
        stride = 2
        self.tap_after: dict[int, int] = {}  # stride -> index of the last block at that stride
        for t, c, n, s in cfg.arch:
            out_ch = _make_divisible(c * cfg.width_mult)
            for i in range(n):
                st = s if i == 0 else 1
                stride *= st
                residual = st == 1 and in_ch == out_ch
                blocks.append(
                    InvertedResidual(
                        in_ch,
                        out_ch,
                        st,
                        t,
                        gated=cfg.gated and (residual or cfg.gate_strided),
                        residual_activation=cfg.residual_activation,
                    )
                )
                self.tap_after[stride] = len(blocks) - 1
                in_ch = out_ch
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = in_ch
        self.skip_channels = (
            blocks[self.tap_after[8]].out_channels,
            blocks[self.tap_after[4]].out_channels,
        )

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor], list[BlockMask | None]]:
        x = self.stem(x)
        masks: list[BlockMask | None] = []
        taps: dict[int, Tensor] = {}
        for i, block in enumerate(self.blocks):
            x, m = block(x)
            masks.append(m)
            for s, idx in self.tap_after.items():
                if idx == i:
                    taps[s] = x
        return x, [taps[8], taps[4]], masks


class PoseNetwork(nn.Module):
    """Gated MobileNetV2 backbone + light FPN neck + HEMlets head."""

    def __init__(self, cfg: NetworkConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or NetworkConfig()
        self.backbone = Backbone(self.cfg)
        hc = _make_divisible(self.cfg.head_channels)
        self.neck = Neck(self.backbone.out_channels, self.backbone.skip_channels, hc)
        self.head = HemletsHead(hc, self.cfg.depth_bins, self.cfg.depth_mode)
        self.lifter = PoseLifter(self.cfg.lifter_hidden) if self.cfg.lifter_hidden else None

    def gated_blocks(self) -> list[InvertedResidual]:
        return [b for b in self.backbone.blocks if b.gated]

    def set_mask_threshold(self, probability: float) -> None:
        """Inference threshold of every mask unit (probability; 0.5 = training boundary)."""
        for b in self.gated_blocks():
            assert b.mask_unit is not None
            b.mask_unit.set_threshold(probability)

    def set_head_gating(self, on: bool) -> None:
        """Read the heads only inside the last execution mask's region (or everywhere).

        ``NetworkConfig`` validates it (a dense network has no mask to gate by)."""
        self.cfg = replace(self.cfg, head_gating=bool(on))

    def head_gate(self, masks: Sequence[BlockMask | Tensor | None]) -> Tensor | None:
        """The hard mask that defines the head region (the last gated block's), or None when
        head gating is off."""
        if not self.cfg.head_gating:
            return None
        for m in reversed(masks):
            if m is not None:
                return (m.hard if isinstance(m, BlockMask) else m).detach()
        raise ValueError("head gating is on but the backbone returned no mask")

    def run_head(self, feats: Tensor, skips: list[Tensor],
                 masks: Sequence[BlockMask | Tensor | None]
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Neck + head on backbone outputs (shared by every PyTorch path and the exporters)."""
        y = self.neck(feats, skips)
        gate = self.head_gate(masks)
        region = None if gate is None else head_region(gate, (y.shape[-2], y.shape[-1]))
        heatmaps, triplets, joints, depth = self.head(y, region)
        return heatmaps, triplets, self.refine_joints(joints), depth

    def refine_joints(self, joints: Tensor) -> Tensor:
        """The head's (B, J, 3) joints with z from the lifter when there is one (runtimes that
        compute the head themselves, like the compiled CPU head, call this on their joints)."""
        return joints if self.lifter is None else self.lifter.refine(joints)

    def forward(self, x: Tensor) -> PoseOutput:
        feats, skips, masks = self.backbone(x)
        heatmaps, triplets, joints, depth = self.run_head(feats, skips, masks)
        return PoseOutput(heatmaps, triplets, joints, masks, depth)
