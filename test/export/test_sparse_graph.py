"""portable_sparse graph (gather-scatter in standard ONNX ops) equals PyTorch in ONNX Runtime."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from real_frames import frames

from sparse_pose_ros.backends import create_backend
from sparse_pose_ros.export.onnx_export import export_network
from sparse_pose_ros.export.plugin_op import DOMAIN
from sparse_pose_ros.export.random_model import random_network
from sparse_pose_ros.model.checkpoint import save_checkpoint


@pytest.mark.parametrize("gate_strided", [False, True], ids=["residual", "strided"])
def test_sparse_graph_equals_torch_on_photos(tmp_path: Path, gate_strided: bool) -> None:
    net = random_network(gated=True, input_size=96, gate_strided=gate_strided, seed=8)
    ckpt = tmp_path / "net.safetensors"
    save_checkpoint(ckpt, net)
    ref = create_backend("torch", ckpt, device="cpu")
    ort = create_backend(
        "onnxruntime", ckpt, device="cpu", cache_dir=tmp_path, graph="portable_sparse"
    )
    model = onnx.load(str(ort.onnx_path))
    onnx.checker.check_model(model, full_check=True)
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["NonZero"] >= 2 * len(net.gated_blocks()) and ops["ScatterND"] > 0
    assert all(n.domain != DOMAIN for n in model.graph.node)
    # 0.02 / 0.98: almost every position on / off, exercising empty and full index lists
    photos = frames(96, ("astronaut", "coffee"))
    for threshold, names in (
        (0.5, ("astronaut", "coffee")),
        (0.02, ("coffee",)),
        (0.98, ("coffee",)),
    ):
        ref.set_mask_threshold(threshold)
        ort.set_mask_threshold(threshold)
        for x in (photos[n] for n in names):
            want, got = ref.infer(x), ort.infer(x)
            for g, w in zip(got.masks, want.masks, strict=True):
                np.testing.assert_array_equal(g, w)
            np.testing.assert_allclose(got.joints, want.joints, atol=1e-4)
            np.testing.assert_allclose(got.heatmaps, want.heatmaps, atol=1e-4)


def test_all_off_and_subset_policy(tmp_path: Path) -> None:
    import onnxruntime

    net = random_network(gated=True, input_size=64, seed=9)
    path = export_network(net, tmp_path / "s.onnx", "portable_sparse", sparse_blocks=[0, 2])
    sess = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = frames(64, ("rocket",))["rocket"]
    for logit in (60.0, -60.0):  # nothing active / everything active
        for b in net.gated_blocks():
            b.mask_unit.threshold_logit = logit  # type: ignore[union-attr]
        heat, joints, *masks = sess.run(None, {"input": x, "mask_threshold_logit": [logit]})
        with torch.inference_mode():
            ref = net(torch.from_numpy(x))
        assert all(m.sum() == (0 if logit > 0 else m.size) for m in masks)
        np.testing.assert_allclose(joints, ref.joints.numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="sparse_blocks"):
        export_network(net, tmp_path / "bad.onnx", "portable_sparse", sparse_blocks=[99])
    with pytest.raises(ValueError, match="opset"):
        export_network(net, tmp_path / "bad.onnx", "portable_sparse", opset=15)
