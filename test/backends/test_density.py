"""Numpy density accounting equals model.flops and the torch receptive mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparse_pose_ros.export.random_model import random_movenet_network, random_network
from sparse_pose_ros.model.flops import flops_report
from sparse_pose_ros.model.masks import receptive_mask
from sparse_pose_ros.runtime.geometry import NetworkGeometry, network_geometry, receptive_mask_np


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("in_hw", [(8, 8), (7, 9)])
def test_receptive_mask_matches_torch(stride: int, in_hw: tuple[int, int]) -> None:
    rng = np.random.default_rng(stride * 100 + in_hw[1])
    ho, wo = ((in_hw[0] - 1) // stride + 1, (in_hw[1] - 1) // stride + 1)
    hard = (rng.random((ho, wo)) < 0.3).astype(np.float32)
    hard[0, -1] = 1.0  # a border position
    ref = receptive_mask(torch.from_numpy(hard)[None, None], stride, in_hw)[0, 0].numpy()
    np.testing.assert_array_equal(receptive_mask_np(hard, stride, in_hw), ref > 0)


def test_receptive_mask_rejects_bad_stride() -> None:
    with pytest.raises(ValueError, match="stride"):
        receptive_mask_np(np.ones((2, 2)), 3, (4, 4))


@pytest.mark.parametrize("gate_strided", [False, True])
def test_density_equals_flops_report(gate_strided: bool) -> None:
    net = random_network(gated=True, input_size=64, seed=3, gate_strided=gate_strided)
    with torch.inference_mode():
        out = net(torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    masks = [m.hard[0, 0].numpy() for m in out.masks if m is not None]
    geo = network_geometry(net, 64)
    density, per_block = geo.density(masks)
    report = flops_report(net, out)
    assert density == pytest.approx(report.backbone_fraction, rel=1e-12)
    assert per_block == pytest.approx([float(m.mean()) for m in masks])
    assert geo.dense_macs() == pytest.approx(report.backbone_dense_macs)
    # the counts a sparse runtime keeps give the same numbers
    counts = []
    for i, m in zip(geo.gated_indices, masks, strict=True):
        b = geo.blocks[i]
        dil = receptive_mask_np(m, b.stride, b.in_hw, b.pad_before)
        counts.append((int(m.sum()), int(dil.sum())))
    from_counts, per_block_counts = geo.density_from_counts(counts)
    assert from_counts == pytest.approx(density, rel=1e-12)
    assert per_block_counts == pytest.approx(per_block, rel=1e-12)
    with pytest.raises(ValueError, match="gated-block counts"):
        geo.density_from_counts(counts[:-1])


def test_dense_network_density_is_one() -> None:
    net = random_network(gated=False, input_size=64)
    geo = network_geometry(net, 64)
    assert geo.gated_indices == ()
    assert geo.density([]) == (1.0, [])


def test_geometry_json_round_trip_and_errors() -> None:
    geo = network_geometry(random_network(gated=True, input_size=64), 64)
    assert NetworkGeometry.from_json(geo.to_json()) == geo
    with pytest.raises(ValueError, match="malformed"):
        NetworkGeometry.from_json('{"input_size": 64}')
    with pytest.raises(ValueError, match="masks"):
        geo.density([])
    with pytest.raises(ValueError, match="shape"):
        geo.density([np.ones((3, 3))] * len(geo.gated_indices))


@pytest.mark.parametrize("variant", ["thunder", "lightning"])
@pytest.mark.parametrize("gate_strided", [False, True], ids=["residual", "strided"])
def test_movenet_density_equals_flops_report(variant: str, gate_strided: bool) -> None:
    """MoveNet's architecture: TF 'SAME' stride-2 depthwise (window starts at 0, not -1), the
    stem's SAME pads, stride-32 blocks and the 1×1 conv to 1280 are all in the numpy twin."""
    net = random_movenet_network(variant, input_size=64, seed=4, gate_strided=gate_strided)
    with torch.inference_mode():
        out = net(torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
    masks = [m.hard[0, 0].numpy() for m in out.masks if m is not None]
    geo = network_geometry(net, 64)
    strided = [b for b in geo.blocks if b.stride == 2]
    assert len(strided) == 4 and all(b.pads == (0, 1, 0, 1) for b in strided)
    assert geo.blocks[-1].out_hw == (2, 2)
    assert geo.last_macs == 2 * 2 * geo.blocks[-1].out_channels * 1280
    assert NetworkGeometry.from_json(geo.to_json()) == geo
    density, _ = geo.density(masks)
    report = flops_report(net, out)
    assert report.backbone_last_macs == geo.last_macs
    assert geo.dense_macs() == pytest.approx(report.backbone_dense_macs)
    assert density == pytest.approx(report.backbone_fraction, rel=1e-12)
    assert 0.0 < density < 1.0
    if gate_strided:  # a symmetric window would dilate different inputs: the count must differ
        k = next(k for k, i in enumerate(geo.gated_indices) if geo.blocks[i].stride == 2)
        block, hard = geo.blocks[geo.gated_indices[k]], masks[k]
        hard[-1, -1] = 1  # the bottom-right corner: where SAME reads one row/col further
        same = receptive_mask_np(hard, 2, block.in_hw, block.pad_before)
        assert not np.array_equal(same, receptive_mask_np(hard, 2, block.in_hw, (1, 1)))


@pytest.mark.parametrize("pad_before", [(0, 0), (0, 1), (1, 0)])
def test_receptive_mask_pad_before_matches_torch(pad_before: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(pad_before))
    for in_hw in ((8, 8), (6, 10)):
        hard = (rng.random((in_hw[0] // 2, in_hw[1] // 2)) < 0.3).astype(np.float32)
        hard[0, 0] = hard[-1, -1] = 1.0  # both corners: the asymmetric pads show there
        ref = receptive_mask(torch.from_numpy(hard)[None, None], 2, in_hw, pad_before=pad_before)
        np.testing.assert_array_equal(receptive_mask_np(hard, 2, in_hw, pad_before),
                                      ref[0, 0].numpy() > 0)
