"""Whole-backbone / whole-network executor: parity, host reads per frame, no per-frame growth."""

from __future__ import annotations

import gc
import tracemalloc

import pytest
import torch
from sparse_test_utils import randomise_bn

from sparse_pose_ros.benchmarks.masks import clear_fixed_masks, set_blob_masks
from sparse_pose_ros.model.network import NetworkConfig, PoseNetwork
from sparse_pose_ros.sparse import SparseBackbone, SparsePoseNetwork
from sparse_pose_ros.sparse.cpu_kernel import load_cpu_kernel
from sparse_pose_ros.sparse.ort_head import ort_available

TOL = 1e-4



def small_net(gate_strided: bool, seed: int = 0) -> PoseNetwork:
    torch.manual_seed(seed)
    net = PoseNetwork(NetworkConfig(input_size=64, width_mult=0.5, gate_strided=gate_strided))
    net.eval()
    randomise_bn(net, seed)
    for b in net.gated_blocks():  # partial learned masks
        b.mask_unit.conv.weight.data.normal_(0, 0.3)
        b.mask_unit.conv.bias.data.zero_()
    return net


def executors(net: PoseNetwork):
    yield "torch-exact", SparseBackbone(net.backbone, kernel="torch", sync="exact")
    yield "torch-capacity", SparseBackbone(net.backbone, kernel="torch", sync="capacity")
    policy = {4: "dense", 8: "sparse", 16: "dense"}
    yield "torch-policy", SparseBackbone(net.backbone, policy=policy)
    if load_cpu_kernel() is not None:
        yield "cpp", SparseBackbone(net.backbone, kernel="cpp")
        yield "cpp-policy", SparseBackbone(net.backbone, kernel="cpp", policy={4: "dense"})


@pytest.mark.parametrize("gate_strided", [False, True])
def test_backbone_parity_learned_masks(gate_strided):
    net = small_net(gate_strided)
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        ref_feats, ref_skips, ref_masks = net.backbone(x)
    densities = [m.hard.mean().item() for m in ref_masks if m is not None]
    assert any(0.05 < d < 0.95 for d in densities)
    for name, ex in executors(net):
        feats, skips, masks = ex(x)
        assert (feats - ref_feats).abs().max().item() <= TOL, name
        for a, b in zip(skips, ref_skips, strict=True):
            assert (a - b).abs().max().item() <= TOL, name
        for m, r in zip(masks, ref_masks, strict=True):
            assert (m is None) == (r is None)
            if m is not None:
                assert torch.equal(m.hard, r.hard) and torch.equal(m.dilated, r.dilated), name


@pytest.mark.parametrize("lifter", ["none", "lifter", "lifter+midpoint_torso"])
def test_whole_network_parity(lifter):
    net = small_net(False)
    if lifter != "none":  # the lifter (and the torso map) apply after every head runtime
        from sparse_pose_ros.model.lifter import PoseLifter
        from sparse_pose_ros.training.train_lifter import attach

        torch.manual_seed(1)
        net = attach(net, PoseLifter(16).eval(), 16, lifter.endswith("torso"))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = net(x)
    for kernel in ["torch", "cpp"] if load_cpu_kernel() is not None else ["torch"]:
        out = SparsePoseNetwork(net, kernel=kernel)(x)
        assert (out.joints - ref.joints).abs().max().item() <= TOL, kernel
        assert (out.heatmaps - ref.heatmaps).abs().max().item() <= TOL


def test_capacity_mode_reads_counts_once_per_frame():
    """The sync-free scheme: no per-block host read, one read of all counts per frame."""
    net = small_net(True)
    ex = SparseBackbone(net.backbone, kernel="torch", sync="capacity")
    x = torch.randn(1, 3, 64, 64)
    for _ in range(3):
        ex(x)
        assert ex.host_reads == 1
    exact = SparseBackbone(net.backbone, kernel="torch", sync="exact")
    exact(x)
    assert exact.host_reads == len(net.gated_blocks())  # one per block: the CPU-only shortcut
    assert ex.executed_counts() == exact.executed_counts()


