"""Plugin graph: valid ONNX (full check), one custom node per gated block, correct contract.

The contract is checked numerically without TensorRT: onnx's reference evaluator runs the graph
with an independent numpy implementation of the custom op (dense then masked, written from the
contract table in ``export/plugin_op.py``), and must equal the PyTorch network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun
from real_frames import frames

from sparse_pose_ros.export.onnx_export import export_network
from sparse_pose_ros.export.plugin_op import (
    DOMAIN,
    OP_TYPE,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    register_schema,
)
from sparse_pose_ros.export.random_model import random_network


def _relu6(a: np.ndarray) -> np.ndarray:
    return np.clip(a, 0.0, 6.0)


class SparseInvertedResidual(OpRun):
    """Numpy implementation of the contract for onnx.reference."""

    op_domain = DOMAIN

    def _run(  # type: ignore[override]
        self,
        x,
        g,
        we,
        be,
        wd,
        bd,
        wp,
        bp,
        stride=1,
        has_expand=1,
        residual=1,
        plugin_version=None,
        plugin_namespace=None,
    ):
        h = _relu6(np.einsum("ec,bchw->behw", we, x) + be[:, None, None]) if has_expand else x
        b, ce, hh, ww = h.shape
        ho, wo = (hh - 1) // stride + 1, (ww - 1) // stride + 1
        pad = np.pad(h, ((0, 0), (0, 0), (1, 1), (1, 1)))
        d = np.zeros((b, ce, ho, wo), dtype=np.float32)
        for ky in range(3):
            for kx in range(3):
                tap = pad[
                    :,
                    :,
                    ky : ky + stride * (ho - 1) + 1 : stride,
                    kx : kx + stride * (wo - 1) + 1 : stride,
                ]
                d += wd[:, ky * 3 + kx][None, :, None, None] * tap
        d = _relu6(d + bd[:, None, None])
        p = (np.einsum("oe,behw->bohw", wp, d) + bp[:, None, None]) * g
        return ((x + p if residual else p).astype(np.float32),)


def _custom_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.domain == DOMAIN and n.op_type == OP_TYPE]


@pytest.mark.parametrize("gate_strided", [False, True])
def test_plugin_graph_structure(tmp_path: Path, gate_strided: bool) -> None:
    net = random_network(gated=True, input_size=64, gate_strided=gate_strided, seed=5)
    path = export_network(net, tmp_path / "plugin.onnx", graph="plugin")
    model = onnx.load(str(path))
    register_schema()
    onnx.checker.check_model(model, full_check=True)
    nodes = _custom_nodes(model)
    gated = net.gated_blocks()
    assert len(nodes) == len(gated)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    for node, block in zip(nodes, gated, strict=True):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs == {
            "stride": block.stride,
            "has_expand": int(block.expand is not None),
            "residual": int(block.use_residual),
            "plugin_version": PLUGIN_VERSION.encode(),
            "plugin_namespace": PLUGIN_NAMESPACE.encode(),
        }
        assert len(node.input) == 8
        c, ce, co = block.in_channels, block.hidden_channels, block.out_channels
        shapes = [inits[name].shape for name in node.input[2:]]
        expand_shapes = [(ce, c), (ce,)] if block.expand is not None else [(1,), (1,)]
        assert shapes == [*expand_shapes, (ce, 9), (ce,), (co, ce), (co,)]
    assert {o.domain for o in model.opset_import} == {"", DOMAIN}
    if gate_strided:  # the stride-2 and expand-ratio-1 variants are both exercised
        strides = {
            onnx.helper.get_attribute_value(a)
            for n in nodes
            for a in n.attribute
            if a.name == "stride"
        }
        assert strides == {1, 2}
        assert any(a.name == "has_expand" and a.i == 0 for n in nodes for a in n.attribute)


@pytest.mark.parametrize("gate_strided", [False, True])
def test_plugin_contract_equals_torch_on_real_frame(tmp_path: Path, gate_strided: bool) -> None:
    net = random_network(gated=True, input_size=64, gate_strided=gate_strided, seed=6)
    path = export_network(net, tmp_path / "plugin.onnx", graph="plugin")
    sess = ReferenceEvaluator(str(path), new_ops=[SparseInvertedResidual])
    x = frames(64, ("astronaut",))["astronaut"]
    feed = {"input": x, "mask_threshold_logit": np.zeros(1, np.float32)}
    heatmaps, joints, *masks = sess.run(None, feed)
    with torch.inference_mode():
        ref = net(torch.from_numpy(x))
    ref_masks = [m.hard.numpy() for m in ref.masks if m is not None]
    assert len(masks) == len(ref_masks)
    for got, want in zip(masks, ref_masks, strict=True):
        np.testing.assert_array_equal(got, want)
    assert 0 < sum(float(m.sum()) for m in masks) < sum(m.size for m in masks)
    np.testing.assert_allclose(joints, ref.joints.numpy(), atol=1e-4)
    np.testing.assert_allclose(heatmaps, ref.heatmaps.numpy(), atol=1e-4)


def test_register_schema_is_idempotent() -> None:
    register_schema()
    register_schema()
    schema = onnx.defs.get_schema(OP_TYPE, 1, DOMAIN)
    assert set(schema.attributes) == {
        "stride",
        "has_expand",
        "residual",
        "plugin_version",
        "plugin_namespace",
    }
