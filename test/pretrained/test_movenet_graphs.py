"""The parser and the reference executor on the real MoveNet graph models (both variants): what
the files hold, and the executor running Google's graph end to end to its [1, 1, 17, 3] output."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from sparse_pose_ros.pretrained.reference import run_graph
from sparse_pose_ros.pretrained.tfjs import TfjsGraph, load_graph_model

#: Non-Const op kinds and counts, identical in Lightning and Thunder (checked 2026-12-04): the
#: reference executor implements exactly these, so a new op would show up here first.
MOVENET_OPS = {
    "AddV2": 19, "ArgMax": 2, "Cast": 5, "ConcatV2": 2, "DepthwiseConv2dNative": 7,
    "ExpandDims": 8, "FloorDiv": 2, "FusedDepthwiseConv2dNative": 17, "GatherNd": 4,
    "Identity": 1, "Mul": 5, "Pack": 3, "Placeholder": 1, "RealDiv": 1, "Reshape": 8,
    "ResizeBilinear": 3, "Sigmoid": 2, "Sqrt": 1, "SquaredDifference": 2, "Squeeze": 1,
    "Sub": 4, "Unpack": 3, "_FusedConv2D": 50,
}
#: variant -> (input size, float parameters, stem width).
VARIANTS = {"lightning": (192, 2_324_896, 32), "thunder": (256, 6_238_344, 56)}


def model_json(variant: str, movenet_models_dir: Path, request) -> Path:
    if variant == "thunder":
        return request.getfixturevalue("thunder_json")
    return movenet_models_dir / "movenet-lightning.json"


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request, movenet_models_dir) -> tuple[str, Path, TfjsGraph]:
    path = model_json(request.param, movenet_models_dir, request)
    return request.param, path, load_graph_model(path)


def test_the_files_hold_what_we_expect(variant):
    name, path, graph = variant
    size, params, stem = VARIANTS[name]
    manifest = [w for g in json.loads(path.read_text())["weightsManifest"] for w in g["weights"]]
    stored = Counter((w["dtype"], (w.get("quantization") or {}).get("dtype")) for w in manifest)
    assert stored == {("float32", "float16"): 149, ("int32", None): 31}
    floats = [w for w in graph.weights.values() if w.dtype == np.float32]
    assert len(floats) == 149 and sum(w.size for w in floats) == params
    assert sum(w.dtype == np.int32 for w in graph.weights.values()) == 31
    assert len(graph.by_op("Const")) == len(graph.weights) == 180
    ops = Counter(n.op for n in graph.nodes if n.op != "Const")
    assert dict(ops) == MOVENET_OPS
    assert graph.meta["format"] == "graph-model"
    assert graph.meta["generatedBy"].endswith(f"movenet/singlepose/{name}/4")
    dims = graph.meta["signature"]["inputs"]["input:0"]["tensorShape"]["dim"]
    assert [int(d["size"]) for d in dims] == [1, size, size, 3]
    # Trap 1's five stride-2 3×3 convs, all TF SAME (asymmetric on even inputs).
    strided = [n for n in graph.nodes if "Conv" in n.op and n.attrs["strides"][1] == 2]
    assert [graph.weights[n.inputs[1]].shape[:2] for n in strided] == [(3, 3)] * 5
    assert {n.attrs["padding"] for n in strided} == {"SAME"}
    assert graph.weights[strided[0].inputs[1]].shape == (3, 3, 3, stem)
    fused = {tuple(n.attrs.get("fused_ops", [])) for n in graph.nodes if "Conv" in n.op}
    assert fused == {(), ("BiasAdd",), ("BiasAdd", "Relu"), ("BiasAdd", "Relu6")}
    resize = graph.by_op("ResizeBilinear")
    assert all(n.attrs["half_pixel_centers"] and not n.attrs["align_corners"] for n in resize)


def test_graph_runs_end_to_end(variant):
    name, _, graph = variant
    size = VARIANTS[name][0]
    image = np.random.default_rng(0).integers(0, 256, (1, size, size, 3)).astype(np.int32)
    out = run_graph(graph, {"input": image}, ["Identity", "StatefulPartitionedCall/ArgMax"])
    kpts = out["Identity"]
    assert kpts.shape == (1, 1, 17, 3) and kpts.dtype == np.float64
    assert np.isfinite(kpts).all() and (kpts >= 0).all() and (kpts <= 1).all()
    assert out["StatefulPartitionedCall/ArgMax"].dtype == np.int32  # index maths stays integer


def test_both_variants_find_the_astronauts_face(movenet_models_dir, thunder_json):
    """Two independently trained networks, run by the executor, agree on a real photo: a wrong
    op (padding, resize, decoding) would not move both to the same place."""
    cv2 = pytest.importorskip("cv2")
    data = pytest.importorskip("skimage.data")
    noses, scores = [], []
    for path, size in ((movenet_models_dir / "movenet-lightning.json", 192), (thunder_json, 256)):
        rgb = cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
        kpts = run_graph(load_graph_model(path), {"input": rgb[None].astype(np.int32)},
                         ["Identity"])["Identity"][0, 0]
        noses.append(kpts[0, :2])
        scores.append(kpts[:, 2].mean())
    assert np.abs(noses[0] - noses[1]).max() < 0.03
    assert 0.15 < noses[0][0] < 0.35 and 0.35 < noses[0][1] < 0.5  # face: upper middle-left
    assert min(scores) > 0.3  # vs about 0.03 on uniform noise
