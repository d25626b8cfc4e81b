"""GPU parity of the CUDA kernels (torch extension) with the masked dense block and the mirror.

Skips where no CUDA device + toolkit is present (the reason comes from ``unavailable_reason``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sparse_pose_ros.model.blocks import InvertedResidual
from sparse_pose_ros.sparse import cuda_ext
from sparse_pose_ros.sparse.kernels import reference
from sparse_pose_ros.sparse.kernels.weights import block_weights

_REASON = cuda_ext.unavailable_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=f"CUDA extension: {_REASON}")


def _block(c_in: int, c_out: int, stride: int, t: float) -> InvertedResidual:
    torch.manual_seed(c_in * 31 + c_out + stride)
    block = InvertedResidual(c_in, c_out, stride, t, gated=True)
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
    return block.eval()


@pytest.mark.parametrize("density", [0.0, 0.25, 1.0])
@pytest.mark.parametrize(
    "c_in,c_out,stride,t",
    [(24, 24, 1, 6.0), (24, 32, 2, 6.0), (16, 16, 1, 1.0), (32, 64, 2, 6.0)],
)
def test_kernels_equal_masked_dense_block(
    c_in: int, c_out: int, stride: int, t: float, density: float
) -> None:
    block = _block(c_in, c_out, stride, t)
    hw = (33, 31)
    x = torch.randn(2, c_in, *hw)
    out_hw = (reference.output_extent(hw[0], stride), reference.output_extent(hw[1], stride))
    block.fixed_mask = (torch.rand(2, 1, *out_hw) < density).float()
    with torch.no_grad():
        expected = block.forward_masked(x, block.compute_mask(x))
    weights = block_weights(block)
    got = cuda_ext.sparse_inverted_residual(x.cuda(), block.fixed_mask.cuda(), weights)
    torch.testing.assert_close(got.cpu(), expected, atol=1e-4, rtol=0)
    # fp16 I/O, fp32 accumulation: compare with the fp32 block on the same fp16-rounded input.
    x16 = x.half()
    with torch.no_grad():
        expected16 = block.forward_masked(x16.float(), block.compute_mask(x16.float()))
    got16 = cuda_ext.sparse_inverted_residual(x16.cuda(), block.fixed_mask.cuda(), weights)
    torch.testing.assert_close(got16.float().cpu(), expected16, atol=1e-2, rtol=2e-3)


@pytest.mark.parametrize("stride", [1, 2])
def test_index_lists_equal_reference(stride: int) -> None:
    hw = (65, 47)  # several scan tiles at batch 2
    out_hw = (reference.output_extent(hw[0], stride), reference.output_extent(hw[1], stride))
    mask = (torch.rand(2, 1, *out_hw) < 0.3).float()
    got = cuda_ext.index_lists(mask.cuda(), hw, stride)
    want = reference.index_lists(mask.numpy(), stride, hw)
    assert (got.active_count, got.dilated_count) == (want.active_count, want.dilated_count)
    np.testing.assert_array_equal(
        got.active_idx[: got.active_count], want.active_idx[: want.active_count]
    )
    np.testing.assert_array_equal(
        got.dilated_idx[: got.dilated_count], want.dilated_idx[: want.dilated_count]
    )
    np.testing.assert_array_equal(got.row_map, want.row_map)


@pytest.mark.parametrize("density", [0.25, 1.0])
def test_tf_same_stride2_block_equals_masked_dense(density: float) -> None:
    """MoveNet's padding: a TF 'SAME' stride-2 depthwise on an even input pads 0 before (the
    kernels' pad_before = 0, carried by block_weights)."""
    torch.manual_seed(7)
    block = InvertedResidual(24, 32, 2, 6.0, gated=True, padding="tf_same").eval()
    hw = (32, 30)
    x = torch.randn(2, 24, *hw)
    block.fixed_mask = (torch.rand(2, 1, 16, 15) < density).float()
    with torch.no_grad():
        expected = block.forward_masked(x, block.compute_mask(x))
    weights = block_weights(block, hw)
    assert weights.pad_before == 0
    got = cuda_ext.sparse_inverted_residual(x.cuda(), block.fixed_mask.cuda(), weights)
    torch.testing.assert_close(got.cpu(), expected, atol=1e-4, rtol=0)
    lists = cuda_ext.index_lists(block.fixed_mask.cuda(), hw, 2, pad_before=0)
    want = reference.index_lists(block.fixed_mask.numpy(), 2, hw, pad_before=0)
    assert (lists.active_count, lists.dilated_count) == (want.active_count, want.dilated_count)
