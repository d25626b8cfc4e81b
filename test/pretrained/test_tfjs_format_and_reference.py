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
    op,
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


@pytest.mark.parametrize("size, top, bottom", [(8, 0, 1), (9, 1, 1)])  # TF SAME, by hand
@pytest.mark.parametrize("depthwise", [False, True])
def test_strided_same_conv_matches_torch_with_explicit_pads(tmp_path, size, top, bottom,
                                                            depthwise):
    c = 3
    w = RNG.normal(size=(3, 3, c, 1 if depthwise else 5)).astype(np.float32)
    b = RNG.normal(size=(c if depthwise else 5,)).astype(np.float32)
    op = "FusedDepthwiseConv2dNative" if depthwise else "_FusedConv2D"
    g = conv_graph(tmp_path, w, b, 2, op=op, fused=("BiasAdd", "Relu"))
    x = RNG.normal(size=(1, size, size, c))
    got = run_graph(g, {"input": x}, ["y"])["y"]
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


@pytest.mark.parametrize("kind, levels", [("uint8", 255), ("uint16", 65535)])
def test_affine_dequantisation_is_exact(tmp_path, kind, levels):
    """value = q · scale + min, exactly: a grid of representable values survives unchanged."""
    q = np.arange(levels + 1, dtype=np.float64)[:: max(1, levels // 255)]
    grid = (-1.0 + 0.5 * np.concatenate([q, [levels]])).astype(np.float32)  # min -1, scale 0.5
    g = load_graph_model(write_graph(tmp_path, [const("w")], {"w": grid}, quantise={"w": kind}))
    assert g.weights["w"].dtype == np.float32
    np.testing.assert_array_equal(g.weights["w"], grid)


def test_several_groups_and_shards_keep_manifest_order(tmp_path):
    weights = {f"w{i}": RNG.normal(size=(i + 1, 3)).astype(np.float32) for i in range(5)}
    weights["k"] = np.arange(6, dtype=np.int32).reshape(2, 3)
    path = write_graph(tmp_path, [const(n) for n in weights], weights, groups=2, shards=3,
                       quantise={"w1": "float16"})
    assert len(list(tmp_path.glob("group*-shard*of3.bin"))) == 6
    g = load_graph_model(path)
    assert list(g.weights) == list(weights)
    for name, arr in weights.items():
        want = arr.astype(np.float16).astype(np.float32) if name == "w1" else arr
        assert g.weights[name].dtype == want.dtype
        np.testing.assert_array_equal(g.weights[name], want)


def test_unknown_quantisation_and_misdeclared_const_are_refused(tmp_path):
    w = np.ones((2, 2), np.float32)
    with pytest.raises(TfjsFormatError, match=r"model\.json: w: unknown quantisation 'int4'"):
        load_graph_model(write_graph(tmp_path, [const("w")], {"w": w}, quantise={"w": "int4"}))
    with pytest.raises(TfjsFormatError, match=r"w declares shape \[4\]"):
        load_graph_model(write_graph(tmp_path, [const("w", [4])], {"w": w}))
    with pytest.raises(TfjsFormatError, match="DT_INT32"):
        load_graph_model(write_graph(tmp_path, [const("w", [2, 2], "DT_INT32")], {"w": w}))
    ok = load_graph_model(write_graph(tmp_path, [const("w", [2, 2], "DT_FLOAT")], {"w": w}))
    assert ok.weights["w"].shape == (2, 2)


def test_short_shard_error_names_file_and_weight(tmp_path):
    weights = {"a": np.ones(4, np.float32), "b": np.ones(4, np.float32)}
    path = write_graph(tmp_path, [const("a"), const("b")], weights, drop_bytes=1)
    with pytest.raises(TfjsFormatError, match=r"model\.json: .* inside b"):
        load_graph_model(path)


def test_attrs_are_decoded_and_control_inputs_dropped(tmp_path):
    nodes = [placeholder(dtype="DT_INT32"), const("c"),
             op("y", "Mul", ["input", "c", "^input"], T={"type": "DT_INT32"},
                shape={"shape": {"dim": [{"size": "1"}, {"size": "-1"}]}},
                f={"f": 0.25}, b={"b": True}, i={"i": "7"}, e={"list": {}})]
    g = load_graph_model(write_graph(tmp_path, nodes, {"c": np.array(3, np.int32)}))
    y = g.node("y")
    assert y.inputs == ("input", "c")
    assert y.attrs == {"T": "DT_INT32", "shape": [1, -1], "f": 0.25, "b": True, "i": 7, "e": []}
    assert g.by_op("Const") == [g.node("c")] and g.node("input").attrs == {"dtype": "DT_INT32"}
    assert g.weights["c"].dtype == np.int32
    out = run_graph(g, {"input": np.array([1, 2], np.int64)}, ["y"])["y"]
    assert out.dtype == np.int32 and out.tolist() == [3, 6]  # declared dtype, not the feed's


def test_fused_relu6_valid_padding_and_unfused_depthwise(tmp_path):
    x = 4 * RNG.normal(size=(1, 7, 6, 3))
    w = RNG.normal(size=(3, 2, 3, 4)).astype(np.float32)
    b = RNG.normal(size=(4,)).astype(np.float32)
    dw = RNG.normal(size=(3, 3, 4, 1)).astype(np.float32)
    pw = RNG.normal(size=(1, 1, 4, 2)).astype(np.float32)
    conv_attrs = {"strides": attr_list_i([1, 1, 1, 1]), "data_format": attr_s("NHWC"),
                  "dilations": attr_list_i([1, 1, 1, 1])}
    nodes = [placeholder(), const("w"), const("b"), const("dw"), const("pw"), const("zero"),
             op("c", "_FusedConv2D", ["input", "w", "b"], padding=attr_s("VALID"),
                fused_ops=attr_list_s(["BiasAdd", "Relu6"]), **conv_attrs),
             op("d", "DepthwiseConv2dNative", ["c", "dw"], padding=attr_s("SAME"),
                **conv_attrs),
             op("p", "_FusedConv2D", ["d", "pw", "zero"], padding=attr_s("SAME"),
                fused_ops=attr_list_s(["BiasAdd"]), **conv_attrs)]
    g = load_graph_model(write_graph(tmp_path, nodes, {
        "w": w, "b": b, "dw": dw, "pw": pw, "zero": np.zeros(2, np.float32)}))
    out = run_graph(g, {"input": x}, ["c", "p"])
    t = lambda a: torch.from_numpy(np.asarray(a, np.float64))  # noqa: E731
    xt = t(x).permute(0, 3, 1, 2)
    c = torch.clamp(F.conv2d(xt, t(w).permute(3, 2, 0, 1), t(b)), 0, 6)
    d = F.conv2d(c, t(dw).permute(2, 3, 0, 1), padding=1, groups=4)
    p = F.conv2d(d, t(pw).permute(3, 2, 0, 1))
    assert 0 < (out["c"] == 6).mean() < 0.5  # Relu6's upper clamp is exercised
    np.testing.assert_allclose(out["c"], c.permute(0, 2, 3, 1).numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out["p"], p.permute(0, 2, 3, 1).numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("src, dst", [((5, 7), (8, 11)), ((8, 9), (5, 4)), ((1, 3), (2, 6))])
def test_resize_bilinear_half_pixel_general_ratios_match_torch(tmp_path, src, dst):
    nodes = [placeholder(), const("size"), op(
        "y", "ResizeBilinear", ["input", "size"], half_pixel_centers={"b": True},
        align_corners={"b": False})]
    g = load_graph_model(write_graph(tmp_path, nodes, {"size": np.array(dst, np.int32)}))
    x = RNG.normal(size=(2, *src, 3))
    got = run_graph(g, {"input": x}, ["y"])["y"]
    ref = F.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=dst, mode="bilinear",
                        align_corners=False).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_legacy_resize_and_unknown_conv_padding_are_refused(tmp_path):
    nodes = [placeholder(), const("size"), const("w"),
             op("r", "ResizeBilinear", ["input", "size"], half_pixel_centers={"b": False}),
             op("c", "Conv2D", ["input", "w"], strides=attr_list_i([1, 1, 1, 1]),
                padding=attr_s("EXPLICIT"))]
    g = load_graph_model(write_graph(tmp_path, nodes, {"size": np.array([4, 4], np.int32),
                                                       "w": np.ones((1, 1, 1, 1), np.float32)}))
    x = np.ones((1, 2, 2, 1))
    with pytest.raises(NotImplementedError, match="r: only half-pixel"):
        run_graph(g, {"input": x}, ["r"])
    with pytest.raises(NotImplementedError, match="c: padding 'EXPLICIT'"):
        run_graph(g, {"input": x}, ["c"])


def test_decoding_arithmetic_keeps_integers_exact(tmp_path):
    """MoveNet's decoding tail: integer ArgMax / FloorDiv / Mul / Sub index arithmetic, casts,
    SquaredDifference, Sqrt, RealDiv, Sigmoid, shape ops and ConcatV2, against numpy."""
    i32 = lambda v: np.array(v, np.int32)  # noqa: E731
    T = {"type": "DT_FLOAT"}
    nodes = [placeholder(dtype="DT_FLOAT"), const("one"), const("three"), const("shape"),
             const("zero"), const("minus"), const("half"),
             op("flat", "Reshape", ["input", "shape"], T=T),
             op("am", "ArgMax", ["flat", "one"], output_type={"type": "DT_INT32"}),
             op("row", "FloorDiv", ["am", "three"]),
             op("col", "Sub", ["am", "rowx3"]), op("rowx3", "Mul", ["row", "three"]),
             op("neg", "FloorDiv", ["minus", "three"]),
             op("colf", "Cast", ["col"], DstT={"type": "DT_FLOAT"}),
             op("sq", "SquaredDifference", ["colf", "half"]),
             op("dist", "Sqrt", ["sq"]), op("de", "ExpandDims", ["dist", "one"]),
             op("sig", "Sigmoid", ["flat"]), op("ratio", "RealDiv", ["sig", "de"]),
             op("e", "ExpandDims", ["row", "one"]), op("s", "Squeeze", ["e"],
                                                      squeeze_dims=attr_list_i([1])),
             op("cat", "ConcatV2", ["e", "e", "one"], N={"i": "2"}),
             op("sum", "AddV2", ["input", "input"])]
    weights = {"one": i32(1), "three": i32(3), "shape": i32([2, -1]), "zero": i32(0),
               "minus": i32([-7, 7]), "half": np.array(0.5, np.float32)}
    g = load_graph_model(write_graph(tmp_path, nodes, weights))
    x = RNG.normal(size=(2, 2, 3)) * 3
    x[0, 0, 0] = -800.0  # exp(800) would overflow a naive sigmoid
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        out = run_graph(g, {"input": x}, ["am", "row", "col", "neg", "colf", "ratio", "s",
                                          "cat", "sum"])
    am = x.reshape(2, -1).argmax(1)
    assert out["am"].dtype == np.int32 and out["am"].tolist() == am.tolist()
    assert out["row"].tolist() == (am // 3).tolist() and out["col"].tolist() == (am % 3).tolist()
    assert out["neg"].tolist() == [-3, 2]  # floor, not truncation
    assert out["colf"].dtype == np.float64 and out["s"].tolist() == (am // 3).tolist()
    assert out["cat"].shape == (2, 2) and out["cat"].dtype == np.int32
    sig = 1 / (1 + np.exp(-np.clip(x.reshape(2, -1), -700, None)))  # sigmoid(-800) = 0
    want = sig / np.sqrt(((am % 3) - 0.5) ** 2)[:, None]
    np.testing.assert_allclose(out["ratio"], want, rtol=1e-15, atol=1e-300)
    np.testing.assert_array_equal(out["sum"], 2 * x)


def test_only_what_the_outputs_need_is_evaluated(tmp_path):
    nodes = [placeholder(), op("ok", "Identity", ["input"]), op("bad", "Erf", ["input"]),
             op("two", "Unpack", ["input"], num={"i": "2"}, axis={"i": "0"})]
    g = load_graph_model(write_graph(tmp_path, nodes, {}))
    out = run_graph(g, {"input": np.arange(4.0).reshape(2, 2)}, ["ok", "two:1"])
    assert out["two:1"].tolist() == [2.0, 3.0] and out["ok"].dtype == np.float64
    with pytest.raises(KeyError, match="not fed"):
        run_graph(g, {}, ["ok"])
