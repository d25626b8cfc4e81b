"""ONNX Runtime (portable graph) equals PyTorch within 1e-4 (fp32) on real photographs
(heatmap logits: 1e-4 or 2e-4 relative, whichever is larger — the shipped MoveNet Thunder
network's logits reach ±80, where float32 summation order and thread count alone move them
by up to 6e-5 relative; the joints stay within 1e-4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from real_frames import frames, trained_checkpoints

from sparse_pose_ros.backends import BackendError, InferenceResult, create_backend
from sparse_pose_ros.export.random_model import random_network
from sparse_pose_ros.model.checkpoint import save_checkpoint

ATOL = 1e-4
#: Relative tolerance of the heatmap logits (see the module docstring).
HEATMAP_RTOL = 2e-4


def assert_same(got: InferenceResult, want: InferenceResult) -> None:
    assert len(got.masks) == len(want.masks)
    for g, w in zip(got.masks, want.masks, strict=True):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_allclose(got.joints, want.joints, atol=ATOL)
    assert got.heatmaps is not None and want.heatmaps is not None
    np.testing.assert_allclose(got.heatmaps, want.heatmaps, atol=ATOL, rtol=HEATMAP_RTOL)
    np.testing.assert_allclose(got.confidence, want.confidence, atol=ATOL)
    assert got.density == pytest.approx(want.density, abs=1e-12)
    assert got.block_density == want.block_density


@pytest.mark.parametrize("gated", [True, False], ids=["gated", "dense"])
def test_onnxruntime_equals_torch_on_photos(
    tmp_path: Path, frames128: dict[str, np.ndarray], gated: bool
) -> None:
    ckpt = tmp_path / "net.safetensors"
    save_checkpoint(ckpt, random_network(gated=gated, input_size=128, seed=7))
    ref = create_backend("torch", ckpt, device="cpu")
    ort = create_backend("onnxruntime", ckpt, device="cpu", cache_dir=tmp_path / "cache")
    assert ort.info == ref.info
    for threshold in (0.5, 0.3):
        ref.set_mask_threshold(threshold)
        ort.set_mask_threshold(threshold)
        for name, x in frames128.items():
            want, got = ref.infer(x), ort.infer(x)
            assert_same(got, want)
            if gated and threshold == 0.5 and name == "astronaut":
                assert 0.0 < want.density < 1.0, "random masks should be partial"


@pytest.mark.parametrize("ckpt", trained_checkpoints(), ids=lambda p: p.name)
def test_trained_checkpoint_parity(tmp_path: Path, ckpt: Path) -> None:
    from sparse_pose_ros.model.checkpoint import read_metadata

    if read_metadata(ckpt)["config"].get("mask_source") == "locator":
        # its masks come from a person locator the ONNX graphs do not carry: ONNX Runtime
        # refuses it with the reason (and ``auto`` moves on to the next backend)
        with pytest.raises(BackendError, match="person locator"):
            create_backend("onnxruntime", ckpt, device="cpu", cache_dir=tmp_path)
        auto = create_backend("auto", ckpt, device="cpu", cache_dir=tmp_path)
        assert auto.name in ("sparse-cpu", "torch")
        pytest.skip(f"{ckpt.name}: person-locator masks are not exported to ONNX (yet)")
    ref = create_backend("torch", ckpt, device="cpu")
    ort = create_backend("onnxruntime", ckpt, device="cpu", cache_dir=tmp_path)
    for x in frames(ref.info.input_size).values():
        assert_same(ort.infer(x), ref.infer(x))