@pytest.mark.parametrize("kernel", ["torch", "cpp"])
def test_no_per_frame_growth(kernel):
    """Buffers are allocated once and reused: same tensors, same storage, no Python growth."""
    if kernel == "cpp" and load_cpu_kernel() is None:
        pytest.skip("no C++ compiler: compiled CPU kernel cannot be built here")
    net = small_net(True)
    ex = SparseBackbone(net.backbone, kernel=kernel)
    frames = [torch.randn(1, 3, 64, 64) for _ in range(4)]
    ex(frames[0])
    ptrs = [t.data_ptr() for t in ex.buffers()]
    assert len(ptrs) > 10
    gc.collect()
    tracemalloc.start()
    ex(frames[1])
    before = tracemalloc.take_snapshot()
    for i in range(60):
        ex(frames[i % 4])
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    growth = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert growth < 64 * 1024, f"python heap grew by {growth} bytes over 60 frames"
    assert [t.data_ptr() for t in ex.buffers()] == ptrs


def test_blob_masks_drive_the_executor():
    net = small_net(False)
    set_blob_masks(net.backbone, 1, (64, 64), 0.25)
    ex = SparseBackbone(net.backbone, kernel="torch")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = net.backbone(x)[0]
    assert (ex(x)[0] - ref).abs().max().item() <= TOL
    counts = [c for c in ex.executed_counts() if c is not None]
    sizes = [m.numel() for m in (b.fixed_mask for b in net.gated_blocks())]
    assert [c[0] for c in counts] == [round(0.25 * s) for s in sizes]
    clear_fixed_masks(net.backbone)
    assert all(b.fixed_mask is None for b in net.backbone.blocks)


def test_validation_errors():
    net = small_net(False)
    with pytest.raises(ValueError, match="kernel"):
        SparseBackbone(net.backbone, kernel="tensorrt")
    with pytest.raises(ValueError, match="strides"):
        SparseBackbone(net.backbone, policy={32: "dense"})
    with pytest.raises(ValueError, match="mode"):
        SparseBackbone(net.backbone, policy={4: "fast"})
    with pytest.raises(ValueError, match="input"):
        SparseBackbone(net.backbone)(torch.randn(1, 4, 32, 32))


# ---- MoveNet's architecture: stride 32, TF 'SAME' stride-2 convs, 1x1 to 1280, FPN neck


def movenet_net(variant: str, gate_strided: bool, size: int = 64, seed: int = 0) -> PoseNetwork:
    """``movenet_config`` at a small input with random weights and BN statistics."""
    from sparse_pose_ros.model.network import movenet_config

    torch.manual_seed(seed)
    net = PoseNetwork(movenet_config(variant, gate_strided=gate_strided, input_size=size)).eval()
    randomise_bn(net, seed)
    for b in net.gated_blocks():
        b.mask_unit.conv.weight.data.normal_(0, 0.3)
        b.mask_unit.conv.bias.data.zero_()
    calibrate_masks(net, torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(9)))
    return net


