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


@pytest.mark.parametrize("lifter", [False, True])
def test_whole_network_parity(lifter):
    net = small_net(False)
    if lifter:  # the depth lifter applies after every head runtime (compiled head included)
        from sparse_pose_ros.model.lifter import PoseLifter

        torch.manual_seed(1)
        net.lifter = PoseLifter(16).eval()
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
