"""sparse-cpu backend: equals the masked-dense torch reference, refuses what it cannot run, and
is what ``auto`` picks for a gated checkpoint on the CPU (falling back when it cannot load)."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest

from sparse_pose_ros.backends import BackendError, base, create_backend
from sparse_pose_ros.backends.path_choice import ALWAYS_SPARSE
from sparse_pose_ros.model.heads import REGION_OFF_LOGIT
from sparse_pose_ros.sparse.cpu_kernel import load_cpu_kernel

#: What ``auto`` runs a model on when sparse-cpu does not take it: OpenVINO where installed.
CPU_DENSE = "openvino" if importlib.util.find_spec("openvino") else "onnxruntime"

needs_kernel = pytest.mark.skipif(
    load_cpu_kernel() is None, reason="the sparse CPU kernel cannot be built here (no compiler)"
)


@needs_kernel
@pytest.mark.parametrize(("head", "threads"), [("cpp", 1), ("cpp", 2), ("ort", 1), ("torch", 1)])
def test_matches_torch_backend(
    gated_checkpoint: Path, frame64: np.ndarray, head: str, threads: int
) -> None:
    ref = create_backend("torch", gated_checkpoint, device="cpu")
    sp = create_backend("sparse-cpu", gated_checkpoint, device="cpu", head=head,
                        num_threads=threads)  # fmt: skip
    assert sp.runner.head == head
    assert sp.name == "sparse-cpu" and sp.info.gated and sp.info.input_size == 64
    assert sp.info.model_hash == ref.info.model_hash
    for threshold in (0.3, 0.5, 0.7):
        ref.set_mask_threshold(threshold)
        sp.set_mask_threshold(threshold)
        want, got = ref.infer(frame64), sp.infer(frame64)
        assert len(got.masks) == len(want.masks)
        for g, w in zip(got.masks, want.masks, strict=True):
            np.testing.assert_array_equal(g, w)
        np.testing.assert_allclose(got.joints, want.joints, atol=1e-4)
        assert got.heatmaps is not None and want.heatmaps is not None
        np.testing.assert_allclose(got.heatmaps, want.heatmaps, atol=1e-4)
        assert got.density == pytest.approx(want.density, rel=1e-9)
        assert got.block_density == pytest.approx(want.block_density, rel=1e-9)
    sp.warmup(1)
    sp.close()


@needs_kernel
@pytest.mark.parametrize(("head", "threads"), [("cpp", 1), ("cpp", 2), ("ort", 1), ("torch", 1)])
def test_head_gating_matches_torch_backend(
    head_gated_checkpoint: Path, frame64: np.ndarray, head: str, threads: int
) -> None:
    """With head gating every head path equals the PyTorch reference, outside the region too
    (heatmap logits REGION_OFF_LOGIT), and the joints differ from the ungated head's."""
    ref = create_backend("torch", head_gated_checkpoint, device="cpu")
    sp = create_backend("sparse-cpu", head_gated_checkpoint, device="cpu", head=head,
                        num_threads=threads)  # fmt: skip
    assert sp.runner.head == head
    off = []
    for threshold in (0.3, 0.565, 0.99):  # 0.565: half of this random net's head region is off
        ref.set_mask_threshold(threshold)
        sp.set_mask_threshold(threshold)
        want, got = ref.infer(frame64), sp.infer(frame64)
        np.testing.assert_allclose(got.joints, want.joints, atol=1e-4)
        assert got.heatmaps is not None and want.heatmaps is not None
        np.testing.assert_allclose(got.heatmaps, want.heatmaps, atol=1e-4)
        off.append(float(np.mean(want.heatmaps == REGION_OFF_LOGIT)))
    assert off[0] == 0.0 and 0.3 < off[1] < 0.7, off  # the gated case was really exercised
    sp.close()


@needs_kernel
def test_results_do_not_alias_between_frames(gated_checkpoint: Path, frame64: np.ndarray) -> None:
    sp = create_backend("sparse-cpu", gated_checkpoint, device="cpu")
    first = sp.infer(frame64)
    joints, masks = first.joints.copy(), [m.copy() for m in first.masks]
    assert first.heatmaps is not None
    heatmaps = first.heatmaps.copy()  # the compiled head's maps live in reused buffers
    sp.infer(np.zeros_like(frame64))
    np.testing.assert_array_equal(first.joints, joints)
    np.testing.assert_array_equal(first.heatmaps, heatmaps)
    for a, b in zip(first.masks, masks, strict=True):
        np.testing.assert_array_equal(a, b)


