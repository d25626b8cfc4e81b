"""The TF.js parser on tiny graphs the tests write, and the numpy reference executor's ops
against PyTorch (SAME padding, depthwise, fused activations, half-pixel bilinear)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tfjs_fixtures import (
    attr_list_i,
    attr_list_s,
    attr_s,
    const,
    placeholder,
    write_graph,
)

from sparse_pose_ros.pretrained.reference import run_graph, same_pads
from sparse_pose_ros.pretrained.tfjs import TfjsFormatError, load_graph_model

RNG = np.random.default_rng(0)


def conv_graph(tmp_path, w, b, stride, padding="SAME", fused=("BiasAdd", "Relu6"),
               op="_FusedConv2D", **kw):
    nodes = [placeholder(), const("w"), const("b"), {
        "name": "y", "op": op, "input": ["input", "w", "b"],
        "attr": {"strides": attr_list_i([1, stride, stride, 1]), "padding": attr_s(padding),
                 "fused_ops": attr_list_s(list(fused)), "data_format": attr_s("NHWC"),
                 "dilations": attr_list_i([1, 1, 1, 1])}}]
    return load_graph_model(write_graph(tmp_path, nodes, {"w": w, "b": b}, **kw))


def test_float16_and_uint8_dequantisation_and_shards(tmp_path):
    w = RNG.normal(size=(3, 3, 2, 4)).astype(np.float32)
    b = np.linspace(-1, 1, 4).astype(np.float32)
    g = conv_graph(tmp_path, w, b, 1, quantise={"w": "float16", "b": "uint8"}, shards=3)
    np.testing.assert_array_equal(g.weights["w"], w.astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(g.weights["b"], b, atol=(2 / 255) / 2 + 1e-6)
    assert g.node("y").attrs["fused_ops"] == ["BiasAdd", "Relu6"]
    assert g.node("y").attrs["strides"] == [1, 1, 1, 1] and g.node("y").attrs["padding"] == "SAME"


@pytest.mark.parametrize("kw, match", [({"drop_bytes": 3}, "inside"),
                                       ({"extra_bytes": 4}, "trailing")])
def test_short_and_long_shards_are_refused(tmp_path, kw, match):
    w = np.ones((1, 1, 1, 1), np.float32)
    with pytest.raises(TfjsFormatError, match=match):
        conv_graph(tmp_path, w, np.zeros(1, np.float32), 1, **kw)


def test_missing_shard_and_const_without_data_are_refused(tmp_path):
    path = write_graph(tmp_path, [placeholder(), const("w"), const("ghost")],
                       {"w": np.ones(2, np.float32)})
    with pytest.raises(TfjsFormatError, match="ghost"):
        load_graph_model(path)
    path = write_graph(tmp_path, [placeholder(), const("w")], {"w": np.ones(2, np.float32)})
    (tmp_path / "group1-shard1of1.bin").unlink()
    with pytest.raises(TfjsFormatError, match="missing"):
        load_graph_model(path)


def test_unknown_op_is_named(tmp_path):
    path = write_graph(tmp_path, [placeholder(), {"name": "z", "op": "Erf",
                                                  "input": ["input"]}], {})
    with pytest.raises(NotImplementedError, match="Erf"):
        run_graph(load_graph_model(path), {"input": np.zeros(2)}, ["z"])


def test_same_padding_is_asymmetric_on_even_inputs():
    assert same_pads(256, 3, 2) == (0, 1)
    assert same_pads(255, 3, 2) == (1, 1)
    assert same_pads(64, 3, 1) == (1, 1)


@pytest.mark.parametrize("size", [8, 9])
@pytest.mark.parametrize("depthwise", [False, True])
def test_strided_same_conv_matches_torch_with_explicit_pads(tmp_path, size, depthwise):
    c = 3
    w = RNG.normal(size=(3, 3, c, 1 if depthwise else 5)).astype(np.float32)
    b = RNG.normal(size=(c if depthwise else 5,)).astype(np.float32)
    op = "FusedDepthwiseConv2dNative" if depthwise else "_FusedConv2D"
    g = conv_graph(tmp_path, w, b, 2, op=op, fused=("BiasAdd", "Relu"))
    x = RNG.normal(size=(1, size, size, c))
    got = run_graph(g, {"input": x}, ["y"])["y"]
    top, bottom = same_pads(size, 3, 2)
    xt = F.pad(torch.from_numpy(x).permute(0, 3, 1, 2), (top, bottom, top, bottom))
    wt = torch.from_numpy(w.astype(np.float64))
    wt = wt.permute(2, 3, 0, 1) if depthwise else wt.permute(3, 2, 0, 1)
    ref = F.relu(F.conv2d(xt, wt, torch.from_numpy(b.astype(np.float64)), stride=2,
                          groups=c if depthwise else 1)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)


def test_resize_bilinear_half_pixel_matches_torch(tmp_path):
    nodes = [placeholder(), const("size"), {
        "name": "y", "op": "ResizeBilinear", "input": ["input", "size"],
        "attr": {"half_pixel_centers": {"b": True}, "align_corners": {"b": False}}}]
    g = load_graph_model(write_graph(tmp_path, nodes, {"size": np.array([10, 14], np.int32)}))
    x = RNG.normal(size=(1, 5, 7, 2))
    got = run_graph(g, {"input": x}, ["y"])["y"]
    ref = F.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=(10, 14),
                        mode="bilinear", align_corners=False).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_decoding_ops_argmax_gathernd_pack_unpack(tmp_path):
    nodes = [placeholder(), const("axis"), const("idx"),
             {"name": "am", "op": "ArgMax", "input": ["input", "axis"], "attr": {}},
             {"name": "un", "op": "Unpack", "input": ["input"],
              "attr": {"num": {"i": "2"}, "axis": {"i": "0"}}},
             {"name": "pk", "op": "Pack", "input": ["un:1", "un"],
              "attr": {"N": {"i": "2"}, "axis": {"i": "0"}}},
             {"name": "g", "op": "GatherNd", "input": ["input", "idx"], "attr": {}}]
    weights = {"axis": np.array(1, np.int32), "idx": np.array([[1, 2], [0, 0]], np.int32)}
    g = load_graph_model(write_graph(tmp_path, nodes, weights))
    x = np.array([[1.0, 5.0, 2.0], [7.0, 0.0, 9.0]])
    out = run_graph(g, {"input": x}, ["am", "pk", "g"])
    assert out["am"].tolist() == [1, 2]
    np.testing.assert_array_equal(out["pk"], x[::-1])
    assert out["g"].tolist() == [9.0, 1.0]
