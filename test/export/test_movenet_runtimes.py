"""MoveNet's architecture (TF 'SAME' stride-2 convs, stride 32, 1×1 to 1280, FPN neck, separable
head pre-conv) in the ONNX graphs: ``portable`` and ``portable_sparse`` equal PyTorch for Thunder
and Lightning with *every* block gated (so the sparse graph's stride-2 blocks gather with the
asymmetric pad), on the network's own masks and on fixed masks fed into the graph (every border
of every block, all on, all off); the same graph with symmetric pads is shown to fail; metadata,
refusals and the engine-cache key follow the architecture.

Small on purpose (64 px input: stride-32 maps of 2×2, every position a border), each graph
exported once per module.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from sparse_pose_ros.backends import BackendError, create_backend
from sparse_pose_ros.backends.engine_cache import EngineKey, sha256_file
from sparse_pose_ros.export.metadata import read_metadata
from sparse_pose_ros.export.onnx_export import export_network
from sparse_pose_ros.export.plugin_op import DOMAIN, OP_TYPE
from sparse_pose_ros.export.random_model import random_movenet_network
from sparse_pose_ros.export.sparse_graph import expand_plugin_graph
from sparse_pose_ros.model.checkpoint import save_checkpoint
from sparse_pose_ros.model.network import PoseNetwork
from sparse_pose_ros.runtime.geometry import NetworkGeometry, network_geometry

SIZE = 64
VARIANTS = ("thunder", "lightning")
GRAPHS = ("portable", "portable_sparse")
MASKS = ("network", "borders", "ones", "zeros")
#: relative to the output's own scale (max |value|, at least 1)
RTOL = 1e-4


def _net(variant: str) -> PoseNetwork:
    """Every block gated (stride-2 SAME blocks too); Thunder also with head gating, so the
    region from the stride-32 mask gates the head behind the FPN + head_pre."""
    net = random_movenet_network(variant, input_size=SIZE, seed=11 if variant == "thunder" else 12,
                                 gate_strided=True)  # fmt: skip
    if variant == "thunder":
        net.set_head_gating(True)
    return net


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """variant -> network, (variant, graph) -> its ONNX model, ("path", variant, graph) -> file."""
    out: dict[str, object] = {}
    root = tmp_path_factory.mktemp("movenet_onnx")
    for variant in VARIANTS:
        net = _net(variant)
        out[variant] = net
        for graph in GRAPHS:
            path = export_network(net, root / f"{variant}_{graph}.onnx", graph)
            out[(variant, graph)] = onnx.load(str(path))
            out[("path", variant, graph)] = path
    return out


def _masks_as_inputs(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """Copy of ``model`` whose blocks read their mask from graph inputs ``fixed_mask_k``.

    Every consumer of a gated block's hard mask (the block itself, the next ones' receptive
    masks, head gating) is rewired; the mask units still run, their output is ignored."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    masks = [o for o in out.graph.output if o.name.startswith("mask_")]
    renamed = {o.name: f"fixed_{o.name}" for o in masks}
    for node in out.graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
    for o in masks:
        vi = onnx.ValueInfoProto()
        vi.CopyFrom(o)
        vi.name = renamed[o.name]
        out.graph.input.append(vi)
    return out, list(renamed.values())


def _fixed_masks(geo: NetworkGeometry, kind: str) -> list[np.ndarray]:
    """(1, 1, h, w) masks per gated block: every border row/column (corners included) on and
    a checkerboard inside, all on, or all off."""
    masks = []
    for i in geo.gated_indices:
        h, w = geo.blocks[i].out_hw
        if kind == "ones":
            m = np.ones((h, w), np.float32)
        elif kind == "zeros":
            m = np.zeros((h, w), np.float32)
        else:
            m = (np.add.outer(np.arange(h), np.arange(w)) % 2 == 0).astype(np.float32)
            m[0, :] = m[-1, :] = m[:, 0] = m[:, -1] = 1.0
        masks.append(m[None, None])
    return masks


