"""Head gating: the region derived from the last execution mask, and a head whose joints depend
on the region's pixels only (model/heads.py)."""

from __future__ import annotations

import pytest
import torch

from sparse_pose_ros.model.heads import REGION_OFF_LOGIT, HemletsHead, head_region
from sparse_pose_ros.model.network import NetworkConfig, PoseNetwork


def test_region_is_dilated_then_upsampled():
    gate = torch.zeros(2, 1, 4, 4)
    gate[0, 0, 1, 1] = 1.0  # one cell -> its 3x3 neighbourhood, each cell 2x2 at 8x8
    region = head_region(gate, (8, 8))
    want = torch.zeros(8, 8)
    want[0:6, 0:6] = 1.0
    torch.testing.assert_close(region[0, 0], want)
    assert region[1].eq(1).all()  # empty mask -> the whole map


def _head(seed: int) -> HemletsHead:
    """A head with output weights large enough that the maps are far from uniform."""
    torch.manual_seed(seed)
    head = HemletsHead(16).eval()
    for conv in (head.heatmap, head.triplet, head.depth):
        torch.nn.init.normal_(conv.weight, std=0.3)
    return head


def test_full_region_equals_the_ungated_head():
    head = _head(0)
    feats = torch.randn(2, 16, 8, 8)
    plain = head(feats)
    gated = head(feats, torch.ones(2, 1, 8, 8))
    assert len(plain) == 4 and plain[3] is not None  # the depth map comes along
    for a, b in zip(plain, gated, strict=True):
        torch.testing.assert_close(a, b)


def test_joints_depend_only_on_the_region():
    head = _head(1)
    feats = torch.randn(1, 16, 8, 8)
    region = torch.zeros(1, 1, 8, 8)
    region[..., 2:6, 1:5] = 1.0
    heatmaps, triplets, joints, _depth = head(feats, region)
    changed = feats.clone()
    changed[..., 6:, :] = 50.0 * torch.randn_like(changed[..., 6:, :])  # outside only
    _, _, joints2, _ = head(changed, region)
    torch.testing.assert_close(joints, joints2)
    outside = region[0, 0] == 0
    assert (heatmaps[0][:, outside] == REGION_OFF_LOGIT).all()
    assert (triplets[0][:, outside] == 0).all()
    # x, y lie inside the region's box (pixel centres at (i + 0.5) / 8)
    assert ((joints[0, :, 0] > 1 / 8) & (joints[0, :, 0] < 5 / 8)).all()
    assert ((joints[0, :, 1] > 2 / 8) & (joints[0, :, 1] < 6 / 8)).all()
    ungated = head(changed)[2]
    assert not torch.allclose(ungated, joints2, atol=1e-3)


def test_network_switch_and_validation():
    with pytest.raises(ValueError, match="head_gating"):
        NetworkConfig(gated=False, head_gating=True)
    dense = PoseNetwork(NetworkConfig(input_size=64, width_mult=0.5, gated=False))
    with pytest.raises(ValueError, match="gated backbone"):
        dense.set_head_gating(True)
    net = PoseNetwork(NetworkConfig(input_size=64, width_mult=0.5)).eval()
    x = torch.randn(1, 3, 64, 64)
    net.set_head_gating(True)
    assert net.cfg.head_gating and NetworkConfig.from_dict(net.cfg.to_dict()).head_gating
    with torch.no_grad():
        out = net(x)
        gate = net.head_gate(out.masks)
        assert gate is not None and gate.shape[-2:] == out.masks[-1].hard.shape[-2:]
        net.set_head_gating(False)
        assert net.head_gate(out.masks) is None


def test_flops_count_the_gated_head_inside_the_region_only():
    from sparse_pose_ros.benchmarks.masks import set_blob_masks
    from sparse_pose_ros.model.flops import conv_macs_by_name, flops_report

    net = PoseNetwork(NetworkConfig(input_size=128, width_mult=0.5)).eval()
    set_blob_masks(net.backbone, 1, (128, 128), 0.25)
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        plain = flops_report(net, net(x), (128, 128))
        net.set_head_gating(True)
        out = net(x)
        gated = flops_report(net, out, (128, 128))
        region = head_region(net.head_gate(out.masks), (32, 32))
    frac = float(region.mean())
    assert plain.head_region_fraction == 1.0 and 0.0 < frac < 1.0
    assert gated.head_region_fraction == pytest.approx(frac)
    by_name = conv_macs_by_name(net, (128, 128))
    gated_convs = sum(v for k, v in by_name.items()
                      if k.startswith("head.") or k.startswith("neck.refine.1.1."))
    saved = plain.network_executed_macs - gated.network_executed_macs
    assert saved == pytest.approx(gated_convs * (1.0 - frac))
    assert gated.backbone_executed_macs == plain.backbone_executed_macs
