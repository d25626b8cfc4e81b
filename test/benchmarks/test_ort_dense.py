"""The dense ONNX Runtime bar builds every architecture: the stride-16 network and MoveNet's
(stride 32, ``backbone.last``, FPN neck, separable head pre-conv), equal to the network's own
forward in PyTorch and in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparse_pose_ros.benchmarks.masks import set_blob_masks
from sparse_pose_ros.benchmarks.ort_dense import (
    DenseBackbone,
    DenseNetwork,
    export_onnx,
    ort_runner,
)
from sparse_pose_ros.export.random_model import random_movenet_network, random_network
from sparse_pose_ros.model.flops import flops_report
from sparse_pose_ros.model.network import PoseNetwork


def _nets() -> list[PoseNetwork]:
    return [random_network(gated=False, input_size=64, seed=1),
            random_movenet_network("lightning", gated=False, input_size=64, seed=2),
            random_movenet_network("thunder", gated=False, input_size=64, seed=3)]  # fmt: skip


@pytest.mark.parametrize("net", _nets(), ids=["s16", "lightning", "thunder"])
def test_dense_bar_equals_the_network(net: PoseNetwork) -> None:
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    whole = DenseNetwork(net).eval()
    with torch.no_grad():
        want = net(x)
        heatmaps, _triplets, joints = whole(x)
        feats = DenseBackbone(net.backbone).eval()(x)
    stride = net.cfg.output_stride
    channels = net.cfg.last_channels or net.backbone.blocks[-1].out_channels
    assert feats.shape == (1, channels, 64 // stride, 64 // stride)
    torch.testing.assert_close(heatmaps, want.heatmaps, rtol=0, atol=1e-6)
    torch.testing.assert_close(joints, want.joints, rtol=0, atol=1e-6)
    got = ort_runner(export_onnx(whole, x), 1, x)()
    np.testing.assert_allclose(got[0], want.heatmaps.numpy(), atol=1e-4 * max(
        1.0, float(want.heatmaps.abs().max())))
    np.testing.assert_allclose(got[2], want.joints.numpy(), atol=1e-4)


def test_movenet_mac_fractions_follow_blob_masks() -> None:
    """What the sparse-cpu benchmark records per density for MoveNet (its ``mac_fraction``):
    all on is the dense count plus the mask units, no mask leaves stem + ungated blocks + the
    1×1 to 1280 + mask units."""
    net = random_movenet_network("lightning", input_size=64, seed=4, gate_strided=True)
    x = torch.randn(1, 3, 64, 64)
    fractions = []
    for density in (0.0, 1.0):
        set_blob_masks(net.backbone, 1, (64, 64), density)
        with torch.no_grad():
            rep = flops_report(net, net(x), (64, 64))
        fractions.append(rep.backbone_fraction)
    full_mask_units = rep.mask_unit_macs / rep.backbone_dense_macs
    assert fractions[1] == pytest.approx(1.0 + full_mask_units)
    floor = (rep.stem_macs + rep.backbone_last_macs + rep.mask_unit_macs) / rep.backbone_dense_macs
    assert fractions[0] == pytest.approx(floor)
    assert rep.movenet_head_macs > 0
    assert rep.network_dense_macs == pytest.approx(
        rep.backbone_dense_macs + rep.neck_macs + rep.head_macs)
