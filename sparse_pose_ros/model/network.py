"""Backbone + neck + HEMlets head built from a small, overridable config.

The architecture is data (``NetworkConfig.arch``), as in torchvision's MobileNetV2: each row is
``(t, c, n, s)`` = expand ratio, output channels, repeats, stride of the first repeat.

Two families share the code:
- the original stride-16 network (``MOBILENETV2_S16``, ``neck="light"``, symmetric padding,
  ImageNet normalisation), trained from scratch;
- MoveNet's MobileNetV2 + FPN (``MOBILENETV2_S32``, a 1×1 conv to 1280 after the last block,
  ``neck="fpn"``, TF 'SAME' padding, input rgb/127.5 − 1), which holds Google's pretrained
  weights imported by ``sparse_pose_ros.pretrained`` (see ``movenet_config``).
"""


from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from .. import skeleton
from ..runtime.options import (
    HEAD_GATING_STORED,
    OUTPUT_STRIDES,
    check_bone_lengths,
    check_input_size,
)
from .blocks import PADDINGS, ConvBN, InvertedResidual
from .fpn import MoveNetFPN, SeparableConv
from .heads import HemletsHead, Neck, head_region, strip_to_square
from .lifter import PoseLifter
from .locator import PersonLocator, cells_to_grid
from .masks import BlockMask
from .movenet_head import MoveNetHeads, MoveNetOutput, person_region

# t, c, n, s — MobileNetV2 up to stride 16 (the 160/320-channel stride-32 stages are dropped:
# pose needs resolution more than depth, and they would be upsampled away by the neck anyway).
MOBILENETV2_S16: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
)

