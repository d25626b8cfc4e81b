"""Gather-scatter block == masked dense reference (InvertedResidual.forward_masked), ≤ 1e-4."""

from __future__ import annotations

import pytest
import torch

from sparse_pose_ros.benchmarks.masks import blob_mask
from sparse_pose_ros.sparse.cpu_kernel import load_cpu_kernel
from sparse_pose_ros.sparse.executor import BlockRunner

TOL = 1e-4


def reference(block, x):
    with torch.no_grad():
        return block.forward_masked(x, block.compute_mask(x))


def check(block, x, mask, kind, mode="sparse"):
    kernel, sync = kind
    block.fixed_mask = mask
    ref = reference(block, x)
    runner = BlockRunner(block, kernel=kernel, sync=sync, mode=mode)
    got, got_mask = runner(x)
    assert got.shape == ref.shape
    assert (got - ref).abs().max().item() <= TOL
    assert torch.equal(got_mask.hard, block.compute_mask(x).hard)
    assert torch.equal(got_mask.dilated, block.compute_mask(x).dilated)
    return runner, ref


def out_hw(h, w, stride):
    return (h - 1) // stride + 1, (w - 1) // stride + 1


# (C_in, C_out, stride, t): residual, stride-2 gated, channel change, t = 1 (no expand conv)
CONFIGS = [(8, 8, 1, 6), (8, 12, 2, 6), (8, 12, 1, 4), (8, 8, 1, 1)]


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("case", ["empty", "full", "single", "corners", "border_row"])
def test_special_masks(cfg, case, runner_kind, block_factory):
    c_in, c_out, stride, t = cfg
    block = block_factory(c_in, c_out, stride, t)
    h, w = 11, 9  # odd sizes
    x = torch.randn(2, c_in, h, w)
    ho, wo = out_hw(h, w, stride)
    m = torch.zeros(2, 1, ho, wo)
    if case == "full":
        m.fill_(1)
    elif case == "single":
        m[0, 0, ho // 2, wo // 2] = 1
    elif case == "corners":
        m[:, 0, 0, 0] = m[:, 0, -1, -1] = m[1, 0, 0, -1] = m[0, 0, -1, 0] = 1
    elif case == "border_row":
        m[1, 0, -1, :] = 1
        m[0, 0, :, 0] = 1
    runner, ref = check(block, x, m, runner_kind)
    assert runner.counts[0] == int(m.sum())
    if case == "empty" and block.use_residual:
        assert torch.equal(ref, x)  # inactive everywhere: X passes through untouched


@pytest.mark.parametrize("density", [0.05, 0.1, 0.25, 0.5, 0.75, 1.0])
@pytest.mark.parametrize("stride", [1, 2])
def test_random_masks(density, stride, runner_kind, block_factory):
    block = block_factory(16, 16 if stride == 1 else 24, stride, seed=int(density * 100) + stride)
    x = torch.randn(3, 16, 17, 14)
    ho, wo = out_hw(17, 14, stride)
    g = torch.Generator().manual_seed(int(density * 1000))
    m = (torch.rand(3, 1, ho, wo, generator=g) < density).float()
    check(block, x, m, runner_kind)


@pytest.mark.parametrize("density", [0.1, 0.5])
def test_blob_masks_and_residual_relu(density, runner_kind, block_factory):
    block = block_factory(12, 12, 1, relu=True)
    x = torch.randn(1, 12, 20, 20)
    check(block, x, blob_mask(1, 20, 20, density), runner_kind)


@pytest.mark.parametrize("stride", [1, 2])
def test_learned_mask(stride, runner_kind, block_factory):
    block = block_factory(8, 8 if stride == 1 else 16, stride)
    block.mask_unit.conv.weight.data.normal_(0, 0.5)
    block.mask_unit.conv.bias.data.zero_()
    x = torch.randn(2, 8, 13, 10)
    block.fixed_mask = None
    ref = reference(block, x)
    got, mask = BlockRunner(block, kernel=runner_kind[0], sync=runner_kind[1])(x)
    density = block.compute_mask(x).hard.mean().item()
    assert 0.05 < density < 0.95  # the test really exercises a partial mask
    assert (got - ref).abs().max().item() <= TOL
    assert torch.allclose(mask.logits, block.mask_unit(x)[2], atol=1e-5)


def test_dense_mode_equals_masked_reference(runner_kind, block_factory):
    """Policy 'dense' on a gated block = dense F, mask applied afterwards: still exact."""
    block = block_factory(8, 8, 1)
    x = torch.randn(1, 8, 15, 15)
    check(block, x, blob_mask(1, 15, 15, 0.3), runner_kind, mode="dense")


def test_rejects_wrong_input(block_factory):
    runner = BlockRunner(block_factory(8, 8, 1))
    with pytest.raises(ValueError, match="expected"):
        runner(torch.randn(1, 7, 8, 8))
    with pytest.raises(ValueError):
        BlockRunner(block_factory(8, 8, 1), kernel="cuda")


@pytest.mark.parametrize("threads", [1, 2, 3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_band_groups_at_any_thread_count(threads, stride, mode, block_factory):
    """Compiled kernel: the per-frame band groups (bounds placed by each image's work, one
    group a thread, consecutive bands of a group reuse their halo rows) at 1-5 threads. Batch 3
    with a different mask per image, so every image gets its own bounds: a blob, all the work in
    one row (the other groups empty), an empty image; odd sizes; more groups than busy rows."""
    if load_cpu_kernel() is None:
        pytest.skip("no C++ compiler: compiled CPU kernel cannot be built here")
    block = block_factory(8, 8 if stride == 1 else 12, stride, seed=threads)
    h, w = 23, 13
    ho, wo = out_hw(h, w, stride)
    x = torch.randn(3, 8, h, w)
    m = torch.zeros(3, 1, ho, wo)
    m[0] = blob_mask(1, ho, wo, 0.3)[0]
    m[1, 0, ho - 2, 1:] = 1  # one busy row next to the bottom border
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        runner, _ = check(block, x, m, ("cpp", "exact"), mode=mode)
    finally:
        torch.set_num_threads(before)
    assert runner.counts[0] == int(m.sum())
