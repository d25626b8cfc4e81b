"""Plugin graph: valid ONNX (full check), one custom node per gated block, correct contract.

The contract is checked numerically without TensorRT: onnx's reference evaluator runs the graph
with an independent numpy implementation of the custom op (dense then masked, written from the
contract table in ``export/plugin_op.py``), and must equal the PyTorch network; a TF 'SAME'
stride-2 block (MoveNet's padding) traced through the node must equal the block itself.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun
from real_frames import frames
from torch import nn

from sparse_pose_ros.export.onnx_export import _inline_identity_initializers, export_network
from sparse_pose_ros.export.plugin_op import (
    DOMAIN,
    DOMAIN_VERSION,
    OP_TYPE,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    PluginNodeBlock,
    register_schema,
)
from sparse_pose_ros.export.random_model import random_network
from sparse_pose_ros.model.blocks import InvertedResidual


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
        pad_before=1,
        plugin_version=None,
        plugin_namespace=None,
    ):
        h = _relu6(np.einsum("ec,bchw->behw", we, x) + be[:, None, None]) if has_expand else x
        b, ce, hh, ww = h.shape
        ho, wo = (hh - 1) // stride + 1, (ww - 1) // stride + 1
        # pad_before zeros before each axis, and after it as many as the last output's taps
        # reach past the input (TF 'SAME' on an even side: 1)
        after_h = stride * (ho - 1) + 3 - hh - pad_before
        after_w = stride * (wo - 1) + 3 - ww - pad_before
        pad = np.pad(h, ((0, 0), (0, 0), (pad_before, after_h), (pad_before, after_w)))
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
            "pad_before": 1,  # symmetric padding=1 network
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
        "pad_before",
        "plugin_version",
        "plugin_namespace",
    }
    assert not schema.attributes["pad_before"].required  # absent = 1, as before the attribute




@pytest.mark.parametrize("hw", [(16, 12), (9, 7)], ids=["even", "odd"])
def test_tf_same_node_equals_the_block(tmp_path: Path, hw: tuple[int, int]) -> None:
    """The onnx.reference run of the node (independent numpy, asymmetric pad) = the block's own
    SameConv2d forward; the node passes the full check with its pad_before attribute."""
    torch.manual_seed(7)
    block = InvertedResidual(8, 12, 2, 6.0, gated=True, padding="tf_same").eval()
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    x = torch.randn(1, 8, *hw, generator=gen)
    g = (torch.rand(1, 1, (hw[0] + 1) // 2, (hw[1] + 1) // 2, generator=gen) < 0.5).float()
    g[..., 0, 0] = 1.0  # the corner reads different inputs under pad before 0 and 1
    block.fixed_mask = g
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter warns that it is legacy
        torch.onnx.export(
            PluginNodeBlock(block, hw).eval(),
            (x, g),
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=["x", "g"],
            custom_opsets={DOMAIN: DOMAIN_VERSION},
        )
    model = onnx.load_from_string(buffer.getvalue())
    _inline_identity_initializers(model)
    register_schema()
    onnx.checker.check_model(model, full_check=True)
    (node,) = _custom_nodes(model)
    pad_before = {a.name: a.i for a in node.attribute}["pad_before"]
    assert pad_before == (0 if hw[0] % 2 == 0 else 1)
    path = tmp_path / "node.onnx"
    onnx.save(model, str(path))
    (got,) = ReferenceEvaluator(str(path), new_ops=[SparseInvertedResidual]).run(
        None, {"x": x.numpy(), "g": g.numpy()}
    )
    with torch.no_grad():
        want = block.forward_masked(x, block.compute_mask(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_plugin_graph_applies_the_skip_fill_after_the_node(tmp_path: Path) -> None:
    """The plugin keeps its contract (zero / X where the mask is off); a ``skip_fill``
    checkpoint's fill is standard ops after each node, and the graph equals the network."""
    from dataclasses import replace

    from sparse_pose_ros.model.network import PoseNetwork

    base = random_network(gated=True, input_size=64, gate_strided=True, seed=7)
    net = PoseNetwork(replace(base.cfg, skip_fill=True)).eval()
    net.load_state_dict(base.state_dict(), strict=False)
    g = torch.Generator().manual_seed(7)
    for b in net.gated_blocks():
        b.skip_fill.copy_(torch.randn(b.out_channels, generator=g))
    path = export_network(net, tmp_path / "plugin.onnx", graph="plugin")
    sess = ReferenceEvaluator(str(path), new_ops=[SparseInvertedResidual])
    x = frames(64, ("astronaut",))["astronaut"]
    heatmaps, joints, *masks = sess.run(None, {"input": x,
                                               "mask_threshold_logit": np.zeros(1, np.float32)})
    assert 0 < sum(float(m.sum()) for m in masks) < sum(m.size for m in masks)
    with torch.inference_mode():
        ref = net(torch.from_numpy(x))
        unfilled = base(torch.from_numpy(x))
    scale = float(ref.heatmaps.abs().max())  # a random network's maps are small
    assert float((ref.heatmaps - unfilled.heatmaps).abs().max()) > 0.1 * scale
    np.testing.assert_allclose(heatmaps, ref.heatmaps.numpy(), atol=1e-3 * scale)
    np.testing.assert_allclose(joints, ref.joints.numpy(), atol=1e-4)
