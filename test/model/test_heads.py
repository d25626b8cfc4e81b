"""HEMlets head: shapes for both depth modes, soft-argmax readouts on one-hot inputs."""

from __future__ import annotations

import math

import pytest
import torch

from sparse_pose_ros import skeleton
from sparse_pose_ros.model.heads import (
    HemletsHead,
    expected_xy,
    factorized_soft_argmax,
    volumetric_soft_argmax,
)
from sparse_pose_ros.model.network import NetworkConfig, PoseNetwork

J, P = skeleton.NUM_JOINTS, skeleton.NUM_BONES


def test_volumetric_soft_argmax_of_one_hot_returns_voxel_centre() -> None:
    d, h, w = 4, 3, 5
    vol = torch.zeros(1, 2, d, h, w)
    vol[0, 0, 2, 1, 3] = 1e4  # softmax of this is a one-hot to float precision
    vol[0, 1, 0, 2, 0] = 1e4
    out = volumetric_soft_argmax(vol)
    # x = (3 + 0.5)/5, y = (1 + 0.5)/3, z = (2 + 0.5)/4·2 - 1
    assert out[0, 0].tolist() == pytest.approx([0.7, 0.5, 0.25], abs=1e-6)
    assert out[0, 1].tolist() == pytest.approx([0.1, 2.5 / 3, -0.75], abs=1e-6)


def test_volumetric_uniform_volume_reads_centre() -> None:
    out = volumetric_soft_argmax(torch.zeros(2, 3, 8, 4, 6))
    assert torch.allclose(out, torch.tensor([0.5, 0.5, 0.0]).expand(2, 3, 3), atol=1e-6)


def test_factorized_soft_argmax_of_one_hot() -> None:
    hm = torch.zeros(1, 1, 4, 4)
    hm[0, 0, 3, 1] = 1e4
    depth = torch.zeros(1, 1, 4, 4)
    depth[0, 0, 3, 1] = math.atanh(0.3)
    depth[0, 0, 0, 0] = 5.0  # elsewhere: must not leak into z
    out = factorized_soft_argmax(hm, depth)
    assert out[0, 0].tolist() == pytest.approx([1.5 / 4, 3.5 / 4, 0.3], abs=1e-6)


def test_expected_xy_pixel_centres() -> None:
    prob = torch.zeros(1, 1, 2, 4)
    prob[0, 0, 1, 2] = 1.0
    assert expected_xy(prob)[0, 0].tolist() == pytest.approx([2.5 / 4, 0.75])


@pytest.mark.parametrize("mode", ["factorized", "volumetric"])
def test_head_shapes(mode: str) -> None:
    head = HemletsHead(16, depth_bins=6, depth_mode=mode)
    hm, tr, joints, depth = head(torch.randn(2, 16, 8, 8))
    assert hm.shape == (2, J, 8, 8) and tr.shape == (2, 3 * P, 8, 8)
    if mode == "factorized":  # the location map: per-pixel depth in (-1, 1)
        assert depth is not None and depth.shape == (2, J, 8, 8)
        assert torch.all(depth.abs() < 1)
    else:
        assert depth is None
    assert joints.shape == (2, J, 3)
    assert torch.all(joints[..., :2] > 0) and torch.all(joints[..., :2] < 1)
    assert torch.all(joints[..., 2].abs() < 1)
    expected_depth = J if mode == "factorized" else J * 6
    assert head.depth.out_channels == expected_depth


@pytest.mark.parametrize("mode", ["factorized", "volumetric"])
def test_network_output_shapes(mode: str) -> None:
    cfg = NetworkConfig(input_size=64, width_mult=0.35, depth_mode=mode, depth_bins=8)
    net = PoseNetwork(cfg).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 64, 64))
    assert out.heatmaps.shape == (2, J, 16, 16)
    assert out.triplets.shape == (2, 3 * P, 16, 16)
    assert out.joints.shape == (2, J, 3)
    assert len(out.masks) == len(net.backbone.blocks)
    for block, mask in zip(net.backbone.blocks, out.masks, strict=True):
        assert (mask is None) == (not block.gated)


def test_head_rejects_bad_config() -> None:
    with pytest.raises(ValueError):
        HemletsHead(8, depth_mode="cubic")
    with pytest.raises(ValueError):
        HemletsHead(8, depth_bins=1)
    with pytest.raises(ValueError):
        volumetric_soft_argmax(torch.zeros(1, 2, 3, 4))


def test_peak_readout_ignores_a_second_mode() -> None:
    """Two equal-height blobs far apart: the whole-map soft-argmax lands between them, the
    peak-window readout on the first (the argmax's), and a window covering the map is the
    global readout again."""
    from sparse_pose_ros.model.heads import _soft_argmax_with_depth_map, peak_window

    h = w = 16
    logits = torch.full((1, 1, h, w), -8.0)
    logits[0, 0, 3, 4] = 6.0
    logits[0, 0, 3, 5] = 5.0
    logits[0, 0, 12, 12] = 5.9
    depth = torch.zeros(1, 1, h, w)
    depth[0, 0, 3, 4] = 0.5
    depth[0, 0, 12, 12] = -0.5
    glob = _soft_argmax_with_depth_map(logits, depth)[0, 0]
    local = _soft_argmax_with_depth_map(logits, depth, window=2)[0, 0]
    assert 0.4 < float(glob[0]) < 0.7  # pulled between the blobs
    px = (4 * torch.exp(torch.tensor(1.0)) + 5) / (torch.exp(torch.tensor(1.0)) + 1)
    assert torch.allclose(local[0], (px + 0.5) / w, atol=1e-3)
    assert torch.allclose(local[1], torch.tensor(3.5 / h), atol=1e-3)
    assert float(local[2]) > 0.3  # depth read at the first blob only
    wide = _soft_argmax_with_depth_map(logits, depth, window=h)[0, 0]
    assert torch.allclose(wide, glob, atol=1e-6)
    masked = peak_window(logits, 1)
    assert float(masked[0, 0, 12, 12]) < -1e3 and float(masked[0, 0, 3, 5]) == 5.0


def test_first_max_index_is_argmax_ties_included() -> None:
    """The exported readout's index equals ``argmax`` (first maximum), ties and all."""
    from sparse_pose_ros.model.index_ops import first_max_index

    gen = torch.Generator().manual_seed(0)
    coarse = torch.randint(0, 4, (64, 17, 40), generator=gen).float()  # many ties
    fine = torch.randn(3, 17, 1344, generator=gen)
    for values in (coarse, fine, coarse.half(), fine.bfloat16()):
        got = first_max_index(values)
        assert got.dtype == torch.int64
        assert torch.equal(got, values.float().argmax(dim=-1))
    assert int(first_max_index(torch.tensor([2.0, 5.0, 5.0, 1.0]))) == 1


def test_peak_readout_is_a_network_option() -> None:
    from sparse_pose_ros.model.network import NetworkConfig, PoseNetwork

    net = PoseNetwork(NetworkConfig(input_size=64, readout_window=2, gated=False))
    assert net.head.readout_window == 2
    assert NetworkConfig.from_dict(net.cfg.to_dict()).readout_window == 2
    with pytest.raises(ValueError, match="readout_window"):
        PoseNetwork(NetworkConfig(input_size=64, readout_window=2, depth_mode="volumetric"))