def calibrate_masks(net: PoseNetwork, x: torch.Tensor) -> None:
    """Set every mask unit's bias so that its logits straddle the threshold on ``x`` (random
    features with random BN put every logit on one side otherwise: all-on / all-off masks)."""

    def centre(block, args):
        with torch.no_grad():
            logits = block.mask_unit.conv(args[0])
            block.mask_unit.conv.bias += block.mask_unit.threshold_logit - logits.median()

    handles = [b.register_forward_pre_hook(centre) for b in net.gated_blocks()]
    try:
        with torch.no_grad():
            net.backbone(x)
    finally:
        for h in handles:
            h.remove()


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| relative to max(1, max |b|)."""
    return (a - b).abs().max().item() / max(1.0, b.abs().max().item())


def border_fixed_masks(backbone, batch: int, hw: tuple[int, int]) -> None:
    """Every gated block gets masks touching every border: image 0 the corners, 1 the top row +
    left column, 2 the bottom row + right column, 3 a random 30 %."""
    g = torch.Generator().manual_seed(0)
    h, w = (hw[0] - 1) // 2 + 1, (hw[1] - 1) // 2 + 1
    for blk in backbone.blocks:
        h, w = (h - 1) // blk.stride + 1, (w - 1) // blk.stride + 1
        if not blk.gated:
            continue
        m = torch.zeros(batch, 1, h, w)
        m[0, 0, 0, 0] = m[0, 0, 0, -1] = m[0, 0, -1, 0] = m[0, 0, -1, -1] = 1
        m[1, 0, 0, :] = m[1, 0, :, 0] = 1
        m[2, 0, -1, :] = m[2, 0, :, -1] = 1
        m[3] = (torch.rand(1, h, w, generator=g) < 0.3).float()
        blk.fixed_mask = m


def assert_backbone_parity(net: PoseNetwork, x: torch.Tensor, name: str, ex) -> None:
    with torch.no_grad():
        ref_feats, ref_skips, ref_masks = net.backbone(x)
    feats, skips, masks = ex(x)
    assert feats.shape == ref_feats.shape and feats.shape[1] == 1280
    assert rel_diff(feats, ref_feats) <= TOL, name
    assert len(skips) == 3
    for a, b in zip(skips, ref_skips, strict=True):
        assert rel_diff(a, b) <= TOL, name
    for m, r in zip(masks, ref_masks, strict=True):
        assert (m is None) == (r is None)
        if m is not None:
            assert torch.equal(m.hard, r.hard) and torch.equal(m.dilated, r.dilated), name


def movenet_executors(net: PoseNetwork):
    yield "torch", SparseBackbone(net.backbone, kernel="torch")
    if load_cpu_kernel() is not None:
        yield "cpp", SparseBackbone(net.backbone, kernel="cpp")
        yield "cpp-2threads", SparseBackbone(net.backbone, kernel="cpp", threads=2)
        yield "cpp-policy", SparseBackbone(net.backbone, kernel="cpp",
                                           policy={4: "dense", 16: 0.5, 32: "dense"})


@pytest.mark.parametrize("variant", ["thunder", "lightning"])
@pytest.mark.parametrize("gate_strided", [False, True])
@pytest.mark.parametrize("size", [64, 80])
def test_movenet_backbone_parity_learned_masks(variant, gate_strided, size):
    """80: the stride-16 features are 5x5, so block 13's depthwise pads symmetrically (odd
    input) while the earlier stride-2 convs pad 0 before: both conventions in one network."""
    net = movenet_net(variant, gate_strided)
    assert net.backbone.stem[0].stride == (2, 2) and net.cfg.padding == "tf_same"
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        densities = [m.hard.mean().item() for m in net.backbone(x)[2] if m is not None]
    assert any(0.05 < d < 0.95 for d in densities)
    for name, ex in movenet_executors(net):
        assert_backbone_parity(net, x, name, ex)


@pytest.mark.parametrize("variant", ["thunder", "lightning"])
@pytest.mark.parametrize("gate_strided", [False, True])
def test_movenet_backbone_parity_border_masks(variant, gate_strided):
    net = movenet_net(variant, gate_strided, seed=1)
    x = torch.randn(4, 3, 96, 96)
    border_fixed_masks(net.backbone, 4, (96, 96))
    for name, ex in movenet_executors(net):
        assert_backbone_parity(net, x, name, ex)


@pytest.mark.parametrize("variant", ["thunder", "lightning"])
def test_movenet_all_ones_masks_equal_the_dense_network(variant):
    """All-ones masks on every gated block (strided ones too) = the ungated network exactly."""
    from sparse_pose_ros.model.network import movenet_config

    net = movenet_net(variant, gate_strided=True, seed=2)
    dense = PoseNetwork(movenet_config(variant, gated=False, input_size=64)).eval()
    missing, unexpected = dense.load_state_dict(net.state_dict(), strict=False)
    assert not missing and all("mask_unit" in k for k in unexpected)
    x = torch.randn(1, 3, 64, 64)
    set_blob_masks(net.backbone, 1, (64, 64), 1.0)
    with torch.no_grad():
        ref = dense(x)
    heads = ["torch", "ort"] if ort_available() else ["torch"]
    kernels = ["torch", "cpp"] if load_cpu_kernel() is not None else ["torch"]
    for kernel in kernels:
        for head in heads:
            out = SparsePoseNetwork(net, kernel=kernel, head=head)(x)
            assert rel_diff(out.joints, ref.joints) <= TOL, (kernel, head)
            assert rel_diff(out.heatmaps, ref.heatmaps) <= TOL, (kernel, head)
            assert rel_diff(out.triplets, ref.triplets) <= TOL, (kernel, head)


@pytest.mark.parametrize("variant", ["thunder", "lightning"])
@pytest.mark.parametrize("head_gating", [False, True])
def test_movenet_whole_network_parity(variant, head_gating):
    """Compiled backbone + MoveNet's FPN, person box and window head: compiled
    (``window_head_plan``, what ``auto`` picks with the compiled kernel), in ONNX Runtime, or
    eager; all equal the network's own forward."""
    net = movenet_net(variant, gate_strided=False, seed=3)
    if head_gating:
        net.set_head_gating(True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = net(x)
    kernels = ["torch", "cpp"] if load_cpu_kernel() is not None else ["torch"]
    for kernel in kernels:
        auto = SparsePoseNetwork(net, kernel=kernel)
        assert auto.head == ("cpp" if kernel == "cpp" else "ort" if ort_available() else "torch")
        heads = ["auto", "torch", *(["ort"] if ort_available() else [])]
        for head in heads:
            out = SparsePoseNetwork(net, kernel=kernel, head=head)(x)
            assert rel_diff(out.joints, ref.joints) <= TOL, (kernel, head)
            assert rel_diff(out.heatmaps, ref.heatmaps) <= TOL, (kernel, head)
    with pytest.raises(ValueError, match="kernel='cpp'"):
        SparsePoseNetwork(net, kernel="torch", head="cpp")


@pytest.mark.parametrize("kernel", ["torch", "cpp"])
def test_locator_masks_drive_the_executor_frame_after_frame(kernel):
    """The locator decides each frame's masks; the compiled path reads them from buffers it
    recorded once, so a new frame's masks must reach it without re-recording."""
    if kernel == "cpp" and load_cpu_kernel() is None:
        pytest.skip("no C++ compiler here: the compiled kernel cannot be built")
    from sparse_pose_ros.model.network import movenet_config

    torch.manual_seed(0)
    net = PoseNetwork(movenet_config("lightning", input_size=64, gate_strided=True,
                                     mask_source="locator", locator_margin=0)).eval()
    randomise_bn(net, 0)
    loc = net.backbone.locator
    for m in loc.modules():  # random BN statistics make its output ignore the image
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.reset_parameters()
    loc.classify.weight.data.normal_(0, 1.0)
    ex = SparseBackbone(net.backbone, kernel=kernel)
    seen = set()
    for seed in range(4):
        x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            raw = loc(x) - loc.offset
            loc.offset.fill_(-float(raw.flatten().quantile(0.7)))
            ref_feats, ref_skips, ref_masks = net.backbone(x)
        feats, skips, masks = ex(x)
        assert (feats - ref_feats).abs().max().item() <= TOL
        for a, b in zip(skips, ref_skips, strict=True):
            assert (a - b).abs().max().item() <= TOL
        for m, r in zip(masks, ref_masks, strict=True):
            assert torch.equal(m.hard, r.hard)
        seen.add(tuple(ref_masks[0].hard.flatten().tolist()))
        assert ex.locator_time > 0
    assert len(seen) > 1  # the frames really had different masks
    if kernel == "cpp":
        # the mask units' threshold is not used with given masks: moving it (the latency
        # budget does, every frame) must not re-record the sequence
        recorded = ex._seq
        for t in (0.3, 0.7):
            for b in net.gated_blocks():
                assert b.mask_unit is not None
                b.mask_unit.set_threshold(t)
            ex(x)
            assert ex._seq is recorded


@pytest.mark.parametrize("kernel", ["torch", "cpp"])
def test_region_cells_override_the_masks_and_switch_back(kernel):
    """A caller's region (the previous frame's person) decides every gated block's mask for
    that frame; without one the learned mask units decide again (the recorded sequence must
    follow both switches)."""
    if kernel == "cpp" and load_cpu_kernel() is None:
        pytest.skip("no C++ compiler here: the compiled kernel cannot be built")
    net = movenet_net("lightning", gate_strided=True)
    ex = SparseBackbone(net.backbone, kernel=kernel)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    region = torch.zeros(1, 1, 4, 4)
    region[0, 0, 1:3, 2] = 1.0
    for r in (None, region, None, region):
        with torch.no_grad():
            ref_feats, _, ref_masks = net.backbone(x, r)
        feats, _, masks = ex(x, r)
        assert (feats - ref_feats).abs().max().item() <= TOL
        for m, ref in zip(masks, ref_masks, strict=True):
            assert torch.equal(m.hard, ref.hard)
        if r is not None:
            assert masks[0].hard.mean().item() == pytest.approx(2 / 16)
        else:
            assert masks[0].hard.mean().item() != pytest.approx(2 / 16)


def skip_fill_net(variant: str, seed: int = 4) -> PoseNetwork:
    """``movenet_net`` with ``skip_fill`` on and a random fill in every gated block."""
    from dataclasses import replace

    base = movenet_net(variant, gate_strided=True, seed=seed)
    net = PoseNetwork(replace(base.cfg, skip_fill=True)).eval()
    missing, unexpected = net.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(k.endswith(".skip_fill") for k in missing)
    g = torch.Generator().manual_seed(seed)
    for b in net.gated_blocks():
        b.skip_fill.copy_(torch.randn(b.out_channels, generator=g))
    return net


@pytest.mark.parametrize("variant", ["thunder", "lightning"])
def test_skip_fill_parity_in_every_executor(variant):
    """Skipped cells take the fill (non-residual) or X + fill (residual) in the torch kernel,
    the compiled kernel, and their dense crossover paths, exactly as forward_masked; and the
    fill changes the features (so the check is not of zero vectors)."""
    net = skip_fill_net(variant)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        densities = [m.hard.mean().item() for m in net.backbone(x)[2] if m is not None]
        zero = [b.skip_fill.clone() for b in net.gated_blocks()]
        for b in net.gated_blocks():
            b.skip_fill.zero_()
        unfilled = net.backbone(x)[0]
        for b, f in zip(net.gated_blocks(), zero, strict=True):
            b.skip_fill.copy_(f)
        filled = net.backbone(x)[0]
    assert any(0.05 < d < 0.95 for d in densities)
    assert rel_diff(filled, unfilled) > 0.01
    runs = list(movenet_executors(net))
    runs.append(("torch-dense-policy", SparseBackbone(net.backbone, kernel="torch",
                                                      policy={4: "dense", 16: "dense"})))
    if load_cpu_kernel() is not None:
        runs.append(("cpp-dense-policy", SparseBackbone(net.backbone, kernel="cpp",
                                                        policy={4: "dense", 8: "dense"})))
    for name, ex in runs:
        assert_backbone_parity(net, x, name, ex)


def test_skip_fill_whole_network_parity():
    net = skip_fill_net("lightning", seed=5)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = net(x)
    for kernel in ["torch", "cpp"] if load_cpu_kernel() is not None else ["torch"]:
        out = SparsePoseNetwork(net, kernel=kernel)(x)
        assert rel_diff(out.joints, ref.joints) <= TOL, kernel
        assert rel_diff(out.heatmaps, ref.heatmaps) <= TOL, kernel


@pytest.mark.skipif(load_cpu_kernel() is None, reason="the sparse CPU kernel cannot be built here")
def test_last_pointwise_on_the_active_cells_equals_the_dense_one():
    """MoveNet's 1x1 to 1280 after a gated, filled last block runs on that block's active cells
    and writes the conv of the fill elsewhere (module.cpp ``PointwisePlan``): the features
    equal the reference's everywhere, with the last block partly skipped, on 1 and 2 threads."""
    net = skip_fill_net("thunder", seed=6)
    x = torch.randn(1, 3, 128, 128)
    r = torch.zeros(1, 1, 8, 8)
    r[0, 0, 2:4, 5] = 1.0
    with torch.no_grad():
        ref_feats, _, ref_masks = net.backbone(x, r)
    last_mask = ref_masks[-1].hard
    assert 0.0 < last_mask.mean().item() < 1.0  # partly skipped: the path under test runs
    for threads in (1, 2):
        ex = SparseBackbone(net.backbone, kernel="cpp", threads=threads)
        for _ in range(2):  # a second frame reuses the plan's buffers
            feats, _, _ = ex(x, r)
            assert rel_diff(feats, ref_feats) <= TOL, threads


@pytest.mark.skipif(load_cpu_kernel() is None, reason="the sparse CPU kernel cannot be built here")
@pytest.mark.parametrize("threads", [1, 2])
def test_stem_computes_only_what_the_first_block_reads(threads):
    """With a given region the compiled stem writes only the box the first block's 3x3 windows
    read (module.cpp ``stem_window``): features equal the reference for regions at the frame's
    corners and edges (the box clipped there), and stem pixels outside the box keep the
    previous frame's values."""
    net = skip_fill_net("thunder", seed=7)
    ex = SparseBackbone(net.backbone, kernel="cpp", threads=threads)
    regions = []
    corners_and_edges = ((slice(0, 1), slice(0, 2)), (slice(6, 8), slice(7, 8)),
                         (slice(3, 5), slice(0, 8)))
    for cells in corners_and_edges:
        r = torch.zeros(1, 1, 8, 8)
        r[0, 0, cells[0], cells[1]] = 1.0
        regions.append(r)
    g = torch.Generator().manual_seed(8)
    for r in regions:
        x = torch.randn(1, 3, 128, 128, generator=g)
        with torch.no_grad():
            ref = net.backbone(x, r)
        feats, skips, _ = ex(x, r)
        assert rel_diff(feats, ref[0]) <= TOL
        for s, s_ref in zip(skips, ref[1], strict=True):
            assert rel_diff(s, s_ref) <= TOL
    stem_out = ex._bufs[(-1, 64, 64)][:-1].view(64, 64, -1)
    before = stem_out.clone()
    far = torch.zeros(1, 1, 8, 8)
    far[0, 0, 0, 0] = 1.0  # the top-left corner only: the bottom rows are not read
    ex(torch.randn(1, 3, 128, 128, generator=g), far)
    assert torch.equal(stem_out[40:], before[40:])
    assert not torch.equal(stem_out[:8, :8], before[:8, :8])


@pytest.mark.parametrize("kernel", ["torch", "cpp"])
def test_a_repeated_region_reuses_its_masks_and_a_new_one_replaces_them(kernel):
    """Frames with the same region skip recomputing the masks (SparseBackbone keeps them);
    a changed region, a frame without one (the locator or mask units) and the region again
    each give the reference's features."""
    if kernel == "cpp" and load_cpu_kernel() is None:
        pytest.skip("the sparse CPU kernel cannot be built here")
    net = skip_fill_net("thunder", seed=9)
    ex = SparseBackbone(net.backbone, kernel=kernel)
    a, b = torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    a[0, 0, 1:4, 2:5] = 1.0
    b[0, 0, 4:7, 3:6] = 1.0
    g = torch.Generator().manual_seed(10)
    frames = [(torch.randn(1, 3, 128, 128, generator=g), r) for r in (a, a.clone(), b, None, a, a)]
    with torch.no_grad():
        refs = [net.backbone(x, r)[0] if r is not None else None for x, r in frames]
    calls = []
    real = ex._write_region
    ex._write_region = lambda *args: calls.append(1) or real(*args)
    for (x, r), ref in zip(frames, refs, strict=True):
        feats = ex(x, r)[0]
        if ref is not None:
            assert rel_diff(feats, ref) <= TOL
    assert len(calls) == 3  # a, b, a after the frame without a region


@pytest.mark.parametrize("ring", [False, True])
@pytest.mark.parametrize("hw", [(128, 128), (128, 96), (96, 160)])
def test_a_region_is_written_per_grid_as_masks_from_region_gives_it(ring, hw):
    """The region's masks go into one buffer per grid (the blocks of a grid share it), finer
    grids through an index map: every gated block's buffer holds exactly
    ``Backbone.masks_from_region``'s mask, for squares, strips and either ring setting."""
    net = skip_fill_net("thunder", seed=9)
    net.backbone.region_ring = ring
    ex = SparseBackbone(net.backbone, kernel="torch")
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 3, *hw, generator=g)
    for _ in range(3):
        region = (torch.rand(1, 1, hw[0] // 16, hw[1] // 16, generator=g) > 0.6).float()
        ex(x, region)
        want = net.backbone.masks_from_region(region, hw)
        got = [buf for buf in ex._given]
        assert sum(m is not None for m in want) > 0
        for w_m, g_m in zip(want, got, strict=True):
            assert (w_m is None) == (g_m is None)
            if w_m is not None:
                assert torch.equal(g_m, w_m)
    assert len({id(b) for b in ex._given if b is not None}) < sum(
        b is not None for b in ex._given)  # shared per grid
