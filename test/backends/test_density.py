"""Numpy density accounting equals model.flops and the torch receptive mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparse_pose_ros.backends.density import NetworkGeometry, network_geometry, receptive_mask_np
from sparse_pose_ros.export.random_model import random_network
from sparse_pose_ros.model.flops import flops_report
from sparse_pose_ros.model.masks import receptive_mask


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
