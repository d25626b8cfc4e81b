"""The numpy mirror of the CUDA kernels equals the masked dense PyTorch block.

Runs everywhere (no GPU): it checks the index logic the kernels use (tile compaction, inverse
stride-2 footprint, row-map neighbour lookup, scatter) against ``forward_masked`` with BN folded.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sparse_pose_ros.model.blocks import InvertedResidual
from sparse_pose_ros.model.masks import receptive_mask
from sparse_pose_ros.sparse.kernels import reference
from sparse_pose_ros.sparse.kernels.weights import NO_EXPAND_PLACEHOLDER, block_weights


def _random_block(c_in: int, c_out: int, stride: int, t: float, seed: int) -> InvertedResidual:
    torch.manual_seed(seed)
    block = InvertedResidual(c_in, c_out, stride, t, gated=True)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.2)
    return block.eval()


def _mask(kind: str, batch: int, out_hw: tuple[int, int], seed: int) -> torch.Tensor:
    h, w = out_hw
    if kind == "empty":
        return torch.zeros(batch, 1, h, w)
    if kind == "full":
        return torch.ones(batch, 1, h, w)
    if kind == "border":  # only the outermost ring: every footprint touches the padding
        m = torch.zeros(batch, 1, h, w)
        m[..., 0, :] = 1
        m[..., -1, :] = 1
        m[..., :, 0] = 1
        m[..., :, -1] = 1
        return m
    if kind == "corner":  # one position per image, in opposite corners
        m = torch.zeros(batch, 1, h, w)
        m[0, 0, 0, 0] = 1
        m[-1, 0, -1, -1] = 1
        return m
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 1, h, w, generator=gen) < 0.3).float()


BLOCKS = [
    pytest.param(8, 8, 1, 6.0, id="expand-residual-s1"),
    pytest.param(8, 12, 2, 6.0, id="expand-s2"),
    pytest.param(8, 8, 1, 1.0, id="no-expand-residual-s1"),
    pytest.param(8, 16, 2, 1.0, id="no-expand-s2"),
    pytest.param(8, 12, 1, 4.0, id="expand-s1-no-residual"),
]
MASKS = ["random", "empty", "full", "border", "corner"]
SIZES = [(9, 7), (8, 8)]  # odd sizes exercise the stride-2 crop


@pytest.mark.parametrize("hw", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("mask_kind", MASKS)
@pytest.mark.parametrize("c_in,c_out,stride,t", BLOCKS)
def test_reference_equals_masked_dense_block(
    c_in: int, c_out: int, stride: int, t: float, mask_kind: str, hw: tuple[int, int]
) -> None:
    block = _random_block(c_in, c_out, stride, t, seed=c_in + 3 * c_out + stride)
    batch = 2
    x = torch.randn(batch, c_in, *hw, generator=torch.Generator().manual_seed(7))
    out_hw = (reference.output_extent(hw[0], stride), reference.output_extent(hw[1], stride))
    block.fixed_mask = _mask(mask_kind, batch, out_hw, seed=11)
    with torch.no_grad():
        expected = block.forward_masked(x, block.compute_mask(x)).numpy()
    weights = block_weights(block)
    got = reference.sparse_inverted_residual(x.numpy(), block.fixed_mask.numpy(), weights)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("hw", [(9, 7), (8, 8), (1, 1), (2, 5)], ids=str)
def test_dilated_flags_equal_receptive_mask(stride: int, hw: tuple[int, int]) -> None:
    out_hw = (reference.output_extent(hw[0], stride), reference.output_extent(hw[1], stride))
    gen = torch.Generator().manual_seed(3)
    for density in (0.0, 0.1, 0.5, 1.0):
        mask = (torch.rand(3, 1, *out_hw, generator=gen) < density).float()
        expected = receptive_mask(mask, stride, hw).numpy().reshape(-1).astype(np.int32)
        got = reference.dilated_flags(mask.numpy(), stride, hw)
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("n", [1, 1023, 1024, 1025, 5000])
def test_tile_compaction_is_ordered_and_complete(n: int) -> None:
    rng = np.random.default_rng(n)
    flags = (rng.random(n) < 0.37).astype(np.int32)
    index, count, row_map = reference.compact(flags)
    expected = np.flatnonzero(flags)
    assert count == expected.size
    np.testing.assert_array_equal(index[:count], expected)
    assert (index[count:] == -1).all()  # the tail the kernels never write
    np.testing.assert_array_equal(row_map[expected], np.arange(count))
    assert (row_map[flags == 0] == -1).all()


def test_no_expand_block_uses_placeholder_weights() -> None:
    weights = block_weights(_random_block(8, 8, 1, 1.0, seed=0))
    assert not weights.has_expand and weights.residual
    assert weights.w_expand.shape == NO_EXPAND_PLACEHOLDER.shape
    assert weights.in_channels == weights.hidden_channels == 8
    assert weights.w_dw.shape == (8, 9) and weights.w_proj.shape == (8, 8)


def test_relu_residual_is_rejected() -> None:
    block = InvertedResidual(8, 8, 1, 6.0, gated=True, residual_activation="relu").eval()
    with pytest.raises(ValueError, match="identity residual"):
        block_weights(block)


def test_mask_shape_mismatch_is_a_clear_error() -> None:
    weights = block_weights(_random_block(8, 12, 2, 6.0, seed=0))
    x = np.zeros((1, 8, 9, 7), dtype=np.float32)
    with pytest.raises(ValueError, match="mask must be"):
        reference.sparse_inverted_residual(x, np.zeros((1, 1, 9, 7), np.float32), weights)


# ---- pad before 0: MoveNet's TF 'SAME' stride-2 depthwise (0 before, 1 after on even sizes)


def _tf_same_block(c_in: int, c_out: int, t: float, seed: int) -> InvertedResidual:
    torch.manual_seed(seed)
    block = InvertedResidual(c_in, c_out, 2, t, gated=True, padding="tf_same").eval()
    g = torch.Generator().manual_seed(seed)
    for m in block.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return block


@pytest.mark.parametrize("hw", [(8, 8), (12, 10), (9, 7)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("mask_kind", MASKS)
@pytest.mark.parametrize("t", [6.0, 1.0], ids=["expand", "no-expand"])
def test_reference_tf_same_equals_masked_dense_block(
    hw: tuple[int, int], mask_kind: str, t: float
) -> None:
    """Even sizes give pad_before 0, the odd one 1 (TF 'SAME' is symmetric there)."""
    c = 8
    block = _tf_same_block(c, 12, t, seed=5)
    x = torch.randn(2, c, *hw, generator=torch.Generator().manual_seed(8))
    out_hw = (reference.output_extent(hw[0], 2), reference.output_extent(hw[1], 2))
    block.fixed_mask = _mask(mask_kind, 2, out_hw, seed=12)
    with torch.no_grad():
        expected = block.forward_masked(x, block.compute_mask(x)).numpy()
    weights = block_weights(block, hw)
    assert weights.pad_before == (0 if hw[0] % 2 == 0 else 1)
    got = reference.sparse_inverted_residual(x.numpy(), block.fixed_mask.numpy(), weights)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    if weights.pad_before == 0 and mask_kind in ("border", "corner", "full"):
        # the same weights with pad_before 1 (what symmetric padding would do) are wrong here
        import dataclasses

        wrong = reference.sparse_inverted_residual(
            x.numpy(), block.fixed_mask.numpy(), dataclasses.replace(weights, pad_before=1))
        assert np.abs(wrong - expected).max() > 1e-2


@pytest.mark.parametrize("hw", [(8, 8), (6, 10), (2, 2)], ids=str)
def test_dilated_flags_pad_before_0_equal_receptive_mask(hw: tuple[int, int]) -> None:
    out_hw = (reference.output_extent(hw[0], 2), reference.output_extent(hw[1], 2))
    gen = torch.Generator().manual_seed(4)
    for density in (0.0, 0.1, 0.5, 1.0):
        mask = (torch.rand(3, 1, *out_hw, generator=gen) < density).float()
        expected = receptive_mask(mask, 2, hw, pad_before=0).numpy().reshape(-1).astype(np.int32)
        got = reference.dilated_flags(mask.numpy(), 2, hw, pad_before=0)
        np.testing.assert_array_equal(got, expected)


def test_tf_same_block_weights_need_the_input_size() -> None:
    block = _tf_same_block(8, 12, 6.0, seed=1)
    with pytest.raises(ValueError, match="in_hw"):
        block_weights(block)
    with pytest.raises(ValueError, match="one pad before"):
        block_weights(block, (8, 7))
    bad = dataclasses_replace(block_weights(block, (8, 8)), stride=1)
    with pytest.raises(ValueError, match="pad_before 0 at stride 1"):
        reference.sparse_inverted_residual(np.zeros((1, 8, 8, 8), np.float32),
                                           np.zeros((1, 1, 8, 8), np.float32), bad)


def dataclasses_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)
