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


def check_compiled_at(threads, block, x, mask, mode):
    """``check`` on the compiled kernel with torch (and so the kernel) at ``threads``."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return check(block, x, mask, ("cpp", "exact"), mode=mode)[0]
    finally:
        torch.set_num_threads(before)


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
def test_band_groups_at_any_thread_count(threads, stride, mode, block_factory, monkeypatch):
    """Compiled kernel: the per-frame band groups (bounds placed by each image's work, one
    group a thread, consecutive bands of a group reuse their halo rows) at 1-5 threads. Batch 3
    with a different mask per image, so every image gets its own bounds: a blob, all the work in
    one row (the other groups empty), an empty image; odd sizes; more groups than busy rows.
    Bands cut by rows (the channel split, default on several threads, turned off)."""
    from sparse_pose_ros.sparse import cpu_kernel

    if load_cpu_kernel() is None:
        pytest.skip("no C++ compiler: compiled CPU kernel cannot be built here")
    monkeypatch.setattr(cpu_kernel, "CHANNEL_SPLIT_MIN_WEIGHT_BYTES", 1 << 62)
    block = block_factory(8, 8 if stride == 1 else 12, stride, seed=threads)
    h, w = 23, 13
    ho, wo = out_hw(h, w, stride)
    x = torch.randn(3, 8, h, w)
    m = torch.zeros(3, 1, ho, wo)
    m[0] = blob_mask(1, ho, wo, 0.3)[0]
    m[1, 0, ho - 2, 1:] = 1  # one busy row next to the bottom border
    runner = check_compiled_at(threads, block, x, m, mode)
    assert runner.counts[0] == int(m.sum())
    assert runner.cpu is not None and runner.cpu.channel_slices == 1


@pytest.mark.parametrize("threads", [2, 3, 5])
@pytest.mark.parametrize(("c_in", "c_out", "stride", "relu"),
                         [(7, 7, 1, True), (7, 12, 2, False), (8, 8, 1, False)])
@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_channel_split_equals_the_row_split(threads, c_in, c_out, stride, relu, mode,
                                            block_factory, monkeypatch):
    """Compiled kernel, bands cut by channels (``cpu_kernel.channel_slices``, the default on
    several threads): each slice expands, convolves and projects its channels on every row and
    the scatter adds the partial project sums. Widths that do not divide into 16-float
    vectors (c_e 42: slices of 16, 16, 10), more threads than vectors, a residual block with
    ReLU, a stride-2 channel change, a skip fill, batch 3 with an empty image, and the dense
    policy (every row computed)."""
    from sparse_pose_ros.sparse import cpu_kernel

    if load_cpu_kernel() is None:
        pytest.skip("no C++ compiler: compiled CPU kernel cannot be built here")
    monkeypatch.setattr(cpu_kernel, "CHANNEL_SPLIT_MIN_WEIGHT_BYTES", 0)
    block = block_factory(c_in, c_out, stride, seed=threads + c_in, relu=relu)
    del block.skip_fill  # built without one: a plain None attribute
    block.register_buffer("skip_fill", torch.randn(c_out) * 0.5)
    h, w = 15, 13
    ho, wo = out_hw(h, w, stride)
    x = torch.randn(3, c_in, h, w)
    m = torch.zeros(3, 1, ho, wo)
    m[0] = blob_mask(1, ho, wo, 0.3)[0]
    m[1, 0, ho - 1, 2:] = 1
    runner = check_compiled_at(threads, block, x, m, mode)
    assert runner.cpu is not None and runner.cpu.channel_slices == threads
    assert runner.counts[0] == int(m.sum())


def test_channel_split_is_chosen_for_blocks_with_an_expand_on_several_threads(block_factory):
    """One slice a thread for every block with an expand conv and weights of at least the
    threshold; rows for one thread, for small weights (MoveNet's blocks 1-3) and for a block
    without an expand conv (its depthwise reads x in place)."""
    from sparse_pose_ros.sparse.cpu_kernel import CHANNEL_SPLIT_MIN_WEIGHT_BYTES, channel_slices
    from sparse_pose_ros.sparse.folding import fold_block

    heavy = fold_block(block_factory(280, 280, 1, seed=0))
    assert channel_slices(heavy, 2) == 2 and channel_slices(heavy, 3) == 3
    assert channel_slices(heavy, 1) == 1
    mid = fold_block(block_factory(64, 64, 1, seed=0))  # 384 wide: 196 KB
    assert 4 * 384 * 128 >= CHANNEL_SPLIT_MIN_WEIGHT_BYTES and channel_slices(mid, 2) == 2
    assert channel_slices(fold_block(block_factory(42, 42, 1, seed=0)), 2) == 1  # 85 KB
    assert channel_slices(fold_block(block_factory(8, 8, 1, 1, seed=0)), 2) == 1


# ---- TF 'SAME' padding (MoveNet): a stride-2 depthwise pads 0 before and 1 after on even sizes


def border_masks(batch: int, ho: int, wo: int) -> torch.Tensor:
    """Masks touching every border: image 0 the four corners, image 1 the top row and the left
    column, image 2 the bottom row and the right column (the rows / columns whose windows hit
    the asymmetric pad), image 3 everything but the first and last rows and columns."""
    m = torch.zeros(batch, 1, ho, wo)
    m[0, 0, 0, 0] = m[0, 0, 0, -1] = m[0, 0, -1, 0] = m[0, 0, -1, -1] = 1
    m[1, 0, 0, :] = m[1, 0, :, 0] = 1
    m[2, 0, -1, :] = m[2, 0, :, -1] = 1
    m[3, 0, 1:-1, 1:-1] = 1
    return m


@pytest.mark.parametrize("hw", [(12, 10), (16, 16), (11, 9)])
@pytest.mark.parametrize("case", ["borders", "random", "full"])
def test_tf_same_stride2(hw, case, runner_kind, block_factory):
    """Even sizes take the pad-before-0 path (odd ones are symmetric under TF 'SAME' too)."""
    block = block_factory(8, 12, 2, padding="tf_same", seed=3)
    h, w = hw
    pad = block.depthwise_pad_before(torch.zeros(1, 8, h, w))
    assert pad == (0 if h % 2 == 0 else 1, 0 if w % 2 == 0 else 1)
    x = torch.randn(4, 8, h, w)
    ho, wo = out_hw(h, w, 2)
    if case == "borders":
        m = border_masks(4, ho, wo)
    elif case == "random":
        m = (torch.rand(4, 1, ho, wo, generator=torch.Generator().manual_seed(5)) < 0.3).float()
    else:
        m = torch.ones(4, 1, ho, wo)
    runner, _ = check(block, x, m, runner_kind)
    assert runner.counts[0] == int(m.sum())


@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_tf_same_mixed_parity(mode, runner_kind, block_factory):
    """Even height, odd width: pad before 0 on rows and 1 on columns (``receptive_mask`` takes
    the pads per axis), and the model's own masked block agrees with the kernel."""
    from sparse_pose_ros.model.masks import receptive_mask

    block = block_factory(8, 12, 2, padding="tf_same", seed=4)
    x = torch.randn(4, 8, 10, 9)
    hard = border_masks(4, 5, 5)
    block.fixed_mask = hard
    with torch.no_grad():  # masked dense without any dilated set: F(X) * G
        ref = block.project(block.depthwise(block.expand(x))) * hard
    got, mask = BlockRunner(block, kernel=runner_kind[0], sync=runner_kind[1], mode=mode)(x)
    assert (got - ref).abs().max().item() <= TOL
    assert torch.equal(mask.dilated, receptive_mask(hard, 2, (10, 9), (0, 1)))
    with torch.no_grad():
        model_out, model_mask = block(x)
    assert torch.equal(model_mask.dilated, mask.dilated)
    assert (model_out - ref).abs().max().item() <= TOL
    # rows pad 0 (input row 2i..2i+2), columns pad 1 (2j-1..2j+1): output (0, 0) reads 3 x 2
    one = torch.zeros(1, 1, 5, 5)
    one[0, 0, 0, 0] = 1
    assert receptive_mask(one, 2, (10, 9), (0, 1))[0, 0, :4, :3].tolist() == [
        [1, 1, 0], [1, 1, 0], [1, 1, 0], [0, 0, 0]]


def test_tf_same_learned_mask(runner_kind, block_factory):
    block = block_factory(8, 16, 2, padding="tf_same")
    block.mask_unit.conv.weight.data.normal_(0, 0.5)
    block.mask_unit.conv.bias.data.zero_()
    x = torch.randn(2, 8, 14, 12)
    ref = reference(block, x)
    got, mask = BlockRunner(block, kernel=runner_kind[0], sync=runner_kind[1])(x)
    assert 0.05 < block.compute_mask(x).hard.mean().item() < 0.95
    assert (got - ref).abs().max().item() <= TOL
    assert torch.equal(mask.dilated, block.compute_mask(x).dilated)


def test_padding_regression_kernel_is_not_symmetric(runner_kind, block_factory):
    """The trap of PRETRAINED.md: the same weights under symmetric padding give visibly different
    outputs on even sizes, and the kernel must give the TF 'SAME' ones, at the borders too."""
    tf = block_factory(8, 12, 2, padding="tf_same", seed=7)
    sym = block_factory(8, 12, 2, padding="symmetric", seed=7)
    sym.load_state_dict(tf.state_dict())
    x = torch.randn(4, 8, 16, 16)
    m = border_masks(4, 8, 8)
    tf.fixed_mask = sym.fixed_mask = m
    want, wrong = reference(tf, x), reference(sym, x)
    got, _ = BlockRunner(tf, kernel=runner_kind[0], sync=runner_kind[1])(x)
    assert (got - want).abs().max().item() <= TOL
    assert (wrong - want).abs().max().item() > 100 * TOL  # the test can tell the two apart
    assert (got - wrong).abs().max().item() > 100 * TOL


def test_compiled_kernel_rejects_bad_pads(block_factory):
    """Stride 1 is always pad 1; at stride 2 only 0 or 1 before."""
    kernel = load_cpu_kernel()
    if kernel is None:
        pytest.skip("no C++ compiler: compiled CPU kernel cannot be built here")
    from sparse_pose_ros.sparse import cpu_kernel

    block = block_factory(8, 8, 1)
    runner = BlockRunner(block, kernel="cpp")
    runner(torch.randn(1, 8, 8, 8))
    args = list(cpu_kernel.block_args(block, runner.folded, runner.x_buf, runner.x_buf, 1, (8, 8),
                                      runner.cpu, 2.0))
    args[6] = 0  # pad_top 0 at stride 1
    with pytest.raises(RuntimeError, match="pad before"):
        kernel.run_block(*args)