def test_refuses_what_it_cannot_run(
    gated_checkpoint: Path, dense_checkpoint: Path, tmp_path: Path
) -> None:
    with pytest.raises(BackendError, match="dense model"):
        create_backend("sparse-cpu", dense_checkpoint, device="cpu")
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"x")
    with pytest.raises(BackendError, match="safetensors"):
        create_backend("sparse-cpu", onnx_file, device="cpu")
    with pytest.raises(BackendError, match="CPU only"):
        create_backend("sparse-cpu", gated_checkpoint, device="cuda")
    with pytest.raises(ValueError, match="num_threads"):
        create_backend("sparse-cpu", gated_checkpoint, device="cpu", num_threads=0)


@needs_kernel
def test_auto_picks_sparse_cpu_for_gated_on_cpu(
    gated_checkpoint: Path, dense_checkpoint: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        gated = create_backend("auto", gated_checkpoint, device="cpu")
    assert gated.name == "sparse-cpu"
    assert any("picked sparse-cpu" in r.getMessage() for r in caplog.records)
    assert create_backend("auto", dense_checkpoint, device="cpu").name == CPU_DENSE


def test_auto_falls_back_without_kernel(
    gated_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sparse_pose_ros.sparse.cpu_kernel as ck

    monkeypatch.setattr(ck, "load_cpu_kernel", lambda verbose=False: None)
    names = [n for n, _ in base.auto_candidates("cpu", str(gated_checkpoint))]
    assert names.index("sparse-cpu") < names.index("onnxruntime")
    assert create_backend("auto", gated_checkpoint, device="cpu").name == CPU_DENSE


@needs_kernel
def test_adaptive_path_choice_keeps_results(
    gated_checkpoint: Path, frame64: np.ndarray, tmp_path: Path
) -> None:
    ref = create_backend("torch", gated_checkpoint, device="cpu").infer(frame64)
    sp = create_backend("sparse-cpu", gated_checkpoint, device="cpu", cache_dir=str(tmp_path))
    assert sp.options["adaptive"] and 0.0 <= sp.crossover <= ALWAYS_SPARSE
    for crossover, path in ((0.0, "dense"), (ALWAYS_SPARSE, "sparse")):
        sp.crossover = crossover
        sp.infer(frame64)  # the first frame of a regime may still run the other path
        got = sp.infer(frame64)
        assert sp.last_path == path
        np.testing.assert_allclose(got.joints, ref.joints, atol=1e-4)
        for g, w in zip(got.masks, ref.masks, strict=True):
            np.testing.assert_array_equal(g, w)
        assert got.density == pytest.approx(ref.density)
    fixed = create_backend("sparse-cpu", gated_checkpoint, device="cpu", adaptive=False)
    assert fixed.crossover == ALWAYS_SPARSE and not fixed.options["adaptive"]


@pytest.fixture(scope="module")
def movenet_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MoveNet Lightning's architecture (stride 32, TF 'SAME', 1x1 to 1280, FPN neck,
    head_pre) at 64 px with random weights and BN statistics, gated strided blocks too."""
    import torch

    from sparse_pose_ros.model.checkpoint import save_checkpoint
    from sparse_pose_ros.model.network import PoseNetwork, movenet_config

    torch.manual_seed(3)
    net = PoseNetwork(movenet_config("lightning", input_size=64, gate_strided=True)).eval()
    g = torch.Generator().manual_seed(3)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    path = tmp_path_factory.mktemp("ckpt") / "movenet_lightning.safetensors"
    save_checkpoint(path, net)
    return path


@needs_kernel
@pytest.mark.parametrize("threads", [1, 2])
def test_movenet_architecture_matches_torch_backend(
    movenet_checkpoint: Path, frame64: np.ndarray, threads: int
) -> None:
    """The compiled backbone with MoveNet's FPN, the person box and the head on its window
    compiled too (``window_head_plan``). adaptive=False: the adaptive path's dense ONNX export
    of this architecture belongs to export/ and is not there yet."""
    ref = create_backend("torch", movenet_checkpoint, device="cpu")
    sp = create_backend("sparse-cpu", movenet_checkpoint, device="cpu", num_threads=threads,
                        adaptive=False)  # fmt: skip
    assert sp.runner.head == "cpp" and sp.runner._neck_head is not None
    assert 32 in sp.policy and sp.info.input_size == 64
    for threshold in (0.3, 0.5, 0.7):
        ref.set_mask_threshold(threshold)
        sp.set_mask_threshold(threshold)
        want, got = ref.infer(frame64), sp.infer(frame64)
        for g, w in zip(got.masks, want.masks, strict=True):
            np.testing.assert_array_equal(g, w)
        scale = max(1.0, float(np.abs(want.heatmaps).max()))
        np.testing.assert_allclose(got.joints, want.joints, atol=1e-4 * scale)
        np.testing.assert_allclose(got.heatmaps, want.heatmaps, atol=1e-4 * scale)
        # density from the kernel's own counts (TF 'SAME' strided blocks included) = from masks
        assert got.density == pytest.approx(want.density, rel=1e-9)
        assert got.block_density == pytest.approx(want.block_density, rel=1e-9)
    with pytest.raises(ValueError, match="multiple of 32"):
        create_backend("sparse-cpu", movenet_checkpoint, device="cpu", input_size=48,
                       adaptive=False)  # fmt: skip
    sp.close()


@needs_kernel
def test_a_wrong_start_up_choice_is_corrected_while_running(
    gated_checkpoint: Path, frame64: np.ndarray, tmp_path: Path
) -> None:
    """A start-up calibration under load said "dense always"; live frames where dense is
    really the slower path bring the choice back to sparse, within a bounded number of frames,
    and /diagnostics (Backend.diagnostics) says so."""
    import time

    sp = create_backend("sparse-cpu", gated_checkpoint, device="cpu", cache_dir=str(tmp_path),
                        probe_every=5)
    sp.set_mask_threshold(0.5)
    dense_infer = sp._dense.infer

    def slow_dense(x: np.ndarray):  # live: ORT dense costs 25 ms more than measured at start
        time.sleep(0.025)
        return dense_infer(x)

    sp._dense.infer = slow_dense
    sp.crossover = 0.0  # the noisy start's verdict
    assert sp.diagnostics()["path_crossover_calibrated"] == 0.0
    paths = []
    for _ in range(40):
        sp.infer(frame64)
        paths.append(sp.last_path)
    assert paths[0] == "sparse"  # no fraction known yet: first frame measures it
    assert "dense" in paths[1:5]  # the wrong verdict was in force ...
    assert paths[-10:].count("sparse") >= 8, paths  # ... and is gone (probes aside)
    d = sp.diagnostics()
    assert d["path_live"] is True and d["path_crossover"] > 0.0
    assert d["path_dense_ms"] > d["path_sparse_ms"]
    sp.close()


def test_prewake_setting_is_read_from_the_environment(caplog: pytest.LogCaptureFixture) -> None:
    """SPARSE_POSE_PREWAKE_US: unset or empty = the default, an integer >= 0 as given (0 = off),
    anything else the default with a warning that names the value."""
    from sparse_pose_ros.backends.sparse_cpu_backend import DEFAULT_PREWAKE_US, prewake_us

    assert prewake_us({}) == DEFAULT_PREWAKE_US
    assert prewake_us({"SPARSE_POSE_PREWAKE_US": " "}) == DEFAULT_PREWAKE_US
    assert prewake_us({"SPARSE_POSE_PREWAKE_US": "0"}) == 0
    assert prewake_us({"SPARSE_POSE_PREWAKE_US": "2500"}) == 2500
    with caplog.at_level(logging.WARNING):
        assert prewake_us({"SPARSE_POSE_PREWAKE_US": "fast"}) == DEFAULT_PREWAKE_US
        assert prewake_us({"SPARSE_POSE_PREWAKE_US": "-5"}) == DEFAULT_PREWAKE_US
    assert "'fast'" in caplog.text and "'-5'" in caplog.text
