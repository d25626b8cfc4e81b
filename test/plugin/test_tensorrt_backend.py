"""TensorRT backend: helper logic everywhere; engine build/run where TensorRT + a GPU exist.

The build/run tests need the python module ``tensorrt``, a CUDA GPU and the plugin library
($SPARSE_POSE_ROS_PLUGIN_LIB or build/plugin/libsparse_pose_ros_plugins.so). They compare the
plugin engine with the torch backend on the same frame.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from sparse_pose_ros.backends import tensorrt_backend as trt_backend
from sparse_pose_ros.backends.base import BackendError, create_backend
from sparse_pose_ros.backends.engine_cache import sidecar_path

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def test_engine_key_uses_every_build_input(tmp_path: Path) -> None:
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"onnx-bytes")
    lib = tmp_path / trt_backend.PLUGIN_LIBRARY_NAME
    lib.write_bytes(b"elf-bytes")
    gpu = ("Orin", "8.7")
    fp32 = trt_backend.BuildSettings(enable_fp16=False, workspace_bytes=1 << 28)
    key = trt_backend.engine_key("10.3.0", gpu, onnx, lib, fp32)
    assert (key.gpu_name, key.compute_capability, key.tensorrt_version) == ("Orin", "8.7", "10.3.0")
    assert key.precision == "fp32" and key.workspace_bytes == 1 << 28
    fp16 = trt_backend.engine_key(
        "10.3.0", gpu, onnx, lib, dataclasses.replace(fp32, enable_fp16=True)
    )
    assert fp16.precision == "fp16" and fp16.digest() != key.digest()
    lib.write_bytes(b"rebuilt-elf")  # a rebuilt plugin invalidates the engine
    assert trt_backend.engine_key("10.3.0", gpu, onnx, lib, fp32).digest() != key.digest()
    dense = trt_backend.engine_key("10.3.0", gpu, onnx, None, fp32)
    assert dense.plugin_sha256 == trt_backend.NO_PLUGIN


def test_build_settings_reject_bad_workspace() -> None:
    with pytest.raises(ValueError, match="workspace"):
        trt_backend.BuildSettings(workspace_bytes=0)


def test_plugin_library_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BackendError, match="does not exist"):
        trt_backend.find_plugin_library(tmp_path / "missing.so")
    lib = tmp_path / trt_backend.PLUGIN_LIBRARY_NAME
    lib.write_bytes(b"x")
    assert trt_backend.find_plugin_library(lib) == lib
    monkeypatch.setenv(trt_backend.PLUGIN_LIBRARY_ENV, str(lib))
    assert trt_backend.plugin_library_candidates()[0] == lib
    assert trt_backend.find_plugin_library(None) == lib
    monkeypatch.setenv(trt_backend.PLUGIN_LIBRARY_ENV, str(tmp_path / "nope.so"))
    if not any(p.is_file() for p in trt_backend.plugin_library_candidates()):
        with pytest.raises(BackendError, match="cmake -S plugin"):
            trt_backend.find_plugin_library(None)


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed: the missing-module path is moot")
def test_missing_tensorrt_is_a_clear_backend_error(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    with pytest.raises(BackendError, match="python module `tensorrt`"):
        trt_backend.TensorRTBackend(str(model))
    with pytest.raises(BackendError, match="python module `tensorrt`"):
        create_backend("tensorrt", model)


# --- real TensorRT ---------------------------------------------------------------------------

requires_tensorrt = pytest.mark.skipif(not HAS_TENSORRT, reason=trt_backend.TENSORRT_MISSING)


def _plugin_or_skip() -> Path:
    try:
        return trt_backend.find_plugin_library(None)
    except BackendError as exc:
        pytest.skip(str(exc))


def _gpu_or_skip() -> None:
    try:
        trt_backend.gpu_identity(0)
    except BackendError as exc:
        pytest.skip(f"no usable CUDA GPU: {exc}")


@pytest.fixture(scope="module")
def gated_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sparse_pose_ros.export.random_model import random_network
    from sparse_pose_ros.model.checkpoint import save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "gated.safetensors"
    save_checkpoint(path, random_network(gated=True, input_size=64, seed=1))
    return path


@requires_tensorrt
def test_plugin_engine_matches_torch_and_is_cached(gated_checkpoint: Path, tmp_path: Path) -> None:
    _gpu_or_skip()
    lib = _plugin_or_skip()
    frame = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    with create_backend("torch", gated_checkpoint, device="cpu") as ref:
        want = ref.infer(frame)
    opts = {"custom_plugin_lib": lib, "cache_dir": tmp_path}
    with trt_backend.TensorRTBackend(str(gated_checkpoint), **opts) as trt_run:
        assert trt_run.engine_built
        got = trt_run.infer(frame)
        plan = trt_run.engine_path
    assert [m.tolist() for m in got.masks] == [m.tolist() for m in want.masks]
    np.testing.assert_allclose(got.joints, want.joints, atol=1e-3)
    np.testing.assert_allclose(got.heatmaps, want.heatmaps, atol=1e-3)
    assert json.loads(sidecar_path(plan).read_text())["key"]["precision"] == "fp32"
    with trt_backend.TensorRTBackend(str(gated_checkpoint), **opts) as again:
        assert not again.engine_built and again.engine_path == plan
    with trt_backend.TensorRTBackend(
        str(gated_checkpoint), force_engine_update=True, **opts
    ) as forced:
        assert forced.engine_built


@requires_tensorrt
def test_plan_tensorrt_cannot_deserialize_is_rebuilt(
    gated_checkpoint: Path, tmp_path: Path
) -> None:
    _gpu_or_skip()
    lib = _plugin_or_skip()
    opts = {"custom_plugin_lib": lib, "cache_dir": tmp_path}
    with trt_backend.TensorRTBackend(str(gated_checkpoint), **opts) as first:
        plan = first.engine_path
    # Garbage with a *consistent* sidecar: only TensorRT's deserializer can notice.
    garbage = b"\x00not a plan" * 100
    plan.write_bytes(garbage)
    meta = json.loads(sidecar_path(plan).read_text())
    meta.update(plan_bytes=len(garbage), plan_sha256=hashlib.sha256(garbage).hexdigest())
    sidecar_path(plan).write_text(json.dumps(meta))
    with trt_backend.TensorRTBackend(str(gated_checkpoint), **opts) as rebuilt:
        assert rebuilt.engine_built
        rebuilt.infer(np.zeros((1, 3, 64, 64), np.float32))


@requires_tensorrt
def test_fp16_engine_runs(gated_checkpoint: Path, tmp_path: Path) -> None:
    _gpu_or_skip()
    lib = _plugin_or_skip()
    frame = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    with trt_backend.TensorRTBackend(
        str(gated_checkpoint), custom_plugin_lib=lib, cache_dir=tmp_path, enable_fp16=True
    ) as run16:
        result = run16.infer(frame)
        assert run16.precision == "fp16"  # what /diagnostics reports
    assert np.isfinite(result.joints).all() and result.joints.shape[1] == 3
