"""The exporter's SparseInvertedResidual nodes fit the plugin/kernels exactly.

For every custom node of an exported plugin graph: the op identity and attributes are what the
plugin creator registers, the weight shapes pass the plugin's shape rules, and the kernels'
numpy mirror run on the node's own initializers equals the exporter's dense reference of the op.
The ``pad_before`` attribute is checked on single TF 'SAME' blocks (MoveNet's padding) traced
through the node: it comes from the block's real padding and the node computes the block.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import Tensor, nn

from sparse_pose_ros.export.onnx_export import _inline_identity_initializers, export_network
from sparse_pose_ros.export.plugin_op import (
    DOMAIN_VERSION,
    PluginNodeBlock,
    block_pad_before,
    reference_forward,
)
from sparse_pose_ros.export.random_model import random_network
from sparse_pose_ros.model.blocks import InvertedResidual, conv_pads
from sparse_pose_ros.sparse.kernels import (
    FIELD_NAMES,
    FIELD_PAD_BEFORE,
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
        # a symmetric-padding network: every node says so explicitly
        assert attrs[FIELD_PAD_BEFORE] == 1, node.name
        weights = _node_weights(node, attrs, consts)
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
        tensors = [torch.from_numpy(x), torch.from_numpy(g), *_weight_tensors(weights)]
        want = reference_forward(
            *tensors, weights.stride, weights.has_expand, weights.residual, weights.pad_before
        ).numpy()
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0, err_msg=node.name)


def _node_weights(
    node: onnx.NodeProto, attrs: dict[str, object], consts: dict[str, np.ndarray]
) -> SparseBlockWeights:
    """The plugin's fields and inputs 2..7 of ``node``, as the kernels' numpy mirror takes them."""
    w = [consts[node.input[i]].astype(np.float32) for i in range(2, NUM_INPUTS)]
    return SparseBlockWeights(
        stride=int(attrs["stride"]),  # type: ignore[call-overload]
        has_expand=bool(attrs["has_expand"]),
        residual=bool(attrs["residual"]),
        w_expand=w[INPUT_W_EXPAND - 2],
        b_expand=w[INPUT_B_EXPAND - 2],
        w_dw=w[INPUT_W_DW - 2],
        b_dw=w[INPUT_B_DW - 2],
        w_proj=w[INPUT_W_PROJ - 2],
        b_proj=w[INPUT_B_PROJ - 2],
        pad_before=int(attrs[FIELD_PAD_BEFORE]),  # type: ignore[call-overload]
    )


def _weight_tensors(weights: SparseBlockWeights) -> list[Tensor]:
    names = ("w_expand", "b_expand", "w_dw", "b_dw", "w_proj", "b_proj")
    return [torch.from_numpy(np.asarray(getattr(weights, n), dtype=np.float32)) for n in names]


# ---- pad_before: MoveNet's TF 'SAME' stride-2 depthwise through the node --------------------




def _tf_same_block(t: float, seed: int) -> InvertedResidual:
    torch.manual_seed(seed)
    block = InvertedResidual(8, 12, 2, t, gated=True, padding="tf_same").eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return block


def _export_node(block: InvertedResidual, x: Tensor, g: Tensor) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter warns that it is legacy
        torch.onnx.export(
            PluginNodeBlock(block, (x.shape[-2], x.shape[-1])).eval(),
            (x, g),
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=["x", "g"],
            custom_opsets={ONNX_DOMAIN: DOMAIN_VERSION},
        )
    model = onnx.load_from_string(buffer.getvalue())
    _inline_identity_initializers(model)  # the exporter's own step: plugin weights stay constants
    return model


@pytest.mark.parametrize("t", [6.0, 1.0], ids=["expand", "no-expand"])
@pytest.mark.parametrize("hw", [(16, 12), (9, 7)], ids=["even", "odd"])
def test_tf_same_node_carries_the_real_pad_and_computes_the_block(
    hw: tuple[int, int], t: float
) -> None:
    """Even input: TF 'SAME' pads (0, 1), the node says pad_before 0; odd: (1, 1), says 1. The
    kernels' mirror on the node's attributes + initializers, the node's torch reference and the
    block itself (its SameConv2d) agree; the symmetric pad on the same node is visibly wrong."""
    block = _tf_same_block(t, seed=4)
    x = torch.randn(2, 8, *hw, generator=torch.Generator().manual_seed(1))
    out_hw = tuple(reference.output_extent(s, 2) for s in hw)
    g = (torch.rand(2, 1, *out_hw, generator=torch.Generator().manual_seed(2)) < 0.4).float()
    g[:, :, 0, 0] = 1.0  # the corner output is where pad before 0 and 1 read different inputs
    block.fixed_mask = g
    with torch.no_grad():
        expected = block.forward_masked(x, block.compute_mask(x)).numpy()

    model = _export_node(block, x, g)
    (node,) = [n for n in model.graph.node if n.op_type == PLUGIN_NAME]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    top, _, left, _ = conv_pads(block.depthwise[0], *hw)
    assert attrs[FIELD_PAD_BEFORE] == top == left == (0 if hw[0] % 2 == 0 else 1)
    weights = _node_weights(node, attrs, _constants(model))
    got = reference.sparse_inverted_residual(x.numpy(), g.numpy(), weights)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    tensors = [x, g, *_weight_tensors(weights)]
    with torch.no_grad():
        ref = reference_forward(*tensors, 2, weights.has_expand, False, weights.pad_before)
    np.testing.assert_allclose(ref.numpy(), expected, atol=1e-4, rtol=0)
    if weights.pad_before == 0:  # the attribute matters: padding 1 on the same node is wrong
        with torch.no_grad():
            symmetric = reference_forward(*tensors, 2, weights.has_expand, False, 1).numpy()
        assert np.abs(symmetric - expected).max() > 1e-2


@pytest.mark.parametrize("hw", [(16, 9), (9, 16)], ids=["even-odd", "odd-even"])
def test_tf_same_node_refuses_mixed_parity(hw: tuple[int, int]) -> None:
    """Even x odd: TF 'SAME' pads 0 before one axis and 1 before the other; the plugin takes one
    pad_before, so the attribute cannot be written and the export must stop with the reason."""
    block = _tf_same_block(6.0, seed=4)
    top, _, left, _ = conv_pads(block.depthwise[0], *hw)
    assert top != left
    with pytest.raises(ValueError, match="one side even, the other odd"):
        block_pad_before(block, hw)
    # the same block on equal parities, and a symmetric block on any parities, are accepted
    assert block_pad_before(block, (16, 10)) == 0 and block_pad_before(block, (9, 7)) == 1
    symmetric = InvertedResidual(8, 12, 2, 6.0, gated=True).eval()
    assert block_pad_before(symmetric, hw) == 1


@pytest.mark.parametrize(
    ("pad_before", "stride", "hw", "why"),
    [
        (2, 2, (8, 8), "must be 0 or 1"),
        (0, 1, (8, 8), "only valid at stride 2"),
        (0, 2, (9, 8), "even H and W"),
    ],
)
def test_reference_refuses_what_the_plugin_refuses(
    pad_before: int, stride: int, hw: tuple[int, int], why: str
) -> None:
    ho, wo = (reference.output_extent(s, stride) for s in hw)
    args = (torch.zeros(1, 4, *hw), torch.ones(1, 1, ho, wo), torch.zeros(1), torch.zeros(1))
    dw = (torch.zeros(4, 9), torch.zeros(4), torch.zeros(4, 4), torch.zeros(4))
    with pytest.raises(ValueError, match=why):
        reference_forward(*args, *dw, stride, False, False, pad_before)
