"""OpenVINO backend: the portable graph onnxruntime runs, compiled by OpenVINO's CPU plugin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sparse_pose_ros.backends import BackendError, create_backend

ov = pytest.importorskip("openvino", reason="openvino is not installed (./run installs it)")

from sparse_pose_ros.backends.openvino_backend import (  # noqa: E402
    OpenVinoBackend,
    bf16_is_fast,
    cpu_supports_bf16,
    session_precision,
)


def test_f32_matches_onnxruntime_and_shares_its_export(
    dense_checkpoint: Path, tmp_path: Path, frame64: np.ndarray
) -> None:
    ort = create_backend("onnxruntime", dense_checkpoint, device="cpu", cache_dir=tmp_path)
    ovb = OpenVinoBackend(str(dense_checkpoint), device="cpu", cache_dir=tmp_path)
    assert ovb.onnx_path == ort.onnx_path  # exported once, read by both
    assert ovb.precision == "f32"
    assert ovb.info.source == str(dense_checkpoint)
    assert ovb.info.model_hash == ort.info.model_hash
    want, got = ort.infer(frame64), ovb.infer(frame64)
    np.testing.assert_allclose(got.joints, want.joints, atol=1e-4)
    np.testing.assert_allclose(got.confidence, want.confidence, atol=1e-4)
    assert got.heatmaps is not None and want.heatmaps is not None
    np.testing.assert_allclose(got.heatmaps, want.heatmaps, atol=1e-3)
    assert got.density == want.density == 1.0


def test_gated_graph_masks_follow_the_threshold(
    gated_checkpoint: Path, tmp_path: Path, frame64: np.ndarray
) -> None:
    """The threshold input of a gated graph is fed: masks and density equal onnxruntime's at
    two thresholds, and a higher threshold computes less."""
    ort = create_backend("onnxruntime", gated_checkpoint, device="cpu", cache_dir=tmp_path)
    ovb = OpenVinoBackend(str(gated_checkpoint), device="cpu", cache_dir=tmp_path)
    densities = []
    for threshold in (0.3, 0.7):
        ort.set_mask_threshold(threshold)
        ovb.set_mask_threshold(threshold)
        want, got = ort.infer(frame64), ovb.infer(frame64)
        assert len(got.masks) == len(want.masks) > 0
        for a, b in zip(got.masks, want.masks, strict=True):
            assert np.mean(a != b) < 0.02  # a logit exactly at the threshold may flip
        assert got.density == pytest.approx(want.density, abs=0.02)
        np.testing.assert_allclose(got.joints, want.joints, atol=1e-3)
        densities.append(got.density)
    assert densities[1] < densities[0]


def test_bad_options_and_input(dense_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="precision"):
        OpenVinoBackend(str(dense_checkpoint), device="cpu", cache_dir=tmp_path, precision="fp8")
    with pytest.raises(BackendError, match="CPU"):
        OpenVinoBackend(str(dense_checkpoint), device="cuda", cache_dir=tmp_path)
    with pytest.raises(ValueError, match=">= 1"):
        OpenVinoBackend(str(dense_checkpoint), device="cpu", cache_dir=tmp_path, num_threads=0)
    other = tmp_path / "model.pt"
    other.write_bytes(b"x")
    with pytest.raises(BackendError, match="model.pt"):
        create_backend("openvino", other, device="cpu")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a graph")
    with pytest.raises(BackendError, match="broken.onnx"):
        create_backend("openvino", broken, device="cpu")
    backend = OpenVinoBackend(str(dense_checkpoint), device="cpu", cache_dir=tmp_path,
                              num_threads=1)  # fmt: skip
    assert backend.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    with pytest.raises(ValueError, match="probability"):
        backend.set_mask_threshold(1.0)
    with pytest.raises(ValueError, match="shape"):
        backend.infer(np.zeros((1, 3, 65, 65), dtype=np.float32))


#: Runs in a child process: after OpenVINO compiles for bf16 (AMX tiles on this CPU) a later
#: fork of the same process (a DataLoader's workers in another test) segfaults it.
_BF16_CHILD = """
import sys, numpy as np
from sparse_pose_ros.backends.openvino_backend import OpenVinoBackend
path, cache = sys.argv[1], sys.argv[2]
x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
f32 = OpenVinoBackend(path, device="cpu", cache_dir=cache)
bf16 = OpenVinoBackend(path, device="cpu", cache_dir=cache, precision="bf16")
a, b = f32.infer(x), bf16.infer(x)
assert bf16.precision == "bf16", bf16.precision
assert np.all(np.isfinite(b.joints))
assert not np.array_equal(a.heatmaps, b.heatmaps), "bf16 gave f32's numbers"
print("BF16_OK")
"""


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no native bf16 (AMX / "
                    "AVX512-BF16): OpenVINO would emulate it")  # fmt: skip
def test_bf16_is_what_it_says(dense_checkpoint: Path, tmp_path: Path) -> None:
    """bf16 compiles to bf16 and changes the numbers (which is why it is not the default)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _BF16_CHILD, str(dense_checkpoint),
                           str(tmp_path)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0 and "BF16_OK" in done.stdout, done.stderr[-2000:]


