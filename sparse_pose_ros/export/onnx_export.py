"""Export a PoseNetwork (or a .safetensors checkpoint) to ONNX: plugin and/or portable graph.

Fixed shapes: every export has one input size S (a multiple of the network's output stride, 16
or 32; default: the checkpoint's)
and batch 1, because TensorRT plans and the sparse index buffers are sized for one shape and a
camera node never changes resolution mid-stream. Export again for another size.

Opset 17 (``DEFAULT_OPSET``): supported by TensorRT 10.x's parser and ONNX Runtime >= 1.14.
The PyTorch TorchScript exporter is used (``dynamo=False``): it needs no onnxscript and its
``autograd.Function.symbolic`` hook is how the plugin node is emitted.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import onnx
import torch

from .. import skeleton
from ..model.checkpoint import load_checkpoint, model_hash
from ..model.network import PoseNetwork
from ..runtime.geometry import network_geometry
from ..runtime.options import check_input_size, check_input_width, strip_width
from .graph_modules import (
    GRAPH_KINDS,
    HEATMAPS_OUTPUT,
    INPUT_NAME,
    JOINTS_OUTPUT,
    THRESHOLD_INPUT,
    ExportNetwork,
    mask_output_name,
)
from .metadata import build_metadata, set_metadata
from .plugin_op import DOMAIN, DOMAIN_VERSION, OP_TYPE, register_schema
from .sparse_graph import expand_plugin_graph

LOG = logging.getLogger(__name__)
DEFAULT_OPSET = 17
#: Graph kinds: the two traced ones plus the plugin graph expanded into standard ops.
EXPORT_KINDS: tuple[str, ...] = (*GRAPH_KINDS, "portable_sparse")


def network_hash(net: PoseNetwork) -> str:
    """Model hash of an in-memory network (same definition as a saved checkpoint's)."""
    return model_hash(dict(net.state_dict()), net.cfg.to_dict())


def export_network(
    net: PoseNetwork,
    out_path: str | os.PathLike[str],
    graph: str = "portable",
    input_size: int | None = None,
    digest: str | None = None,
    opset: int = DEFAULT_OPSET,
    sparse_blocks: Iterable[int] | None = None,
    input_width: int | None = None,
) -> Path:
    """Write ``net`` as an ONNX ``graph`` and check it (``onnx.checker`` full check).

    Args:
        net: the network (its eval-mode BN statistics are what gets exported).
        out_path: destination .onnx (written atomically).
        graph: "portable" (standard ops, masked dense), "portable_sparse" (standard ops,
            gather-scatter per gated block, see :mod:`.sparse_graph`) or "plugin" (one custom
            node per gated block; needs the sparse_pose_ros TensorRT plugin to run).
        input_size: square input side, a multiple of the output stride; default
            ``net.cfg.input_size``.
        digest: model hash for the metadata; default computed from the weights.
        opset: ONNX opset of the default domain (>= 16 for "portable_sparse").
        sparse_blocks: "portable_sparse" only: gated-block ordinals run gather-scatter (the rest
            masked dense); default all.
        input_width: the input's width when it is the central strip of the square (dense
            networks only, ``model.heads.strip_to_square``); None = square.

    Returns:
        The written path.
    """
    if graph not in EXPORT_KINDS:
        raise ValueError(f"graph must be one of {EXPORT_KINDS}, got {graph!r}")
    if net.backbone.locator is not None:
        raise ValueError("this network's masks come from its person locator, which the ONNX "
                         "graphs do not carry (their gated blocks run mask units): run it with "
                         "the sparse-cpu or torch backend, or export the dense checkpoint")
    if graph == "portable_sparse" and opset < 16:
        raise ValueError("portable_sparse needs opset >= 16 (ScatterND reduction)")
    size = int(input_size if input_size is not None else net.cfg.input_size)
    # TF 'SAME' pads are fixed at the export size: on a size that is not a multiple of the
    # stride some stride-2 conv sees an odd side and pads 1 before, unlike MoveNet's weights.
    check_input_size(size, net.cfg.output_stride)
    if input_width is not None:
        check_input_width(input_width, size, net.cfg.output_stride)
    strip = strip_width(size, input_width)
    if strip and net.gated_blocks():
        raise ValueError("input_width (a strip of the square input) is for dense networks: "
                         "a gated network's masks are square")
    if opset < 13:
        raise ValueError(f"opset must be >= 13, got {opset}")
    net = net.eval()
    traced_kind = "plugin" if graph == "portable_sparse" else graph
    wrapper = ExportNetwork(net, traced_kind, size).eval()
    geometry = network_geometry(net, size, strip)
    n_masks = len(geometry.gated_indices)
    mask_names = [mask_output_name(k) for k in range(n_masks)]
    image = torch.zeros(1, 3, size, strip or size)
    args: tuple[torch.Tensor, ...] = (image, torch.zeros(1)) if n_masks else (image,)
    input_names = [INPUT_NAME, THRESHOLD_INPUT] if n_masks else [INPUT_NAME]
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter warns that it is legacy
        torch.onnx.export(
            wrapper,
            args,
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=input_names,
            output_names=[HEATMAPS_OUTPUT, JOINTS_OUTPUT, *mask_names],
            do_constant_folding=True,
            custom_opsets={DOMAIN: DOMAIN_VERSION} if traced_kind == "plugin" else None,
        )
    model = onnx.load_from_string(buffer.getvalue())
    _inline_identity_initializers(model)
    if graph == "portable_sparse":
        model = expand_plugin_graph(model, geometry, sparse_blocks)
    cfg = net.cfg
    set_metadata(
        model,
        build_metadata(
            model_hash=digest or network_hash(net),
            input_size=size,
            input_width=strip,
            joint_names=skeleton.JOINT_NAMES,
            mean=cfg.input_mean,
            std=cfg.input_std,
            depth_range_mm=cfg.depth_range_mm,
            graph=graph,
            opset=opset,
            geometry=geometry,
            mask_outputs=mask_names,
            input_name=INPUT_NAME,
            threshold_input=THRESHOLD_INPUT if n_masks else "",
            network_config=cfg.to_dict(),
        ),
    )
    model.producer_name = "sparse_pose_ros"
    model.doc_string = (
        f"sparse_pose_ros {graph} graph, input (1, 3, {size}, {size}) RGB normalised with "
        f"input_mean/input_std; {n_masks} gated blocks"
        + (f"; threshold input {THRESHOLD_INPUT} = logit(p)" if n_masks else "")
    )
    if graph == "plugin":
        register_schema()
        _check_plugin_nodes(model, n_masks)
    onnx.checker.check_model(model, full_check=True)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    onnx.save(model, str(tmp))
    tmp.replace(out)  # atomic: a reader never sees half a file (the ORT cache relies on it)
    LOG.info("exported %s graph of %d gated blocks at %d px to %s", graph, n_masks, size, out)
    return out


def _inline_identity_initializers(model: onnx.ModelProto) -> None:
    """Replace ``Identity(initializer)`` nodes with initializers of their own.

    The TorchScript exporter deduplicates equal-valued parameters (e.g. a zero mask bias and
    the zero placeholder of a missing expand conv) and re-exposes them through Identity nodes.
    Plugin inputs 2..7 must be plain weights so TensorRT's parser hands them over as constants.
    """
    inits = {i.name: i for i in model.graph.initializer}
    keep: list[onnx.NodeProto] = []
    for node in model.graph.node:
        if node.op_type == "Identity" and node.domain == "" and node.input[0] in inits:
            copy = onnx.TensorProto()
            copy.CopyFrom(inits[node.input[0]])
            copy.name = node.output[0]
            model.graph.initializer.append(copy)
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    used = {name for n in model.graph.node for name in n.input}
    used |= {o.name for o in model.graph.output}
    unused = [i for i in model.graph.initializer if i.name not in used]
    for init in unused:
        model.graph.initializer.remove(init)


def _check_plugin_nodes(model: onnx.ModelProto, expected: int) -> None:
    found = sum(1 for n in model.graph.node if n.op_type == OP_TYPE and n.domain == DOMAIN)
    if found != expected:
        raise RuntimeError(f"plugin graph has {found} {OP_TYPE} nodes, expected {expected}")


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    graphs: tuple[str, ...] = ("portable",),
    input_size: int | None = None,
    opset: int = DEFAULT_OPSET,
) -> dict[str, Path]:
    """Export a checkpoint to ``out_dir/<stem>_<graph>_<S>.onnx`` for each graph kind."""
    net, info = load_checkpoint(checkpoint)
    size = int(input_size if input_size is not None else net.cfg.input_size)
    stem = Path(checkpoint).name.removesuffix(".safetensors")
    out: dict[str, Path] = {}
    for graph in graphs:
        path = Path(out_dir) / f"{stem}_{graph}_{size}.onnx"
        out[graph] = export_network(
            net, path, graph=graph, input_size=size, digest=str(info["model_hash"]), opset=opset
        )
    return out
