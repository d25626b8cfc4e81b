"""FLOPs accounting: hand-computed blocks, analytic count vs forward hooks, report fractions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparse_pose_ros.model.blocks import InvertedResidual
from sparse_pose_ros.model.flops import (
    block_flops_dense,
    block_flops_sparse,
    conv_macs_by_name,
    flops_report,
)
from sparse_pose_ros.model.network import NetworkConfig, PoseNetwork, movenet_config


def test_residual_block_by_hand() -> None:
    # MobileNetV2 stage-2 block: C_b = 24, t = 6 -> C_e = 144, 64×64, stride 1.
    block = InvertedResidual(24, 24, 1, 6)
    # F_b = H·W·(9·C_e + 2·C_b·C_e) = 4096·(1296 + 6912) = 4096·8208
    assert block_flops_dense(block, 64, 64) == 33_619_968
    # F_sp = N_dil·C_b·C_e + N_b·(9·C_e + C_e·C_b) = 200·3456 + 100·(1296 + 3456)
    assert block_flops_sparse(block, 100, 200) == 691_200 + 475_200
    # all positions active: sparse == dense
    assert block_flops_sparse(block, 4096, 4096) == 33_619_968


def test_stride2_and_expand1_blocks_by_hand() -> None:
    # Stride 2, 16 -> 24, t = 6 (C_e = 96), 8×8 input -> 4×4 output:
    # expand at the input: 64·16·96 = 98 304; depthwise + project at the output:
    # 16·(9·96 + 96·24) = 16·3168 = 50 688.
    s2 = InvertedResidual(16, 24, 2, 6)
    assert block_flops_dense(s2, 8, 8) == 98_304 + 50_688
    assert block_flops_sparse(s2, 3, 20) == 20 * 16 * 96 + 3 * 3168
    # t = 1, 32 -> 16 at 8×8: no expand conv, C_e = 32: 64·(9·32 + 32·16) = 64·800.
    t1 = InvertedResidual(32, 16, 1, 1)
    assert t1.expand is None
    assert block_flops_dense(t1, 8, 8) == 51_200
    assert block_flops_sparse(t1, 10, 50) == 8_000  # the dilated count costs nothing


def test_sparse_flops_is_differentiable() -> None:
    block = InvertedResidual(8, 8, 1, 2)
    n = torch.tensor(5.0, requires_grad=True)
    block_flops_sparse(block, n, n * 2).backward()
    assert n.grad.item() == pytest.approx(2 * 8 * 16 + (9 * 16 + 16 * 8))


def _hook_count(net: nn.Module, x: torch.Tensor) -> dict[str, int]:
    counts: dict[str, int] = {}
    handles = []
    for name, m in net.named_modules():
        if isinstance(m, nn.Conv2d):
            def hook(mod: nn.Conv2d, _inp, out, name: str = name) -> None:
                kh, kw = mod.kernel_size
                per_out = (mod.in_channels // mod.groups) * kh * kw
                counts[name] = out[0].numel() * per_out  # batch element 0
            handles.append(m.register_forward_hook(hook))
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    return counts


@pytest.mark.parametrize(
    ("cfg", "hw"),
    [
        (NetworkConfig(input_size=64, width_mult=0.35), (64, 64)),
        (NetworkConfig(input_size=64, width_mult=0.5, gate_strided=True), (64, 96)),
        (NetworkConfig(input_size=64, width_mult=0.35, depth_mode="volumetric", depth_bins=8,
                       gated=False), (48, 64)),
        # MoveNet's architecture: TF 'SAME' stride-2 convs, stride 32, 1×1 to 1280, FPN neck,
        # separable head pre-conv (MoveNet's own heads do not run in forward: not counted).
        (movenet_config("lightning", input_size=64), (64, 96)),
        (movenet_config("thunder", input_size=64, gate_strided=True), (64, 64)),
    ],
)
def test_analytic_count_matches_forward_hooks(cfg: NetworkConfig, hw: tuple[int, int]) -> None:
    net = PoseNetwork(cfg).eval()
    hooked = _hook_count(net, torch.randn(2, 3, *hw))
    analytic = conv_macs_by_name(net, hw)
    assert analytic == hooked  # same conv modules, same MACs each


@pytest.mark.parametrize("cfg", [NetworkConfig(input_size=64, width_mult=0.35),
                                 movenet_config("lightning", input_size=64)],
                         ids=["stride16", "movenet"])
def test_report_full_and_empty_masks(cfg: NetworkConfig) -> None:
    net = PoseNetwork(cfg).eval()
    x = torch.randn(1, 3, 64, 64)
    by_name = conv_macs_by_name(net, (64, 64))
    mask_units = sum(v for k, v in by_name.items() if "mask_unit" in k)
    dense_total = sum(v for k, v in by_name.items() if "mask_unit" not in k)
    gated = net.gated_blocks()

    def run(fill: float):
        h = 32  # stem output
        for block in net.backbone.blocks:
            ho = (h - 1) // block.stride + 1
            block.fixed_mask = torch.full((1, 1, ho, ho), fill) if block.gated else None
            h = ho
        with torch.no_grad():
            return flops_report(net, net(x))

    full = run(1.0)
    assert full.network_dense_macs > full.backbone_dense_macs
    assert full.gated_density == pytest.approx(1.0)
    assert all(b.density == pytest.approx(1.0) for b in full.blocks)
    assert full.network_dense_macs == dense_total
    assert full.mask_unit_macs == mask_units
    assert full.network_executed_macs == dense_total + mask_units
    assert full.network_fraction == pytest.approx(1.0 + mask_units / dense_total)

    empty = run(0.0)
    assert empty.gated_density == 0.0
    gated_dense = sum(b.dense_macs for b in empty.blocks if b.gated)
    assert len([b for b in empty.blocks if b.gated]) == len(gated) > 0
    assert empty.backbone_executed_macs == pytest.approx(
        empty.backbone_dense_macs - gated_dense + mask_units
    )
    assert empty.network_executed_macs - empty.backbone_executed_macs == pytest.approx(
        empty.neck_macs + empty.head_macs
    )
    assert 0.0 < empty.backbone_fraction < 1.0
    assert set(empty.to_dict()) >= {"blocks", "backbone_fraction", "network_fraction"}
