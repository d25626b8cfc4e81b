"""Multiply-add (MAC) accounting: dense and sparse cost per block, and the fraction of the whole
network that a forward pass really executed.

Per gated inverted-residual block (the seed's formulas, dynconv ``loss_cost.py``), with
C_b = input channels, C_e = hidden channels, C_o = output channels, k² = depthwise taps (9):

    dense    F_b    = H_in·W_in·C_b·C_e + H_out·W_out·(k²·C_e + C_e·C_o)
    sparse   F_b,sp = N_dilated·C_b·C_e + N_b·(k²·C_e + C_e·C_o)

For the residual blocks the seed writes about (stride 1, C_o = C_b, k² = 9) this is exactly
F_b = H·W·(9C_e + 2C_bC_e). The general form covers:

- stride-2 gated blocks (``NetworkConfig.gate_strided``): the expand conv runs at the input
  resolution on the dilated mask (``receptive_mask`` of the strided depthwise), depthwise and
  project at the output resolution on the mask itself;
- expand_ratio = 1 blocks: there is no expand conv, so the N_dilated term vanishes and the
  depthwise reads the block input directly.

BatchNorm is not counted (it folds into the conv weights at deployment), nor are ReLU6, adds,
upsampling and softmax: they are not multiply-adds of a weight layer. Everything else that is a
convolution is counted: the stem, every block conv, the backbone's last 1×1 conv when it has one
(MoveNet's ``Conv_1`` to 1280, ``Backbone.last``: part of the backbone), the mask units (a 1×1
conv C_b -> 1 at the output resolution, which always runs densely and is charged to the
*executed* side only — a dense model does not have it), the neck (the light neck or MoveNet's
FPN: top conv, laterals, separable refine convs) and the head (with its separable pre-conv
``head_pre`` when configured). TF 'SAME' convs are counted on the output size their explicit pads
give (``model.blocks.conv_pads``). MoveNet's own four heads are not part of the runtime network
(``PoseNetwork.forward`` does not run them, no runtime exports them): they are left out of every
total and reported apart (``FlopsReport.movenet_head_macs``). ``conv_macs_by_name`` gives the
count per conv module from shapes alone; the test suite checks it against forward hooks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .blocks import InvertedResidual, conv_pads
from .fpn import MoveNetFPN
from .heads import head_region

Number = float | Tensor


def conv_out_hw(conv: nn.Conv2d, h: int, w: int) -> tuple[int, int]:
    """Output size of ``conv`` for an (h, w) input (PyTorch's floor formula on its explicit
    pads, so TF 'SAME' convs count right too)."""
    top, bottom, left, right = conv_pads(conv, h, w)
    out = []
    for size, k, s, p, d in zip(
        (h, w), conv.kernel_size, conv.stride, (top + bottom, left + right), conv.dilation,
        strict=True,
    ):
        out.append((size + p - d * (k - 1) - 1) // s + 1)
    return out[0], out[1]


def conv_macs(conv: nn.Conv2d, h: int, w: int) -> tuple[int, int, int]:
    """(MACs, h_out, w_out) of ``conv`` on an (h, w) input, batch 1."""
    ho, wo = conv_out_hw(conv, h, w)
    kh, kw = conv.kernel_size
    per_position = conv.out_channels * (conv.in_channels // conv.groups) * kh * kw
    return ho * wo * per_position, ho, wo


def _first_conv(module: nn.Module) -> nn.Conv2d:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            return m
    raise ValueError(f"{type(module).__name__} contains no Conv2d")


def _block_shape(block: InvertedResidual) -> tuple[int, int, int, int]:
    """(C_b, C_e, C_o, k²) of a block."""
    dw = _first_conv(block.depthwise)
    taps = dw.kernel_size[0] * dw.kernel_size[1]
    return block.in_channels, block.hidden_channels, block.out_channels, taps


def block_out_hw(block: InvertedResidual, h: int, w: int) -> tuple[int, int]:
    """Output resolution of a block for an (h, w) input."""
    return conv_out_hw(_first_conv(block.depthwise), h, w)


def block_flops_dense(block: InvertedResidual, h: int, w: int) -> int:
    """Dense MACs F_b of the block's three convs for an (h, w) *input* (mask unit excluded)."""
    c_b, c_e, c_o, taps = _block_shape(block)
    ho, wo = block_out_hw(block, h, w)
    expand = h * w * c_b * c_e if block.expand is not None else 0
    return expand + ho * wo * (taps * c_e + c_e * c_o)


