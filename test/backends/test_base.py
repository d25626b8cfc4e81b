"""Shared postprocessing, input checks and backend selection."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest

from sparse_pose_ros.backends import BackendError, create_backend, joint_confidence
from sparse_pose_ros.backends.base import (
    auto_candidates,
    check_input,
    resolve_device,
    threshold_logit,
)


def test_confidence_peaked_vs_flat() -> None:
    hm = np.zeros((2, 64, 64), dtype=np.float32)
    hm[0, 10, 20] = 50.0  # all mass on one pixel
    hm[1, 30, 30] = 1e-6  # flat map, argmax away from the border
    conf = joint_confidence(hm)
    assert conf[0] == pytest.approx(1.0, abs=1e-6)
    assert conf[1] == pytest.approx(25 / 4096, rel=1e-4)  # 5×5 window of a flat map
    assert conf.dtype == np.float32


def test_confidence_window_clipped_at_border() -> None:
    hm = np.full((1, 8, 8), -1e3, dtype=np.float32)
    hm[0, 0, 0] = 0.0
    hm[0, 0, 1] = 0.0
    assert joint_confidence(hm, radius=1)[0] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="J, h, w"):
        joint_confidence(np.zeros((8, 8)))


def test_check_input_errors() -> None:
    ok = np.zeros((1, 3, 32, 32), dtype=np.float32)
    assert check_input(ok, 32) is not None
    with pytest.raises(ValueError, match="shape"):
        check_input(np.zeros((3, 32, 32), dtype=np.float32), 32)
    with pytest.raises(ValueError, match="float32"):
        check_input(ok.astype(np.float64), 32)
    bad = ok.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        check_input(bad, 32)
    with pytest.raises(ValueError, match="numpy"):
        check_input([[0.0]], 32)  # type: ignore[arg-type]


def test_threshold_logit() -> None:
    assert threshold_logit(0.5) == 0.0
    assert threshold_logit(0.25) == pytest.approx(np.log(1 / 3))
    for bad in (0.0, 1.0, -0.1, 2.0):
        with pytest.raises(ValueError, match="probability"):
            threshold_logit(bad)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("cuda:1") == "cuda:1"
    assert resolve_device("auto") in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device"):
        resolve_device("gpu")


def test_create_backend_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="backend must be one of"):
        create_backend("caffe", tmp_path / "x.safetensors")
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(BackendError, match="missing.safetensors"):
        create_backend("torch", missing)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(BackendError, match="junk.safetensors"):
        create_backend("torch", junk, device="cpu")
    with pytest.raises(BackendError, match="junk.safetensors"):
        create_backend("auto", junk, device="cpu")


def test_auto_picks_first_loadable_and_logs_why(
    gated_checkpoint: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("SPARSE_POSE_CACHE", str(tmp_path))  # keep exports out of ~/.cache
    names = [n for n, _ in auto_candidates("cpu", str(gated_checkpoint))]
    assert "tensorrt" not in names  # device="cpu" keeps auto off the GPU
    assert names[-1] == "torch"
    with caplog.at_level(logging.INFO, logger="sparse_pose_ros.backends.base"):
        backend = create_backend("auto", gated_checkpoint, device="cpu")
    from sparse_pose_ros.backends import base

    loadable = [n for n in names if importlib.util.find_spec(base._IMPLEMENTATIONS[n][0])]
    assert backend.name == loadable[0]
    assert any(f"picked {backend.name}" in r.getMessage() for r in caplog.records)
    backend.close()


def test_auto_falls_back_when_a_candidate_fails(
    gated_checkpoint: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sparse_pose_ros.backends import base

    monkeypatch.setitem(base._IMPLEMENTATIONS, "onnxruntime", ("no_such_module_xyz", "X"))
    monkeypatch.setitem(base._IMPLEMENTATIONS, "openvino", ("no_such_module_xyz", "X"))
    monkeypatch.setitem(base._IMPLEMENTATIONS, "sparse-cpu", ("no_such_module_xyz", "X"))
    with caplog.at_level(logging.INFO, logger="sparse_pose_ros.backends.base"):
        backend = create_backend("auto", gated_checkpoint, device="cpu")
    assert backend.name == "torch"
    messages = [r.getMessage() for r in caplog.records]
    assert any("onnxruntime could not load" in m and "no_such_module_xyz" in m for m in messages)
    assert any("picked torch" in m and "last resort" in m for m in messages)


def test_num_threads_fits_every_cpu_candidate_of_auto(dense_checkpoint, tmp_path, monkeypatch):
    """The node passes ``num_threads`` whatever ``auto`` picks: a dense checkpoint goes to
    openvino (or onnxruntime without it), which must take it (not fail with an unexpected
    keyword)."""
    from sparse_pose_ros.backends import base

    monkeypatch.setenv("SPARSE_POSE_CACHE", str(tmp_path))
    backend = create_backend("auto", dense_checkpoint, device="cpu", num_threads=1)
    if backend.name == "openvino":
        assert backend.compiled.get_property("INFERENCE_NUM_THREADS") == 1
        monkeypatch.setitem(base._IMPLEMENTATIONS, "openvino", ("no_such_module_xyz", "X"))
        backend = create_backend("auto", dense_checkpoint, device="cpu", num_threads=1)
    assert backend.name == "onnxruntime"
    assert backend.session.get_session_options().intra_op_num_threads == 1


def test_confidence_of_a_near_flat_map_is_read_at_its_true_peak() -> None:
    """Logits a billionth apart: their exponentials round to ties in float32, the window must
    still sit on the logits' peak (an interior cell: 3 x 3 of 256), not the first tie (a
    corner, whose window the border clips to 2 x 2)."""
    hm = np.zeros((1, 16, 16), dtype=np.float32)
    hm[0, 8, 8] = 1e-9
    assert joint_confidence(hm)[0] == pytest.approx(9 / 256, rel=1e-5)
