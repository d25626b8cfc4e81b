"""Torch backend: loads checkpoints, returns the documented structure, equals the network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sparse_pose_ros import skeleton
from sparse_pose_ros.backends import BackendError, create_backend
from sparse_pose_ros.backends.torch_backend import TorchBackend
from sparse_pose_ros.model.checkpoint import load_checkpoint


def test_result_structure_and_values(gated_checkpoint: Path, frame64: np.ndarray) -> None:
    backend = create_backend("torch", gated_checkpoint, device="cpu")
    assert backend.name == "torch"
    info = backend.info
    assert info.input_size == 64 and info.gated and info.source == str(gated_checkpoint)
    assert info.joint_names == skeleton.JOINT_NAMES
    assert len(info.model_hash) == 64
    res = backend.infer(frame64)
    net, _ = load_checkpoint(gated_checkpoint)
    with torch.inference_mode():
        ref = net(torch.from_numpy(frame64))
    np.testing.assert_array_equal(res.joints, ref.joints[0].numpy())
    np.testing.assert_array_equal(res.heatmaps, ref.heatmaps[0].numpy())
    gated = [m for m in ref.masks if m is not None]
    assert len(res.masks) == len(gated) == len(res.block_density)
    for got, want in zip(res.masks, gated, strict=True):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, want.hard[0, 0].numpy().astype(np.uint8))
    assert res.confidence.shape == (skeleton.NUM_JOINTS,)
    assert np.all((res.confidence >= 0) & (res.confidence <= 1))
    assert 0.0 < res.density < 1.0  # random masks: neither all on nor all off
    backend.close()


def test_threshold_changes_masks(gated_checkpoint: Path, frame64: np.ndarray) -> None:
    backend = TorchBackend(str(gated_checkpoint), device="cpu")
    backend.set_mask_threshold(0.05)
    loose = backend.infer(frame64)
    backend.set_mask_threshold(0.95)
    strict = backend.infer(frame64)
    assert sum(int(m.sum()) for m in strict.masks) < sum(int(m.sum()) for m in loose.masks)
    assert strict.density < loose.density
    with pytest.raises(ValueError, match="probability"):
        backend.set_mask_threshold(1.0)


def test_dense_model(dense_checkpoint: Path, frame64: np.ndarray) -> None:
    backend = create_backend("torch", dense_checkpoint, device="cpu")
    backend.warmup(1)
    res = backend.infer(frame64)
    assert not backend.info.gated
    assert res.masks == [] and res.block_density == [] and res.density == 1.0
    backend.set_mask_threshold(0.3)  # accepted, no effect on a dense model


def test_bad_inputs(gated_checkpoint: Path, tmp_path: Path) -> None:
    backend = TorchBackend(str(gated_checkpoint), device="cpu")
    with pytest.raises(ValueError, match="shape"):
        backend.infer(np.zeros((1, 3, 32, 32), dtype=np.float32))
    with pytest.raises(ValueError, match="input_size"):
        TorchBackend(str(gated_checkpoint), device="cpu", input_size=50)
    other = tmp_path / "model.onnx"
    other.write_bytes(b"x")
    with pytest.raises(BackendError, match="model.onnx"):
        TorchBackend(str(other), device="cpu")


def test_input_size_override(gated_checkpoint: Path) -> None:
    backend = TorchBackend(str(gated_checkpoint), device="cpu", input_size=96)
    res = backend.infer(np.zeros((1, 3, 96, 96), dtype=np.float32))
    assert backend.info.input_size == 96
    assert res.heatmaps is not None and res.heatmaps.shape[-1] == 24


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_equals_cpu(gated_checkpoint: Path, frame64: np.ndarray) -> None:
    cpu = TorchBackend(str(gated_checkpoint), device="cpu").infer(frame64)
    gpu = TorchBackend(str(gated_checkpoint), device="cuda").infer(frame64)
    np.testing.assert_allclose(gpu.joints, cpu.joints, atol=1e-4)