def block_flops_sparse(block: InvertedResidual, n_active: Number, n_dilated: Number) -> Number:
    """Sparse MACs F_b,sp for N_b active output and N_dilated active input positions.

    Works on Python numbers and on tensors; with tensors computed from the straight-through hard
    masks the result is differentiable, which is what the sparsity loss needs.
    """
    c_b, c_e, c_o, taps = _block_shape(block)
    expand = n_dilated * (c_b * c_e) if block.expand is not None else 0.0
    return expand + n_active * (taps * c_e + c_e * c_o)


def mask_unit_macs(block: InvertedResidual, h: int, w: int) -> int:
    """MACs of the block's mask unit (0 for ungated blocks) for an (h, w) input."""
    if block.mask_unit is None:
        return 0
    return conv_macs(block.mask_unit.conv, h, w)[0]


def _convs_in(module: nn.Module | None, h: int, w: int) -> list[tuple[nn.Conv2d, int, int]]:
    """Every Conv2d of ``module`` (in registration order), all reading an (h, w) input: true of
    the stride-1 stacks it is used on (refine convs, separable convs, head 1×1 convs)."""
    if module is None:
        return []
    return [(m, h, w) for m in module.modules() if isinstance(m, nn.Conv2d)]


def _walk_convs(net: nn.Module, input_hw: tuple[int, int],
                with_movenet: bool = False) -> list[tuple[nn.Conv2d, int, int]]:
    """Every Conv2d that ``net.forward`` runs, with the (h, w) of its input, from shapes alone;
    MoveNet's heads too when ``with_movenet`` (what ``forward(x, with_movenet=True)`` runs)."""
    backbone, neck, head = net.backbone, net.neck, net.head  # type: ignore[union-attr]
    items: list[tuple[nn.Conv2d, int, int]] = []
    h, w = input_hw
    stem_conv = _first_conv(backbone.stem)
    items.append((stem_conv, h, w))
    h, w = conv_out_hw(stem_conv, h, w)
    out_hw: list[tuple[int, int]] = []
    for block in backbone.blocks:
        if block.mask_unit is not None:
            items.append((block.mask_unit.conv, h, w))
        if block.expand is not None:
            items.append((_first_conv(block.expand), h, w))
        items.append((_first_conv(block.depthwise), h, w))
        ho, wo = block_out_hw(block, h, w)
        items.append((_first_conv(block.project), ho, wo))
        h, w = ho, wo
        out_hw.append((h, w))
    if backbone.last is not None:
        items.append((_first_conv(backbone.last), h, w))
    if isinstance(neck, MoveNetFPN):
        top, laterals = neck.top, neck.laterals
    else:
        top, laterals = _first_conv(neck.reduce), neck.skips
    items.append((top, h, w))
    tap_hw = [out_hw[backbone.tap_after[s]] for s in backbone.skip_strides]
    for lateral, refine, (sh, sw) in zip(laterals, neck.refine, tap_hw, strict=True):
        items.append((_first_conv(lateral), sh, sw))
        items.extend(_convs_in(refine, sh, sw))
        h, w = sh, sw
    items.extend(_convs_in(getattr(net, "head_pre", None), h, w))
    items.extend(_convs_in(head, h, w))
    if with_movenet:
        items.extend(_convs_in(getattr(net, "movenet", None), h, w))
    return items