# t, c, n, s — the full MobileNetV2 to stride 32 (torchvision's table, Keras' blocks 0-16):
# MoveNet's backbone. At width 1.75 (Thunder) the rounded widths are 32, 40, 56, 112, 168, 280,
# 560, at 1.0 (Lightning) 16, 24, 32, 64, 96, 160, 320.
MOBILENETV2_S32: tuple[tuple[int, int, int, int], ...] = (
    *MOBILENETV2_S16,
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

NECKS: tuple[str, ...] = ("light", "fpn")
#: where gated blocks get their masks (``NetworkConfig.mask_source``)
MASK_SOURCES: tuple[str, ...] = ("units", "locator")


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
        input_size: square input side in pixels (a multiple of the output stride: 16, or 32
            for the stride-32 MoveNet arch; ``runtime.options.check_input_size``).
        width_mult: channel multiplier of the backbone.
        arch: rows of (t, c, n, s).
        stem_channels: channels of the stride-2 stem conv (before width_mult).
        gated: attach mask units (False = the dense model).
        gate_strided: also gate blocks without a residual (stride 2 or channel change); their
            output becomes F(X)∘G. Off by default: see docs/network.md §3.
        residual_activation: r in r(F(X)∘G + X): None (identity) or "relu".
        head_channels: width of the neck/head at stride 4.
        depth_bins: depth bins of the volumetric head.
        depth_mode: "factorized" or "volumetric" (see ``model.heads``).
        depth_range_mm: root-relative depth that z = ±1 stands for.
        lifter_hidden: width of the pose-prior lifter (``model.lifter``) whose depth replaces
            the head's z; 0 = none. Attached after training by ``training.train_lifter``.
        midpoint_torso: output the pelvis, thorax and spine as mid-points of the hips, the
            shoulders and those two (``skeleton.MIDPOINT_JOINTS``), in the image and in
            depth, as the real 3D labels define them. Set with a lifter trained on that
            definition (``training.train_lifter``); an inference-time map, no weights.
        bone_lengths_mm: reference bone lengths (mm, ``skeleton.BONES`` order) of the skeleton
            this network outputs; the runtime's root-depth fit (``pipeline.lift``) scales the
            skeleton to them. ``training.train_lifter`` sets them to the median bones of its
            real training skeletons, because the joints are defined by the teacher labels, not
            by Human3.6M's markers (a thorax–nose bone of ~225 mm against Human3.6M's 121);
            empty = Human3.6M's means (``pipeline.lift.REFERENCE_BONE_LENGTHS_M``). No weights.
        head_gating: read the heads only inside the region of the last execution mask
            (``model.heads.head_region``); needs a gated backbone. An inference choice: the
            weights are the same, see ``PoseNetwork.set_head_gating``. Off unless configured;
            backends and the node choose per run (the rule and its three defaults:
            ``runtime.options``).
        input_mean, input_std: RGB normalisation, input = (rgb / 255 - mean) / std. Stored with
            the weights (and in exported ONNX metadata) so no runtime repeats the constants.
        padding: "symmetric" (PyTorch padding=1) or "tf_same" (TensorFlow 'SAME': 0 before and 1
            after on a stride-2 3×3 conv over an even input), see ``model.blocks``.
        last_channels: a 1×1 conv + BN + ReLU6 to this width after the last block (MoveNet:
            1280); 0 = none.
        neck: "light" (nearest upsampling + ConvBN, stride 16 -> 4) or "fpn" (MoveNet's FPN,
            stride 32 -> 4, ``model.fpn``).
        fpn_widths: widths of the FPN (top conv, then each level).
        head_hidden: a separable conv (3×3 depthwise + 1×1 to this width, ReLU) in front of the
            HEMlets 1×1 convs, as MoveNet's heads have; 0 = the 1×1 convs read the neck directly.
        readout_window: joints from a soft-argmax within this many cells of each heatmap's peak
            (``model.heads.peak_window``); 0 = over the whole map (HEMlets' readout).
        movenet_heads: keep MoveNet's four heads (``model.movenet_head``) on the neck output: the
            2D teacher and evaluation reference. Runtimes ignore them, except with
            ``person_prior``.
        person_prior: read the joints only inside the box around the one person MoveNet's
            centre and regression heads pick (``model.movenet_head.person_region``), so two
            people in view give one skeleton, not a chimera; needs ``movenet_heads``.
        mask_source: where gated blocks get their masks: "units" (each block's own 1×1 mask
            unit, dynconv) or "locator" (one :class:`~.locator.PersonLocator` look at the image
            decides for every block; its mask units are then not run, see ``model.locator``).
        locator_width: channels of the locator's stride-16 layers.
        locator_margin: stride-16 cells the locator's decision is dilated by.
        skip_fill: every gated block writes a fitted per-channel vector (its mean output on
            training frames, ``training.skip_fill``) at the cells it skips, instead of zero
            (``model.blocks.InvertedResidual``); the frozen layers after it then read near what
            they were trained on around a small person.
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
    head_gating: bool = HEAD_GATING_STORED
    lifter_hidden: int = 0
    midpoint_torso: bool = False
    bone_lengths_mm: tuple[float, ...] = ()
    input_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    input_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    padding: str = "symmetric"
    last_channels: int = 0
    neck: str = "light"
    fpn_widths: tuple[int, ...] = (64, 32, 24, 24)
    head_hidden: int = 0
    readout_window: int = 0
    movenet_heads: bool = False
    person_prior: bool = False
    mask_source: str = "units"
    locator_width: int = 48
    locator_margin: int = 1
    skip_fill: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def output_stride(self) -> int:
        """Stride of the backbone's last features (stem 2 × the stride-2 rows)."""
        return 2 ** (1 + sum(1 for r in self.arch if r[3] == 2))

    def __post_init__(self) -> None:
        rows = tuple(tuple(int(v) for v in row) for row in self.arch)
        self.arch = rows  # type: ignore[assignment]
        for row in rows:
            if len(row) != 4 or row[3] not in (1, 2) or row[1] <= 0 or row[2] <= 0 or row[0] <= 0:
                raise ValueError(f"arch rows must be (t>0, c>0, n>0, s in {{1,2}}), got {row}")
        if self.output_stride not in OUTPUT_STRIDES:
            raise ValueError("arch must reach stride 16 or 32 (three or four stride-2 rows "
                             f"after the stem), got stride {self.output_stride}")
        check_input_size(self.input_size, self.output_stride)
        if self.width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {self.width_mult}")
        self.input_mean = tuple(float(v) for v in self.input_mean)  # type: ignore[assignment]
        self.input_std = tuple(float(v) for v in self.input_std)  # type: ignore[assignment]
        if len(self.input_mean) != 3 or len(self.input_std) != 3 or min(self.input_std) <= 0:
            raise ValueError("input_mean/input_std must be 3 values, std > 0")
        if self.lifter_hidden < 0:
            raise ValueError(f"lifter_hidden must be >= 0, got {self.lifter_hidden}")
        self.bone_lengths_mm = check_bone_lengths(self.bone_lengths_mm, "bone_lengths_mm")
        if self.head_gating and not self.gated:
            raise ValueError("head_gating needs a gated backbone (gated: true)")
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {self.padding!r}")
        if self.neck not in NECKS:
            raise ValueError(f"neck must be one of {NECKS}, got {self.neck!r}")
        self.fpn_widths = tuple(int(v) for v in self.fpn_widths)  # type: ignore[assignment]
        if self.neck == "fpn":
            if self.output_stride != 32:
                raise ValueError("neck 'fpn' needs a stride-32 arch (e.g. MOBILENETV2_S32)")
            if len(self.fpn_widths) != 4 or min(self.fpn_widths) <= 0:
                raise ValueError(f"fpn_widths must be 4 positive widths, got {self.fpn_widths}")
        elif self.output_stride != 16:
            raise ValueError("neck 'light' reads stride-16 features; use neck 'fpn' at stride 32")
        if self.movenet_heads and self.neck != "fpn":
            raise ValueError("movenet_heads sit on MoveNet's FPN (neck: fpn)")
        if self.person_prior and not self.movenet_heads:
            raise ValueError("person_prior reads MoveNet's centre heads (movenet_heads: true)")
        if self.last_channels < 0 or self.head_hidden < 0:
            raise ValueError("last_channels and head_hidden must be >= 0")
        if self.mask_source not in MASK_SOURCES:
            raise ValueError(f"mask_source must be one of {MASK_SOURCES}, got "
                             f"{self.mask_source!r}")
        if self.mask_source == "locator" and not self.gated:
            raise ValueError("mask_source 'locator' needs a gated backbone (gated: true)")
        if self.skip_fill and not self.gated:
            raise ValueError("skip_fill fills the cells gated blocks skip (gated: true)")
        if self.locator_width <= 0 or self.locator_margin < 0:
            raise ValueError("locator_width must be > 0 and locator_margin >= 0")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.mask_source == "units":
            # the locator's knobs mean nothing without it; leaving them out keeps the config
            # (and so the model hash) of every unit-masked checkpoint as it was
            for key in ("mask_source", "locator_width", "locator_margin"):
                d.pop(key)
        if not self.skip_fill:
            d.pop("skip_fill")  # keeps every earlier checkpoint's config and hash
        if not self.bone_lengths_mm:
            d.pop("bone_lengths_mm")  # keeps every earlier checkpoint's config and hash
        else:
            d["bone_lengths_mm"] = list(self.bone_lengths_mm)
        d["arch"] = [list(r) for r in self.arch]
        d["input_mean"] = list(self.input_mean)
        d["input_std"] = list(self.input_std)
        d["fpn_widths"] = list(self.fpn_widths)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetworkConfig:
        d = dict(d)
        if "arch" in d:
            d["arch"] = tuple(tuple(r) for r in d["arch"])
        for key in ("input_mean", "input_std", "fpn_widths", "bone_lengths_mm"):
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
        movenet: MoveNet's raw head outputs when asked for (``forward(x, with_movenet=True)``).
        confidence: (B, J) each joint's heatmap confidence where the runtime computed it
            alongside the readout (the compiled window head); None: from the heatmaps.
    """

    heatmaps: Tensor
    triplets: Tensor
    joints: Tensor
    masks: list[BlockMask | None]
    depth: Tensor | None = None
    movenet: MoveNetOutput | None = None
    confidence: Tensor | None = None


def movenet_config(variant: str, gated: bool = True, **overrides: Any) -> NetworkConfig:
    """The network that holds MoveNet ``variant`` ("thunder": width 1.75 at 256², "lightning":
    width 1.0 at 192²) plus our heads. The input normalisation defaults to rgb/127.5 − 1; the
    importer stores the graph's exact constants."""
    sizes = {"thunder": (1.75, 256), "lightning": (1.0, 192)}
    if variant not in sizes:
        raise ValueError(f"MoveNet variant must be one of {sorted(sizes)}, got {variant!r}")
    width, size = sizes[variant]
    base: dict[str, Any] = dict(
        input_size=size, width_mult=width, arch=MOBILENETV2_S32, stem_channels=32,
        gated=gated, padding="tf_same", last_channels=1280, neck="fpn",
        fpn_widths=(64, 32, 24, 24), head_hidden=96, movenet_heads=True,
        input_mean=(0.5, 0.5, 0.5), input_std=(0.5, 0.5, 0.5),
    )
    base.update(overrides)
    return NetworkConfig(**base)


class Backbone(nn.Module):
    """MobileNetV2-style backbone; returns the last features, the taps the neck reads (coarse to
    fine: strides 16, 8, 4 for a stride-32 arch; 8, 4 for a stride-16 one) and the masks."""

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        stem = _make_divisible(cfg.stem_channels * cfg.width_mult)
        self.stem = ConvBN(3, stem, 3, stride=2, padding=cfg.padding)
        blocks: list[InvertedResidual] = []
        in_ch = stem
        stride = 2
        # stride -> index of the block whose output the neck reads at that stride. The light
        # neck reads the last block at each stride; MoveNet's FPN reads the end of the *first*
        # row at each stride (Keras block_2, block_5, block_9: at stride 16 the 64-channel row,
        # not the 96-channel one after it).
        self.tap_after: dict[int, int] = {}
        first_row_only = cfg.neck == "fpn"
        for t, c, n, s in cfg.arch:
            row_stride_before = stride
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
                        padding=cfg.padding,
                        skip_fill=cfg.skip_fill,
                    )
                )
                if not (first_row_only and stride in self.tap_after
                        and stride == row_stride_before):
                    self.tap_after[stride] = len(blocks) - 1
                in_ch = out_ch
        self.blocks = nn.ModuleList(blocks)
        #: one look at the image that masks every gated block (``mask_source: locator``)
        self.locator: PersonLocator | None = (
            PersonLocator(cfg.locator_width) if cfg.mask_source == "locator" else None
        )
        self.locator_margin = cfg.locator_margin
        #: whether a caller's region grows one ring on grids coarser than its cells
        #: (``locator.cells_to_grid``): not with ``skip_fill``, whose skipped cells hold a
        #: fitted fill instead of zeros. The locator's cells keep the ring: without it the
        #: locator lost 0.006 of PCK and 0.9 % of the people found on the held-out whole
        #: frames for 0.61 instead of 0.67 of the MACs (``docs/network.md`` §2b)
        self.region_ring = not cfg.skip_fill
        #: MoveNet's ``Conv_1`` (1×1 to 1280 + BN + ReLU6) after the last block; None without.
        self.last: ConvBN | None = (
            ConvBN(in_ch, cfg.last_channels, 1) if cfg.last_channels else None
        )
        self.out_channels = cfg.last_channels or in_ch
        #: strides of the taps handed to the neck, coarse to fine.
        self.skip_strides: tuple[int, ...] = tuple(
            s for s in (16, 8, 4) if s < cfg.output_stride
        )
        self.skip_channels = tuple(blocks[self.tap_after[s]].out_channels
                                   for s in self.skip_strides)

    def locator_masks(self, x: Tensor, features: nn.Module | None = None
                      ) -> list[Tensor | None]:
        """Per block the (B, 1, H_out, W_out) hard mask the locator gives it (None for
        ungated blocks), from the normalised input ``x``; every None without a locator.
        ``features``: the locator's stack with BatchNorm folded (what runtimes pass)."""
        if self.locator is None:
            return [None] * len(self.blocks)
        return self.masks_from_cells(self.locator.cells(x, self.locator_margin, features),
                                     (x.shape[-2], x.shape[-1]))

    def masks_from_region(self, cells: Tensor, input_hw: tuple[int, int]
                          ) -> list[Tensor | None]:
        """A caller's region (stride-16 cells) → each gated block's mask (``region_ring``)."""
        return self.masks_from_cells(cells, input_hw, ring=self.region_ring)

    def masks_from_cells(self, cells: Tensor, input_hw: tuple[int, int], ring: bool = True
                         ) -> list[Tensor | None]:
        """Stride-16 cells (B, 1, H/16, W/16) → each gated block's mask on its own grid
        (``ring``: one ring on the coarser grids, ``locator.cells_to_grid``)."""
        out: list[Tensor | None] = []
        by_grid: dict[tuple[int, int], Tensor] = {}  # blocks of one stage share their grid
        grid = ((input_hw[0] - 1) // self.stem[0].stride[0] + 1,
                (input_hw[1] - 1) // self.stem[0].stride[0] + 1)  # fmt: skip
        for block in self.blocks:
            grid = ((grid[0] - 1) // block.stride + 1, (grid[1] - 1) // block.stride + 1)
            if block.gated and grid not in by_grid:
                by_grid[grid] = cells_to_grid(cells, grid, ring)
            out.append(by_grid[grid] if block.gated else None)
        return out

    def forward(self, x: Tensor, region: Tensor | None = None
                ) -> tuple[Tensor, list[Tensor], list[BlockMask | None]]:
        """``region``: (B, 1, H/16, W/16) 0/1 cells where the caller knows the person is (e.g.
        from the previous frame's pose, ``pipeline.roi.region_cells``): every gated block
        executes exactly those, whatever its mask unit or the locator would say."""
        priors = (self.masks_from_region(region.to(x.dtype), (x.shape[-2], x.shape[-1]))
                  if region is not None else self.locator_masks(x))  # fmt: skip
        x = self.stem(x)
        masks: list[BlockMask | None] = []
        taps: dict[int, Tensor] = {}
        tap_of = {idx: s for s, idx in self.tap_after.items()}
        for i, block in enumerate(self.blocks):
            x, m = block(x, priors[i])
            masks.append(m)
            if i in tap_of:
                taps[tap_of[i]] = x
        if self.last is not None:
            x = self.last(x)
        return x, [taps[s] for s in self.skip_strides], masks


class PoseNetwork(nn.Module):
    """Gated MobileNetV2 backbone + neck (light or MoveNet's FPN) + HEMlets head (+ MoveNet's
    heads when configured)."""

    def __init__(self, cfg: NetworkConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or NetworkConfig()
        self.backbone = Backbone(self.cfg)
        self.neck: nn.Module
        if self.cfg.neck == "fpn":
            self.neck = MoveNetFPN(self.backbone.out_channels, self.backbone.skip_channels,
                                   self.cfg.fpn_widths)
            hc = self.neck.out_channels
        else:
            hc = _make_divisible(self.cfg.head_channels)
            self.neck = Neck(self.backbone.out_channels, self.backbone.skip_channels, hc)
        #: MoveNet-style separable conv in front of the HEMlets head (None without).
        self.head_pre: SeparableConv | None = (
            SeparableConv(hc, self.cfg.head_hidden) if self.cfg.head_hidden else None
        )
        head_in = self.cfg.head_hidden or hc
        self.head = HemletsHead(head_in, self.cfg.depth_bins, self.cfg.depth_mode,
                                self.cfg.readout_window)
        self.movenet: MoveNetHeads | None = MoveNetHeads(hc) if self.cfg.movenet_heads else None
        self.lifter = PoseLifter(self.cfg.lifter_hidden) if self.cfg.lifter_hidden else None
        # not persistent: a fixed map of the config, not weights (checkpoints stay as they are)
        self.register_buffer("midpoints", torch.tensor(skeleton.midpoint_matrix())
                             if self.cfg.midpoint_torso else None, persistent=False)

    def gated_blocks(self) -> list[InvertedResidual]:
        return [b for b in self.backbone.blocks if b.gated]

    def set_mask_threshold(self, probability: float) -> None:
        """Inference threshold of every mask unit, or of the locator when it makes the masks
        (probability; 0.5 = training boundary / the locator's calibrated point)."""
        if self.backbone.locator is not None:
            self.backbone.locator.set_threshold(probability)
        for b in self.gated_blocks():
            assert b.mask_unit is not None
            b.mask_unit.set_threshold(probability)

    def set_masks_all_on(self) -> None:
        """Mask units that execute everywhere (weights 0, logit 30): the gated network then
        computes exactly its dense function. Fresh units (weights ~N(0, 0.01), logit 2) switch
        off a few cells where features are large, by chance of the random draw, so a network
        given pretrained weights but untrained masks must be set so."""
        with torch.no_grad():
            for b in self.gated_blocks():
                assert b.mask_unit is not None
                b.mask_unit.conv.weight.zero_()
                b.mask_unit.conv.bias.fill_(30.0)

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
        return self.head_from_neck(self.neck(feats, skips), masks)

    def head_from_neck(self, y: Tensor, masks: Sequence[BlockMask | Tensor | None]
                       ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """The HEMlets head (with its optional separable pre-conv) on the neck's output; with
        ``person_prior`` only inside the chosen person's box (and the gated region, if any)."""
        region = self.head_read_region(y, masks)
        heatmaps, triplets, joints, depth = self.head_in_region(y, region)
        joints = strip_to_square(joints, int(y.shape[-2]), int(y.shape[-1]))
        return heatmaps, triplets, self.refine_joints(joints), depth

    def head_read_region(self, y: Tensor, masks: Sequence[BlockMask | Tensor | None],
                         center_logits: Tensor | None = None) -> Tensor | None:
        """(B, 1, h, w) 0/1 map of the neck-output cells the head reads (the gated region,
        intersected with the person box of ``person_prior``), or None: everywhere.

        Apart from :meth:`head_in_region` so that a runtime can run the head on the region's
        bounding box alone (``sparse.ort_head``): outside the region the outputs are constants
        (heatmap logits ``REGION_OFF_LOGIT``, triplets 0). ``center_logits``: MoveNet's centre
        branch on ``y`` when a runtime computed it already (``person_region``)."""
        person = (person_region(self.movenet.branches, y, center_logits=center_logits)
                  if self.cfg.person_prior and self.movenet is not None else None)
        gate = self.head_gate(masks)
        region = None if gate is None else head_region(gate, (y.shape[-2], y.shape[-1]))
        if person is not None:
            region = person if region is None else region * person
        return region

    def head_in_region(self, y: Tensor, region: Tensor | None
                       ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """``head_pre`` + the HEMlets head on ``y`` read inside ``region``: (heatmaps,
        triplets, joints in [0, 1] of this map, before ``strip_to_square`` and the lifter,
        depth map)."""
        if self.head_pre is not None:
            y = self.head_pre(y)
        return self.head(y, region)

    def refine_joints(self, joints: Tensor) -> Tensor:
        """The head's (B, J, 3) joints with z from the lifter when there is one, and the torso
        joints as mid-points with ``midpoint_torso`` (runtimes that compute the head
        themselves, like the compiled CPU head, call this on their joints).

        The mid-points are taken twice: in the image before the lifter reads the skeleton
        (it was trained on that definition), and in depth after it, re-rooted at the new
        pelvis, so the published skeleton follows the definition exactly."""
        m = self.midpoints
        if m is not None:
            joints = torch.matmul(m.to(joints.dtype), joints)
        if self.lifter is not None:
            joints = self.lifter.refine(joints)
        if m is not None and self.lifter is not None:
            z = torch.matmul(m.to(joints.dtype), joints[..., 2:])
            z = z - z[:, skeleton.ROOT : skeleton.ROOT + 1]
            joints = torch.cat([joints[..., :2], z], dim=-1)
        return joints

    def forward(self, x: Tensor, with_movenet: bool = False, region: Tensor | None = None
                ) -> PoseOutput:
        """``with_movenet``: also run MoveNet's heads on the same neck output (training's 2D
        teacher, evaluation's reference); needs ``cfg.movenet_heads``. ``region``: the cells
        every gated block executes (``Backbone.forward``)."""
        feats, skips, masks = self.backbone(x, region)
        y = self.neck(feats, skips)
        heatmaps, triplets, joints, depth = self.head_from_neck(y, masks)
        movenet = None
        if with_movenet:
            if self.movenet is None:
                raise ValueError("this network has no MoveNet heads (movenet_heads: false)")
            movenet = self.movenet(y)
        return PoseOutput(heatmaps, triplets, joints, masks, depth, movenet)
