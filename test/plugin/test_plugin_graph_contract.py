"""The exporter's SparseInvertedResidual nodes fit the plugin/kernels exactly.

For every custom node of an exported plugin graph: the op identity and attributes are what the
plugin creator registers, the weight shapes pass the plugin's shape rules, and the kernels'
numpy mirror run on the node's own initializers equals the exporter's dense reference of the op.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from sparse_pose_ros.export.onnx_export import export_network
from sparse_pose_ros.export.plugin_op import reference_forward
from sparse_pose_ros.export.random_model import random_network
from sparse_pose_ros.sparse.kernels import (
    FIELD_NAMES,
    INPUT_B_DW,
    INPUT_B_EXPAND,
    INPUT_B_PROJ,
    INPUT_W_DW,
    INPUT_W_EXPAND,
    INPUT_W_PROJ,
    NUM_INPUTS,
    ONNX_DOMAIN,
    PLUGIN_NAME,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    reference,
)
from sparse_pose_ros.sparse.kernels.weights import SparseBlockWeights


@pytest.fixture(scope="module")
def plugin_graph(tmp_path_factory: pytest.TempPathFactory) -> onnx.ModelProto:
    net = random_network(gated=True, input_size=64, seed=3)
    path = export_network(net, tmp_path_factory.mktemp("onnx") / "m.onnx", "plugin", input_size=64)
    return onnx.load(str(Path(path)))


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    out = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            out[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return out


def test_nodes_match_the_plugin_and_the_kernels(plugin_graph: onnx.ModelProto) -> None:
    consts = _constants(plugin_graph)
    nodes = [n for n in plugin_graph.graph.node if n.op_type == PLUGIN_NAME]
    assert nodes, "the plugin graph has no SparseInvertedResidual node"
    rng = np.random.default_rng(0)
    for node in nodes:
        assert node.domain == ONNX_DOMAIN and len(node.input) == NUM_INPUTS
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["plugin_version"].decode() == PLUGIN_VERSION
        assert attrs["plugin_namespace"].decode() == PLUGIN_NAMESPACE
        assert set(FIELD_NAMES) <= set(attrs)
        w = [consts[node.input[i]].astype(np.float32) for i in range(2, NUM_INPUTS)]
        weights = SparseBlockWeights(
            stride=int(attrs["stride"]),
            has_expand=bool(attrs["has_expand"]),
            residual=bool(attrs["residual"]),
            w_expand=w[INPUT_W_EXPAND - 2],
            b_expand=w[INPUT_B_EXPAND - 2],
            w_dw=w[INPUT_W_DW - 2],
            b_dw=w[INPUT_B_DW - 2],
            w_proj=w[INPUT_W_PROJ - 2],
            b_proj=w[INPUT_B_PROJ - 2],
        )
        # The plugin's shape rules (blockShape in sparseInvertedResidualPlugin.cpp).
        ce, co, c = weights.hidden_channels, weights.out_channels, weights.in_channels
        assert weights.w_dw.shape == (ce, 9) and weights.b_dw.shape == (ce,)
        assert weights.w_proj.shape == (co, ce) and weights.b_proj.shape == (co,)
        if weights.has_expand:
            assert weights.w_expand.shape == (ce, c) and weights.b_expand.size == ce
        if weights.residual:
            assert weights.stride == 1 and co == c

        hw = (11, 9)
        x = rng.standard_normal((2, c, *hw)).astype(np.float32)
        out_hw = tuple(reference.output_extent(s, weights.stride) for s in hw)
        g = (rng.random((2, 1, *out_hw)) < 0.4).astype(np.float32)
        got = reference.sparse_inverted_residual(x, g, weights)
        tensors = [torch.from_numpy(a) for a in (x, g, *w)]
        want = reference_forward(
            *tensors, weights.stride, weights.has_expand, weights.residual
        ).numpy()
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0, err_msg=node.name)
