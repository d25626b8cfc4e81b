"""The MoveNet architecture (stride 32, TF 'SAME' padding, 1×1 to 1280, FPN neck, separable
head pre-conv) through every graph runtime: ONNX Runtime ``portable`` and ``portable_sparse``
equal torch on real photos, with partial random masks, with head gating on and off. (A
symmetric-padding regression: test/pretrained and test/sparse.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from real_frames import frames
from test_portable_parity import assert_same

from sparse_pose_ros.backends import create_backend
from sparse_pose_ros.export.random_model import randomize_network
from sparse_pose_ros.model.checkpoint import save_checkpoint
from sparse_pose_ros.model.network import PoseNetwork, movenet_config


def movenet_random(variant: str, seed: int, **overrides: object) -> PoseNetwork:
    torch.manual_seed(seed)
    net = PoseNetwork(movenet_config(variant, **overrides))
    with torch.no_grad():  # a non-trivial HEMlets head, so wrong features move the joints
        for conv in (net.head.heatmap, net.head.triplet, net.head.depth):
            conv.weight.normal_(0, 0.05)
    return randomize_network(net, seed=seed)


@pytest.mark.parametrize("graph", ["portable", "portable_sparse"])
@pytest.mark.parametrize("head_gating", [False, True], ids=["head", "head-gated"])
@pytest.mark.parametrize("readout", [0, 2], ids=["global-readout", "peak-readout"])
def test_lightning_graphs_equal_torch(tmp_path: Path, graph: str, head_gating: bool,
                                      readout: int) -> None:
    ckpt = tmp_path / "lightning.safetensors"
    save_checkpoint(ckpt, movenet_random("lightning", seed=3, input_size=128,
                                         readout_window=readout))
    ref = create_backend("torch", ckpt, device="cpu", head_gating=head_gating)
    ort = create_backend("onnxruntime", ckpt, device="cpu", cache_dir=tmp_path / "cache",
                         graph=graph, head_gating=head_gating)
    assert ort.info == ref.info
    densities = []
    for x in frames(128).values():
        want = ref.infer(x)
        assert_same(ort.infer(x), want)
        densities.append(want.density)
    assert 0.0 < min(densities) and max(densities) < 1.0, "random masks should be partial"


def test_thunder_portable_equals_torch(tmp_path: Path) -> None:
    ckpt = tmp_path / "thunder.safetensors"
    save_checkpoint(ckpt, movenet_random("thunder", seed=5, input_size=160))
    ref = create_backend("torch", ckpt, device="cpu")
    ort = create_backend("onnxruntime", ckpt, device="cpu", cache_dir=tmp_path / "cache")
    x = next(iter(frames(160).values()))
    assert_same(ort.infer(x), ref.infer(x))


@pytest.mark.parametrize("graph", ["portable", "portable_sparse"])
def test_skip_fill_checkpoint_graphs_equal_torch(tmp_path: Path, graph: str) -> None:
    """A checkpoint whose gated blocks fill the cells they skip (``skip_fill``) exports and
    runs in ONNX Runtime as in torch (the fill changes the answer: it is not zero)."""
    from dataclasses import replace

    base = movenet_random("lightning", seed=4, input_size=128, gate_strided=True)
    net = PoseNetwork(replace(base.cfg, skip_fill=True)).eval()
    net.load_state_dict(base.state_dict(), strict=False)
    g = torch.Generator().manual_seed(4)
    for b in net.gated_blocks():
        b.skip_fill.copy_(torch.randn(b.out_channels, generator=g) * 0.5)
    ckpt, zero = tmp_path / "fill.safetensors", tmp_path / "zero.safetensors"
    save_checkpoint(ckpt, net)
    save_checkpoint(zero, base)
    ref = create_backend("torch", ckpt, device="cpu")
    unfilled = create_backend("torch", zero, device="cpu")
    ort = create_backend("onnxruntime", ckpt, device="cpu", cache_dir=tmp_path / "cache",
                         graph=graph)
    moved = 0.0
    for x in frames(128).values():
        want = ref.infer(x)
        assert_same(ort.infer(x), want)
        moved = max(moved, float(abs(want.heatmaps - unfilled.infer(x).heatmaps).max()))
    assert moved > 1e-3
