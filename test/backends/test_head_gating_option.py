"""The ``head_gating`` backend option (the node's ``head_gating`` parameter): on a checkpoint
saved without it, every CPU backend gives what the same weights saved *with* it give, and the
other way round; exports are cached per setting; dense models ignore it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sparse_pose_ros.backends import create_backend
from sparse_pose_ros.export.export_cache import (
    cached_onnx_path,
    effective_head_gating,
    ensure_onnx_export,
)
from sparse_pose_ros.model.checkpoint import read_metadata
from sparse_pose_ros.model.heads import REGION_OFF_LOGIT
from sparse_pose_ros.sparse.cpu_kernel import load_cpu_kernel

#: a threshold at which half of this random network's head region is off (see
#: test_sparse_cpu_backend.test_head_gating_matches_torch_backend)
HALF_OFF = 0.565


def test_effective_setting_rule() -> None:
    gated = {"gated": True, "head_gating": False}
    assert effective_head_gating(gated, None) is False
    assert effective_head_gating(gated, True) is True
    assert effective_head_gating({**gated, "head_gating": True}, False) is False
    assert effective_head_gating({"gated": False, "head_gating": False}, True) is False


def test_exports_are_cached_per_setting(gated_checkpoint: Path, tmp_path: Path) -> None:
    digest = read_metadata(gated_checkpoint)["model_hash"]
    on = ensure_onnx_export(str(gated_checkpoint), None, tmp_path, "portable", True)
    off = ensure_onnx_export(str(gated_checkpoint), None, tmp_path, "portable", None)
    assert on == cached_onnx_path(tmp_path, digest, 64, "portable", True)
    assert off == cached_onnx_path(tmp_path, digest, 64, "portable", False)
    assert on != off and on.is_file() and off.is_file()


def _backend(name: str, path: Path, cache: Path, head_gating: bool | None):  # noqa: ANN202
    if name == "sparse-cpu" and load_cpu_kernel() is None:
        pytest.skip("the compiled CPU kernel could not be built here (no C++ compiler)")
    opts = {} if name == "torch" else {"cache_dir": cache}
    b = create_backend(name, path, device="cpu", head_gating=head_gating, **opts)
    b.set_mask_threshold(HALF_OFF)
    return b


@pytest.mark.parametrize("name", ["torch", "onnxruntime", "sparse-cpu"])
def test_option_equals_the_checkpoint_setting(
    name: str, gated_checkpoint: Path, head_gated_checkpoint: Path, frame64: np.ndarray,
    tmp_path: Path,
) -> None:  # fmt: skip
    turned_on = _backend(name, gated_checkpoint, tmp_path, True).infer(frame64)
    saved_on = _backend("torch", head_gated_checkpoint, tmp_path, None).infer(frame64)
    turned_off = _backend(name, head_gated_checkpoint, tmp_path, False).infer(frame64)
    saved_off = _backend("torch", gated_checkpoint, tmp_path, None).infer(frame64)
    np.testing.assert_allclose(turned_on.joints, saved_on.joints, atol=1e-4)
    np.testing.assert_allclose(turned_off.joints, saved_off.joints, atol=1e-4)
    assert turned_on.heatmaps is not None and turned_off.heatmaps is not None
    off_share = float(np.mean(turned_on.heatmaps == REGION_OFF_LOGIT))
    assert 0.3 < off_share < 0.7, off_share  # the region really cut the head
    assert not np.any(turned_off.heatmaps == REGION_OFF_LOGIT)
    assert not np.allclose(turned_on.joints, turned_off.joints, atol=1e-3)


def test_dense_model_ignores_the_option(dense_checkpoint: Path, frame64: np.ndarray) -> None:
    b = create_backend("torch", dense_checkpoint, device="cpu", head_gating=True)
    assert b.net.cfg.head_gating is False
    assert np.isfinite(b.infer(frame64).joints).all()