def conv_macs_by_name(net: nn.Module, input_hw: tuple[int, int],
                      with_movenet: bool = False) -> dict[str, int]:
    """Dense MACs of every conv of ``net`` (mask units included), keyed by module name, batch 1.

    MoveNet's heads (``net.movenet``) only with ``with_movenet``: the runtime network never runs
    them."""
    names = {id(m): n for n, m in net.named_modules()}
    return {names[id(conv)]: conv_macs(conv, h, w)[0]
            for conv, h, w in _walk_convs(net, input_hw, with_movenet)}


@dataclass
class BlockFlops:
    """MACs of one backbone block, per image (averaged over the batch).

    ``executed_macs`` follows the seed formula (the mask unit is reported apart in
    ``mask_unit_macs``); ``density`` = executed / dense (1.0 for ungated blocks).
    """

    index: int
    gated: bool
    stride: int
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    dense_macs: float
    executed_macs: float
    mask_unit_macs: float
    density: float


@dataclass
class FlopsReport:
    """Where the multiply-adds of a forward pass went (per image, MACs).

    Attributes:
        blocks: per-block numbers.
        stem_macs, neck_macs, head_macs: dense costs of the ungated parts (``head_macs``
            includes the head's separable pre-conv ``head_pre`` when there is one).
        mask_unit_macs: total mask-unit overhead (executed side only).
        gated_density: ΣF_sp / ΣF over the gated blocks (what the sparsity loss targets at θ).
        backbone_dense_macs: stem + all blocks + ``backbone_last_macs``, dense, no mask units
            (the dense model).
        backbone_executed_macs: stem + ungated blocks dense + gated blocks sparse + the last
            1×1 conv + mask units.
        backbone_fraction: executed / dense for the backbone.
        network_dense_macs / network_executed_macs / network_fraction: the same with neck and
            head added. With head gating (``NetworkConfig.head_gating``) the executed side counts
            the heads and the neck's last (stride-4 pointwise) conv only inside the head region,
            as the compiled runtime runs them; otherwise they count dense on both sides. MoveNet's
            FPN neck and its head (``head_pre`` included) run dense in every runtime so far
            (ONNX Runtime or PyTorch), so there head gating changes outputs, not MACs.
        head_region_fraction: share of the stride-4 map inside the head region (1.0 ungated).
        backbone_last_macs: the backbone's last 1×1 conv (MoveNet's to 1280; 0 without).
        movenet_head_macs: MoveNet's four heads when the network keeps them, *not* included in
            any total above (no runtime runs them; training's teacher pass does).
    """

    blocks: list[BlockFlops]
    stem_macs: float
    neck_macs: float
    head_macs: float
    mask_unit_macs: float
    gated_density: float
    backbone_dense_macs: float
    backbone_executed_macs: float
    backbone_fraction: float
    network_dense_macs: float
    network_executed_macs: float
    network_fraction: float
    head_region_fraction: float = 1.0
    backbone_last_macs: float = 0.0
    movenet_head_macs: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _module_macs(by_name: dict[str, int], prefix: str) -> int:
    return sum(v for k, v in by_name.items() if k.startswith(prefix + "."))