def _torch_outputs(net: PoseNetwork, x: np.ndarray, masks: list[np.ndarray] | None
                   ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:  # fmt: skip
    gated = net.gated_blocks()
    for k, block in enumerate(gated):
        block.fixed_mask = None if masks is None else torch.from_numpy(masks[k])
    try:
        with torch.inference_mode():
            out = net(torch.from_numpy(x))
    finally:
        for block in gated:
            block.fixed_mask = None
    hard = [m.hard.numpy() for m in out.masks if m is not None]
    return out.heatmaps.numpy(), out.joints.numpy(), hard


def _max_rel(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / max(1.0, float(np.abs(want).max())))


#: (id(model), masks fed) -> (model, session); the model is kept so its id stays unique
_SESSIONS: dict[tuple[int, bool], tuple[onnx.ModelProto, onnxruntime.InferenceSession]] = {}


def _run(model: onnx.ModelProto, x: np.ndarray, masks: list[np.ndarray] | None) -> list:
    """Run ``model`` (with ``masks`` fed as its blocks' masks when given) in ONNX Runtime; one
    session per model and mode for the whole module."""
    feed: dict[str, np.ndarray] = {"input": x, "mask_threshold_logit": np.zeros(1, np.float32)}
    key = (id(model), masks is not None)
    if key not in _SESSIONS:
        graph = model if masks is None else _masks_as_inputs(model)[0]
        _SESSIONS[key] = (model, onnxruntime.InferenceSession(
            graph.SerializeToString(), providers=["CPUExecutionProvider"]))
    sess = _SESSIONS[key][1]
    if masks is not None:
        names = [i.name for i in sess.get_inputs() if i.name.startswith("fixed_")]
        feed.update(zip(names, masks, strict=True))
    return sess.run(None, feed)


def _frame(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)


@pytest.mark.parametrize("mask_kind", MASKS)
@pytest.mark.parametrize("graph", GRAPHS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_graph_equals_torch(exported: dict, variant: str, graph: str, mask_kind: str) -> None:
    net: PoseNetwork = exported[variant]  # type: ignore[assignment]
    geo = network_geometry(net, SIZE)
    x = _frame(len(mask_kind))
    masks = None if mask_kind == "network" else _fixed_masks(geo, mask_kind)
    want_hm, want_joints, want_masks = _torch_outputs(net, x, masks)
    heatmaps, joints, *got_masks = _run(exported[(variant, graph)], x, masks)  # type: ignore[arg-type]
    if masks is None:  # the graph's own mask units and threshold decide
        for g, w in zip(got_masks, want_masks, strict=True):
            np.testing.assert_array_equal(g, w)
        active = [float(m.mean()) for m in want_masks]
        assert 0.0 < float(np.mean(active)) < 1.0, "random masks should be partial"
    assert _max_rel(heatmaps, want_hm) <= RTOL  # measured 1.2e-7 .. 1.8e-7
    assert _max_rel(joints, want_joints) <= RTOL  # measured 6e-8 .. 1.2e-7


def test_symmetric_padding_fails_parity(exported: dict, tmp_path: Path) -> None:
    """The regression the tests above guard: the sparse graph built with PyTorch's symmetric
    pads (window one row/col earlier, the pre-MoveNet expansion) on TF 'SAME' weights is far
    off, while the real one matches; so is the whole network with symmetric stride-2 convs."""
    net: PoseNetwork = exported["thunder"]  # type: ignore[assignment]
    geo = network_geometry(net, SIZE)
    x = _frame(5)
    masks = _fixed_masks(geo, "borders")
    want_hm, want_joints, _ = _torch_outputs(net, x, masks)
    plugin = onnx.load(str(export_network(net, tmp_path / "p.onnx", "plugin")))
    symmetric = dataclasses.replace(geo, blocks=tuple(
        dataclasses.replace(b, pads=(1, 1, 1, 1)) for b in geo.blocks))
    right_graph = expand_plugin_graph(plugin, geo)
    with pytest.raises(ValueError, match="pad_before 0"):  # the node disagrees: refused
        expand_plugin_graph(plugin, symmetric)
    for node in plugin.graph.node:  # a node without the attribute (older files) means 1
        if node.op_type == OP_TYPE:
            for a in [a for a in node.attribute if a.name == "pad_before"]:
                node.attribute.remove(a)
    wrong_graph = expand_plugin_graph(plugin, symmetric)
    right, wrong = _run(right_graph, x, masks), _run(wrong_graph, x, masks)
    assert _max_rel(right[0], want_hm) <= RTOL and _max_rel(right[1], want_joints) <= RTOL
    # measured: 1.2e-3 on the heatmaps, against ~1e-7 for the right pads
    assert _max_rel(wrong[0], want_hm) > 10 * RTOL
    sym_net = PoseNetwork(dataclasses.replace(net.cfg, padding="symmetric")).eval()
    sym_net.load_state_dict(net.state_dict())
    sym_hm, _, _ = _torch_outputs(sym_net, x, masks)
    assert _max_rel(sym_hm, want_hm) > 10 * RTOL


def test_plugin_graph_carries_the_pad_before(exported: dict, tmp_path: Path) -> None:
    """Each custom node says where its depthwise window starts (0 for MoveNet's stride-2 blocks
    at an even size), matching the geometry the runtimes read."""
    net: PoseNetwork = exported["lightning"]  # type: ignore[assignment]
    path = export_network(net, tmp_path / "l.onnx", "plugin")
    plugin, meta = onnx.load(str(path)), read_metadata(path)
    nodes = [n for n in plugin.graph.node if n.op_type == OP_TYPE and n.domain == DOMAIN]
    gated = [meta.geometry.blocks[i] for i in meta.geometry.gated_indices]
    assert len(nodes) == len(gated)
    seen = set()
    for node, geo in zip(nodes, gated, strict=True):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["pad_before"] == geo.pad_before[0] == geo.pad_before[1]
        assert attrs["stride"] == geo.stride
        seen.add((geo.stride, attrs["pad_before"]))
    assert seen == {(1, 1), (2, 0)}


def test_metadata_records_the_architecture(exported: dict, tmp_path: Path) -> None:
    net: PoseNetwork = exported["thunder"]  # type: ignore[assignment]
    path: Path = exported[("path", "thunder", "portable")]  # type: ignore[assignment]
    meta = read_metadata(path)
    assert meta.architecture == {"padding": "tf_same", "neck": "fpn", "output_stride": 32,
                                 "last_channels": 1280, "head_hidden": 96}  # fmt: skip
    strided = [b for b in meta.geometry.blocks if b.stride == 2]
    assert [b.pads for b in strided] == [(0, 1, 0, 1)] * 4
    assert meta.geometry.last_macs == network_geometry(net, SIZE).last_macs > 0

    model = onnx.load(str(path))

    def rewrite(name: str, **props: str | None) -> Path:
        m = onnx.ModelProto()
        m.CopyFrom(model)
        kept = {p.key: p.value for p in m.metadata_props}
        for k, v in props.items():
            if v is None:
                kept.pop(k, None)
            else:
                kept[k] = v
        del m.metadata_props[:]
        onnx.helper.set_model_props(m, kept)
        out = tmp_path / name
        onnx.save(m, str(out))
        return out

    arch = json.loads({p.key: p.value for p in model.metadata_props}["architecture"])
    unknown = rewrite("reflect.onnx", architecture=json.dumps({**arch, "padding": "reflect"}))
    with pytest.raises(BackendError, match="padding 'reflect'"):
        create_backend("onnxruntime", unknown, device="cpu")
    future = rewrite("future.onnx", sparse_pose_ros_format="3")
    with pytest.raises(BackendError, match="format 3"):
        create_backend("onnxruntime", future, device="cpu")
    # a format-1 file (written before the facts existed) is what could be exported then
    old = rewrite("old.onnx", sparse_pose_ros_format="1", architecture=None)
    assert read_metadata(old).architecture["padding"] == "symmetric"


def test_sizes_off_the_output_stride_are_refused(exported: dict, tmp_path: Path) -> None:
    net: PoseNetwork = exported["lightning"]  # type: ignore[assignment]
    with pytest.raises(ValueError, match="multiple of 32"):
        export_network(net, tmp_path / "x.onnx", "portable", input_size=80)
    ckpt = tmp_path / "l.safetensors"
    save_checkpoint(ckpt, net)
    with pytest.raises(ValueError, match="multiple of 32"):
        create_backend("torch", ckpt, device="cpu", input_size=80)


def test_engine_key_follows_the_architecture(exported: dict, tmp_path: Path) -> None:
    """A TensorRT plan is keyed by the ONNX file's sha256: the same weights with another padding
    give another graph, hence another key, while re-exporting the same network keeps it."""
    net: PoseNetwork = exported["lightning"]  # type: ignore[assignment]
    sym_net = PoseNetwork(dataclasses.replace(net.cfg, padding="symmetric")).eval()
    sym_net.load_state_dict(net.state_dict())

    def key(path: Path) -> EngineKey:
        return EngineKey("GPU", "8.7", "10.3.0", "fp16", "none", sha256_file(path), 1 << 30)

    def export(n: PoseNetwork, name: str) -> Path:
        return export_network(n, tmp_path / name, "portable")

    same = key(exported[("path", "lightning", "portable")]), key(export(net, "a.onnx"))
    assert same[0].digest() == same[1].digest()
    assert key(export(sym_net, "c.onnx")).digest() != same[0].digest()


def test_backends_agree_on_a_movenet_checkpoint(exported: dict, tmp_path: Path) -> None:
    """Through the Backend interface: torch and onnxruntime (gather-scatter graph) return the
    same joints, masks and density (block geometry with SAME pads and the 1×1 to 1280)."""
    net: PoseNetwork = exported["thunder"]  # type: ignore[assignment]
    ckpt = tmp_path / "t.safetensors"
    save_checkpoint(ckpt, net)
    ref = create_backend("torch", ckpt, device="cpu")
    ort = create_backend("onnxruntime", ckpt, device="cpu", cache_dir=tmp_path,
                         graph="portable_sparse")  # fmt: skip
    assert ort.info == ref.info
    x = _frame(9)
    want, got = ref.infer(x), ort.infer(x)
    for g, w in zip(got.masks, want.masks, strict=True):
        np.testing.assert_array_equal(g, w)
    assert _max_rel(got.joints, want.joints) <= RTOL
    assert got.density == pytest.approx(want.density, abs=1e-12)
    assert 0.0 < want.density < 1.0
