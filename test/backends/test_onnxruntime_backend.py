"""ONNX Runtime backend: .onnx and .safetensors inputs, export cache, metadata, errors."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import onnx
import pytest

from sparse_pose_ros.backends import BackendError, create_backend
from sparse_pose_ros.backends.onnxruntime_backend import (
    OnnxRuntimeBackend,
    default_cache_dir,
    select_providers,
)
from sparse_pose_ros.export.export_cache import cached_onnx_path
from sparse_pose_ros.export.metadata import read_metadata
from sparse_pose_ros.export.onnx_export import export_checkpoint
from sparse_pose_ros.model.checkpoint import read_metadata as read_ckpt_metadata


def test_checkpoint_is_exported_once_into_cache(
    gated_checkpoint: Path, tmp_path: Path, frame64: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    digest = read_ckpt_metadata(gated_checkpoint)["model_hash"]
    first = OnnxRuntimeBackend(str(gated_checkpoint), device="cpu", cache_dir=tmp_path)
    cached = cached_onnx_path(tmp_path, digest, 64)
    assert first.onnx_path == cached and cached.is_file()
    assert first.info.source == str(gated_checkpoint)
    stamp = cached.stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        second = OnnxRuntimeBackend(str(gated_checkpoint), device="cpu", cache_dir=tmp_path)
    assert cached.stat().st_mtime_ns == stamp
    assert any("using cached export" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(first.infer(frame64).joints, second.infer(frame64).joints)
    # another input size is another cache entry
    third = OnnxRuntimeBackend(
        str(gated_checkpoint), device="cpu", cache_dir=tmp_path, input_size=96
    )
    assert third.info.input_size == 96 and third.onnx_path != cached


def test_corrupt_cache_entry_is_rebuilt(gated_checkpoint: Path, tmp_path: Path) -> None:
    digest = read_ckpt_metadata(gated_checkpoint)["model_hash"]
    cached = cached_onnx_path(tmp_path, digest, 64)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"garbage")
    backend = OnnxRuntimeBackend(str(gated_checkpoint), device="cpu", cache_dir=tmp_path)
    assert read_metadata(cached).info.model_hash == digest
    assert backend.info.model_hash == digest


def test_cache_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPARSE_POSE_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("SPARSE_POSE_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "sparse_pose_ros"


def test_onnx_file_metadata_is_read_back(
    gated_checkpoint: Path, tmp_path: Path, frame64: np.ndarray
) -> None:
    paths = export_checkpoint(gated_checkpoint, tmp_path, graphs=("portable", "plugin"))
    backend = create_backend("onnxruntime", paths["portable"], device="cpu", intra_op_threads=1)
    torch_backend = create_backend("torch", gated_checkpoint, device="cpu")
    assert backend.info == type(backend.info)(
        **{**torch_backend.info.__dict__, "source": str(paths["portable"])}
    )
    res = backend.infer(frame64)
    assert len(res.masks) == len(backend.geometry.gated_indices)
    backend.set_mask_threshold(0.99)
    assert backend.infer(frame64).density < res.density
    with pytest.raises(BackendError, match="plugin"):
        create_backend("onnxruntime", paths["plugin"], device="cpu")
    with pytest.raises(BackendError, match="exported at 64"):
        OnnxRuntimeBackend(str(paths["portable"]), device="cpu", input_size=128)


def test_dense_model_has_no_threshold_input(dense_checkpoint: Path, tmp_path: Path) -> None:
    backend = OnnxRuntimeBackend(str(dense_checkpoint), device="cpu", cache_dir=tmp_path)
    assert [i.name for i in backend.session.get_inputs()] == ["input"]
    res = backend.infer(np.zeros((1, 3, 64, 64), dtype=np.float32))
    assert res.masks == [] and res.density == 1.0
    backend.close()


def test_foreign_and_broken_files(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.onnx"
    node = onnx.helper.make_node("Relu", ["x"], ["y"])
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph([node], "g", [x], [y])), str(foreign))
    with pytest.raises(BackendError, match="foreign.onnx.*not a sparse_pose_ros export"):
        create_backend("onnxruntime", foreign, device="cpu")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(os.urandom(64))
    with pytest.raises(BackendError, match="broken.onnx"):
        create_backend("onnxruntime", broken, device="cpu")
    other = tmp_path / "model.pt"
    other.write_bytes(b"x")
    with pytest.raises(BackendError, match="model.pt"):
        create_backend("onnxruntime", other, device="cpu")


def test_bad_options(gated_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="intra_op_threads"):
        OnnxRuntimeBackend(
            str(gated_checkpoint), device="cpu", cache_dir=tmp_path, intra_op_threads=0
        )
    backend = OnnxRuntimeBackend(str(gated_checkpoint), device="cpu", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="probability"):
        backend.set_mask_threshold(0.0)
    with pytest.raises(ValueError, match="shape"):
        backend.infer(np.zeros((1, 3, 65, 65), dtype=np.float32))


def test_provider_selection() -> None:
    assert select_providers("cpu") == ["CPUExecutionProvider"]
    gpu = select_providers("cuda")
    assert gpu[-1] == "CPUExecutionProvider"  # always a CPU fallback


def test_num_threads_is_the_intra_op_thread_count(dense_checkpoint: Path, tmp_path: Path) -> None:
    """``num_threads`` (the node's backend-independent option) sets ORT's intra-op threads;
    an explicit ``intra_op_threads`` wins."""
    backend = OnnxRuntimeBackend(str(dense_checkpoint), device="cpu", cache_dir=tmp_path,
                                 num_threads=1)  # fmt: skip
    assert backend.session.get_session_options().intra_op_num_threads == 1
    both = OnnxRuntimeBackend(str(dense_checkpoint), device="cpu", cache_dir=tmp_path,
                              num_threads=1, intra_op_threads=2)  # fmt: skip
    assert both.session.get_session_options().intra_op_num_threads == 2
    with pytest.raises(ValueError, match=">= 1"):
        OnnxRuntimeBackend(str(dense_checkpoint), device="cpu", cache_dir=tmp_path, num_threads=0)


def test_spin_wait_is_orts_allow_spinning(dense_checkpoint: Path, tmp_path: Path) -> None:
    """``spin_wait`` (shared option; the node's parameter) sets ORT's intra-op spinning; off by
    default in the library, and create_backend passes it on as a shared option."""
    from sparse_pose_ros.backends import create_backend

    key = "session.intra_op.allow_spinning"
    off = OnnxRuntimeBackend(str(dense_checkpoint), device="cpu", cache_dir=tmp_path)
    on = create_backend("onnxruntime", str(dense_checkpoint), device="cpu", cache_dir=tmp_path,
                        spin_wait=True)  # fmt: skip
    assert on.name == "onnxruntime"
    assert off.session.get_session_options().get_session_config_entry(key) == "0"
    assert on.session.get_session_options().get_session_config_entry(key) == "1"


def test_head_gating_is_in_the_exported_graph(
    head_gated_checkpoint: Path, tmp_path: Path, frame64: np.ndarray
) -> None:
    """The head region (max-pool, nearest resize, where) is part of the ONNX graph: ONNX Runtime
    equals the PyTorch reference with the region partly off."""
    from sparse_pose_ros.model.heads import REGION_OFF_LOGIT

    ref = create_backend("torch", head_gated_checkpoint, device="cpu")
    ort = OnnxRuntimeBackend(str(head_gated_checkpoint), device="cpu", cache_dir=tmp_path)
    for threshold in (0.3, 0.565):
        ref.set_mask_threshold(threshold)
        ort.set_mask_threshold(threshold)
        want, got = ref.infer(frame64), ort.infer(frame64)
        np.testing.assert_allclose(got.joints, want.joints, atol=1e-4)
        assert got.heatmaps is not None and want.heatmaps is not None
        np.testing.assert_allclose(got.heatmaps, want.heatmaps, atol=1e-3)
    assert 0.3 < float(np.mean(want.heatmaps == REGION_OFF_LOGIT)) < 0.7


def test_a_strip_export_matches_torch_and_is_cached_apart(
    dense_checkpoint: Path, gated_checkpoint: Path, tmp_path: Path
) -> None:
    """``input_width``: the dense model exported for the central 32 columns of its 64-px
    square (its own cache file, its width in the metadata), the same joints as torch in the
    square's frame; a gated checkpoint, or an .onnx of another width, is refused."""
    strip = create_backend("onnxruntime", dense_checkpoint, device="cpu", cache_dir=tmp_path,
                           input_size=64, input_width=32)
    square = create_backend("onnxruntime", dense_checkpoint, device="cpu", cache_dir=tmp_path)
    assert strip.onnx_path != square.onnx_path and "64x32" in strip.onnx_path.name
    assert strip.info.input_hw == (64, 32) and square.info.input_hw == (64, 64)
    assert read_metadata(strip.onnx_path).info.input_width == 32
    ref = create_backend("torch", dense_checkpoint, device="cpu", input_size=64, input_width=32)
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 32)).astype(np.float32)
    got, want = strip.infer(x), ref.infer(x)
    np.testing.assert_allclose(got.joints, want.joints, atol=1e-4)
    assert 0.25 <= got.joints[:, 0].min() and got.joints[:, 0].max() <= 0.75
    with pytest.raises(ValueError, match="64, 32"):
        strip.infer(np.zeros((1, 3, 64, 64), np.float32))
    with pytest.raises(BackendError, match="32 wide|not 32"):
        create_backend("onnxruntime", str(square.onnx_path), device="cpu", input_width=32)
    # the .onnx of the strip runs as it was exported when no width is asked for
    assert create_backend("onnxruntime", str(strip.onnx_path),
                          device="cpu").info.input_hw == (64, 32)
    with pytest.raises(BackendError, match="dense"):
        create_backend("onnxruntime", gated_checkpoint, device="cpu", cache_dir=tmp_path,
                       input_size=64, input_width=32)