@torch.no_grad()
def flops_report(
    net: nn.Module, output: Any, input_hw: tuple[int, int] | None = None
) -> FlopsReport:
    """Account the MACs a forward pass of ``net`` executed, from its ``PoseOutput``.

    Args:
        net: the PoseNetwork that produced ``output``.
        output: its PoseOutput (``masks`` aligned with ``net.backbone.blocks``).
        input_hw: input (H, W); default: 4 × the heatmap size (exact for multiples of the
            output stride).
    """
    blocks = list(net.backbone.blocks)  # type: ignore[union-attr]
    masks = output.masks
    if len(masks) != len(blocks):
        raise ValueError(f"output has {len(masks)} masks for {len(blocks)} blocks")
    if input_hw is None:
        hh, hw = output.heatmaps.shape[-2:]
        input_hw = (4 * int(hh), 4 * int(hw))
    by_name = conv_macs_by_name(net, input_hw, with_movenet=True)
    movenet_macs = float(_module_macs(by_name, "movenet"))
    stem_macs = _module_macs(by_name, "backbone.stem")
    h, w = conv_out_hw(_first_conv(net.backbone.stem), *input_hw)  # type: ignore[union-attr]

    rows: list[BlockFlops] = []
    gated_dense = gated_sparse = 0.0
    for i, (block, mask) in enumerate(zip(blocks, masks, strict=True)):
        ho, wo = block_out_hw(block, h, w)
        dense = float(block_flops_dense(block, h, w))
        mu = float(mask_unit_macs(block, h, w))
        if mask is None:
            executed = dense
        else:
            if mask.hard.shape[-2:] != (ho, wo) or mask.dilated.shape[-2:] != (h, w):
                raise ValueError(
                    f"block {i}: mask sizes {tuple(mask.hard.shape[-2:])}/"
                    f"{tuple(mask.dilated.shape[-2:])} do not match the input size {input_hw}"
                )
            b = mask.hard.shape[0]
            n_active = float((mask.hard.detach() > 0.5).sum()) / b
            n_dilated = float((mask.dilated.detach() > 0.5).sum()) / b
            executed = float(block_flops_sparse(block, n_active, n_dilated))
            gated_dense += dense
            gated_sparse += executed
        rows.append(
            BlockFlops(
                index=i,
                gated=mask is not None,
                stride=block.stride,
                in_hw=(h, w),
                out_hw=(ho, wo),
                dense_macs=dense,
                executed_macs=executed,
                mask_unit_macs=mu if mask is not None else 0.0,
                density=executed / dense if dense > 0 else 1.0,
            )
        )
        h, w = ho, wo

    mask_total = sum(r.mask_unit_macs for r in rows)
    neck_macs = float(_module_macs(by_name, "neck"))
    head_macs = float(_module_macs(by_name, "head") + _module_macs(by_name, "head_pre"))
    # The backbone ends with MoveNet's 1×1 conv to 1280 where there is one (always dense).
    last_macs = float(_module_macs(by_name, "backbone.last"))
    bb_dense = stem_macs + sum(r.dense_macs for r in rows) + last_macs
    bb_exec = stem_macs + sum(r.executed_macs for r in rows) + last_macs + mask_total
    net_dense = bb_dense + neck_macs + head_macs
    region_fraction = 1.0
    gate = net.head_gate(masks) if hasattr(net, "head_gate") else None  # type: ignore[operator]
    if gate is not None:
        region = head_region(gate, tuple(output.heatmaps.shape[-2:]))
        region_fraction = float(region.mean())
    last_pw = float(_module_macs(by_name, f"neck.refine.{len(net.neck.refine) - 1}.1"))  # type: ignore[union-attr,arg-type]
    gated_part = (head_macs + last_pw) * (1.0 - region_fraction)
    net_exec = bb_exec + neck_macs + head_macs - gated_part
    return FlopsReport(
        blocks=rows,
        stem_macs=float(stem_macs),
        neck_macs=neck_macs,
        head_macs=head_macs,
        mask_unit_macs=mask_total,
        gated_density=gated_sparse / gated_dense if gated_dense > 0 else 1.0,
        backbone_dense_macs=bb_dense,
        backbone_executed_macs=bb_exec,
        backbone_fraction=bb_exec / bb_dense,
        network_dense_macs=net_dense,
        network_executed_macs=net_exec,
        network_fraction=net_exec / net_dense,
        head_region_fraction=region_fraction,
        backbone_last_macs=last_macs,
        movenet_head_macs=movenet_macs,
    )
