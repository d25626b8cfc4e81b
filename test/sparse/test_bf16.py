"""bf16 GEMMs (``precision="bf16"``: AMX tiles where the CPU has AMX, else the AVX512-BF16 dot
product): the GEMM against exact references, the gated backbone against f32, and the refusals
where the CPU has neither."""

from __future__ import annotations

import pytest
import torch
from test_executor import rel_diff, skip_fill_net

from sparse_pose_ros.sparse import SparseBackbone, SparsePoseNetwork
from sparse_pose_ros.sparse import executor as executor_mod
from sparse_pose_ros.sparse.cpu_kernel import load_cpu_kernel
from sparse_pose_ros.sparse.executor import bf16_available, bf16_preferred

needs_bf16 = pytest.mark.skipif(
    not bf16_available(),
    reason="bf16 GEMMs need the compiled kernel on a CPU with AMX (Sapphire Rapids or later) or "
    "AVX512-BF16 (Cooper Lake, Zen 4 or later); this machine has neither",
)


def bf16_values(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Random floats that bf16 holds exactly, so the tile GEMM must equal f32 up to the order
    of its sums."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).bfloat16().float()


@needs_bf16
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("n", "c_in", "c_out"), [(37, 45, 70), (5, 280, 1680), (64, 33, 16)])
def test_bf16_gemm_equals_f32_on_bf16_values(threads, n, c_in, c_out):
    """Row, K and column tails (37 rows, K 45 -> 64 padded for the tiles, 46 for the dot
    product; 70 columns = 4 blocks + 6; K 33, odd) and a
    wide late-block shape: the same sums as torch's f32 matmul, with bias and ReLU6."""
    cpp = load_cpu_kernel()
    w, x = bf16_values((c_in, c_out), 1), bf16_values((n + 1, c_in), 2)
    bias = torch.randn(c_out, generator=torch.Generator().manual_seed(3))
    out = torch.full((n + 1, c_out), float("nan"))
    pw = cpp.Pointwise(w, bias, x, out, True, threads)
    pw.use_bf16()
    pw.run()
    ref = (x[:-1] @ w + bias).clamp(0.0, 6.0)
    assert torch.allclose(out[:-1], ref, atol=1e-4, rtol=1e-5)
    # and not the f32 kernel: on values bf16 does not hold, the results differ
    x.copy_(torch.randn(n + 1, c_in))
    pw.run()
    exact = (x[:-1] @ w + bias).clamp(0.0, 6.0)
    assert 0.0 < rel_diff(out[:-1], exact) < 2e-2


@needs_bf16
@pytest.mark.parametrize("threads", [1, 2])
def test_bf16_backbone_stays_close_to_f32(threads):
    """MoveNet Thunder's gated backbone with a region (channel-split blocks on two threads, the
    1x1 on the active cells): bf16 features within 3 % of f32, and not equal to them."""
    net = skip_fill_net("thunder", seed=6)
    x = torch.randn(1, 3, 128, 128)
    r = torch.zeros(1, 1, 8, 8)
    r[0, 0, 2:6, 3:6] = 1.0
    ref = SparseBackbone(net.backbone, kernel="cpp", threads=threads)(x, r)
    ex = SparseBackbone(net.backbone, kernel="cpp", threads=threads, precision="bf16")
    for _ in range(2):  # a second frame replays the recorded plans
        feats, skips, _ = ex(x, r)
        assert 1e-5 < rel_diff(feats, ref[0]) < 3e-2
        for s, s_ref in zip(skips, ref[1], strict=True):
            assert rel_diff(s, s_ref) < 3e-2


@needs_bf16
def test_bf16_network_keeps_the_joints():
    net = skip_fill_net("lightning", seed=5)
    x = torch.randn(1, 3, 64, 64)
    ref = SparsePoseNetwork(net, kernel="cpp").__call__(x).joints.clone()
    out = SparsePoseNetwork(net, kernel="cpp", precision="bf16")(x).joints
    assert (out - ref).abs().max().item() < 0.05


def test_precision_is_checked(monkeypatch):
    net = skip_fill_net("lightning", seed=5)
    with pytest.raises(ValueError, match="precision must be one of"):
        SparseBackbone(net.backbone, kernel="cpp", precision="f16")
    monkeypatch.setattr(executor_mod, "bf16_available", lambda: False)
    with pytest.raises(ValueError, match="AVX512-BF16"):
        SparseBackbone(net.backbone, kernel="cpp", precision="bf16")


def test_sparse_backend_kernel_precision(monkeypatch):
    """sparse-cpu: an unknown kernel_precision is a ValueError, bf16 without AMX a BackendError
    naming the file, auto resolves to what the CPU has (and says so in ``precision``)."""
    from sparse_pose_ros.backends import BackendError, create_backend

    model = "models/pose_lightning_sparse.safetensors"
    with pytest.raises(ValueError, match="kernel_precision"):
        create_backend("sparse-cpu", model, device="cpu", adaptive=False, kernel_precision="f16")
    monkeypatch.setattr(executor_mod, "bf16_available", lambda: False)
    monkeypatch.setattr(executor_mod, "bf16_preferred", lambda: False)
    with pytest.raises(BackendError, match="AVX512-BF16"):
        create_backend("sparse-cpu", model, device="cpu", adaptive=False, kernel_precision="bf16")
    be = create_backend("sparse-cpu", model, device="cpu", adaptive=False, kernel_precision="auto")
    assert be.precision == "f32" and be.runner.backbone.precision == "f32"
    monkeypatch.undo()
    be = create_backend("sparse-cpu", model, device="cpu", adaptive=False, kernel_precision="auto")
    assert be.precision == ("bf16" if bf16_preferred() else "f32")
    assert be.runner.backbone.precision == be.precision


@needs_bf16
def test_bf16_fpn_stays_close_to_f32():
    """The compiled FPN's 1x1 convs in bf16: neck and centre logits within 3 % of f32,
    and not equal to them."""
    from sparse_pose_ros.export.random_model import random_movenet_network
    from sparse_pose_ros.sparse.fpn_plan import CppFpn

    net = random_movenet_network("thunder", input_size=128, seed=13, person_prior=True)
    with torch.no_grad():
        feats, skips, _ = net.backbone(torch.randn(1, 3, 128, 128))
    cl = [t.permute(0, 2, 3, 1).contiguous() for t in (feats, *skips)]
    y32, c32 = (t.clone() for t in CppFpn(net, load_cpu_kernel())(*cl))
    y16, c16 = CppFpn(net, load_cpu_kernel(), precision="bf16")(*cl)
    assert 1e-6 < rel_diff(y16, y32) < 3e-2
    assert 1e-6 < rel_diff(c16, c32) < 3e-2