def test_bf16_strips_names_bf16_only_for_a_strip_on_native_bf16() -> None:
    """The rule of ``bf16_strips``: bf16 needs a strip *and* native bf16; every other
    precision is passed through unchanged."""
    assert session_precision("bf16_strips", strip=True, native_bf16=True) == "bf16"
    assert session_precision("bf16_strips", strip=False, native_bf16=True) == "f32"
    assert session_precision("bf16_strips", strip=True, native_bf16=False) == "f32"
    for other in ("f32", "bf16", "f16", "auto"):
        assert session_precision(other, strip=True, native_bf16=False) == other
        assert session_precision(other, strip=False, native_bf16=True) == other


def test_bf16_strips_wait_for_amx_or_an_amd_cpu() -> None:
    """bf16 counts as fast with AMX tiles, or AVX512-BF16 on AMD; not on an Intel CPU with
    AVX512-BF16 alone (measured slower there), nor without the instruction."""
    assert bf16_is_fast(["avx512f", "avx512_bf16", "amx_bf16", "amx_tile"], "GenuineIntel")
    assert bf16_is_fast(["avx512f", "avx512_bf16"], "AuthenticAMD")
    assert not bf16_is_fast(["avx512f", "avx512_bf16", "avx512_fp16"], "GenuineIntel")
    assert not bf16_is_fast(["avx512f", "avx2"], "AuthenticAMD")
    assert not bf16_is_fast([], "")


def test_bf16_strips_compile_to_f32_where_bf16_is_not_fast(
    dense_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sparse_pose_ros.backends import openvino_backend as ovb

    monkeypatch.setattr(ovb, "bf16_is_fast", lambda *args, **kw: False)
    strip = ovb.OpenVinoBackend(str(dense_checkpoint), precision="bf16_strips", input_width=32,
                                device="cpu", cache_dir=str(tmp_path), input_size=64)  # fmt: skip
    assert strip.precision == "f32"


#: Child process, as above: a strip and a square session of one model under "bf16_strips".
_BF16_STRIPS_CHILD = """
import sys, numpy as np
from sparse_pose_ros.backends.openvino_backend import OpenVinoBackend
path, cache = sys.argv[1], sys.argv[2]
kw = dict(device="cpu", cache_dir=cache, input_size=64)
square = OpenVinoBackend(path, precision="bf16_strips", **kw)
strip = OpenVinoBackend(path, precision="bf16_strips", input_width=32, **kw)
strip_f32 = OpenVinoBackend(path, input_width=32, **kw)
assert square.precision == "f32", square.precision
assert strip.precision == "bf16", strip.precision
x = np.random.default_rng(3).standard_normal((1, 3, 64, 32)).astype(np.float32)
a, b = strip_f32.infer(x), strip.infer(x)
assert np.all(np.isfinite(b.joints))
assert not np.array_equal(a.heatmaps, b.heatmaps), "the bf16 strip gave f32's numbers"
print("BF16_STRIPS_OK")
"""


@pytest.mark.skipif(not (cpu_supports_bf16() and bf16_is_fast()),
                    reason="no fast native bf16 here (AMX, or AVX512-BF16 on AMD): bf16_strips "
                    "compiles every session to f32 on this CPU")  # fmt: skip
def test_bf16_strips_compiles_strips_to_bf16_and_squares_to_f32(
    dense_checkpoint: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _BF16_STRIPS_CHILD, str(dense_checkpoint),
                           str(tmp_path)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0 and "BF16_STRIPS_OK" in done.stdout, done.stderr[-2000:]


def test_auto_prefers_openvino_on_the_cpu_and_passes_precision_only_to_it(
    dense_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sparse_pose_ros.backends import base

    monkeypatch.setenv("SPARSE_POSE_CACHE", str(tmp_path))
    picked = create_backend("auto", dense_checkpoint, device="cpu", precision="f32",
                            num_threads=1)  # fmt: skip
    assert picked.name == "openvino" and picked.precision == "f32"
    names = [n for n, _ in base.auto_candidates("cpu", str(dense_checkpoint))]
    assert names.index("openvino") < names.index("onnxruntime")
    # without OpenVINO, onnxruntime gets the call and not the option it does not take
    monkeypatch.setitem(base._IMPLEMENTATIONS, "openvino", ("no_such_module_xyz", "X"))
    fallback = create_backend("auto", dense_checkpoint, device="cpu", precision="bf16")
    assert fallback.name == "onnxruntime"


def test_auto_keeps_openvino_off_a_gpu_request(dense_checkpoint: Path) -> None:
    from sparse_pose_ros.backends import base

    if base.cuda_gpu_present()[0]:
        pytest.skip("a CUDA GPU is present: device auto would resolve to it")
    names = [n for n, _ in base.auto_candidates("cuda", str(dense_checkpoint))]
    assert "openvino" not in names


def test_a_strip_runs_like_onnxruntimes(dense_checkpoint: Path, tmp_path: Path) -> None:
    """The node's tracking strips on its CPU runtime: the same export and joints as
    onnxruntime on a 64 × 32 input."""
    ort = create_backend("onnxruntime", dense_checkpoint, device="cpu", cache_dir=tmp_path,
                         input_size=64, input_width=32)
    ovb = OpenVinoBackend(str(dense_checkpoint), device="cpu", cache_dir=tmp_path,
                          input_size=64, input_width=32)
    assert ovb.onnx_path == ort.onnx_path and ovb.info.input_hw == (64, 32)
    x = np.random.default_rng(2).standard_normal((1, 3, 64, 32)).astype(np.float32)
    np.testing.assert_allclose(ovb.infer(x).joints, ort.infer(x).joints, atol=1e-4)
    ovb.warmup(1)
