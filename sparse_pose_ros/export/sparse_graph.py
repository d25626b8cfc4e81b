"""Expand the plugin graph's custom nodes into standard ONNX ops: gather -> GEMM -> scatter.

The result (graph kind ``portable_sparse``) runs in any ONNX runtime and computes each gated
block only at its active positions, with the same contract as the TensorRT plugin (see
:mod:`.plugin_op`), batch 1:

1. ``NonZero`` of the dilated mask -> rows of X (``Gather``) -> expand ``MatMul`` + ReLU6;
2. the expanded rows are scattered into a zero-padded (H+2)·(W+2) canvas (``ScatterND``), and
   each active output gathers its 9 depthwise taps from it (tap rows precomputed as
   ``(s·i + 1 − p_t + ky)·(W+2) + s·j + 1 − p_l + kx``, with (p_t, p_l) the depthwise's pad
   before: 1 for PyTorch's padding=1, 0 for TF 'SAME' at stride 2 on an even side, as MoveNet
   pads), weighted sum + ReLU6;
3. project ``MatMul``; ``ScatterND`` (reduction add) into the residual (or into zeros).

Per block the caller may instead choose ``masked_dense`` (standard convs and mask multiplies),
because at low resolution the per-op overhead of 20-odd small ops exceeds the saved MACs
(DESIGN.md §2); ``sparse_blocks`` selects which gated blocks are expanded sparse.

The block's padding is taken from the exported geometry (``BlockGeometry.pads``, read off the
network's own convs at the export size), never from the custom node, so a TF 'SAME' block expands
right whatever the node carries; a node that does state a ``pad_before`` must agree with it.

Why graph surgery instead of tracing PyTorch: ``nonzero``/``index_add`` trace into
data-dependent shapes the TorchScript exporter handles poorly, while here every shape is known
from the block geometry and the op choice is explicit.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..runtime.geometry import BlockGeometry, NetworkGeometry
from .plugin_op import DOMAIN, OP_TYPE


class _Builder:
    """Collects nodes and initializers for one block under a unique name prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self._n = 0
        self._names: set[str] = set()

    def const(self, name: str, value: np.ndarray) -> str:
        full = f"{self.prefix}{name}"
        if full in self._names:
            full = f"{full}_{len(self._names)}"
        self._names.add(full)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), full))
        return full

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs: object) -> str:
        self._n += 1
        name = out or f"{self.prefix}{op_type}_{self._n}"
        node = helper.make_node(op_type, inputs, [name], name=f"{self.prefix}n{self._n}", **attrs)
        self.nodes.append(node)
        return name


def _array(inits: dict[str, TensorProto], name: str) -> np.ndarray:
    if name not in inits:
        raise ValueError(f"plugin input {name!r} is not an initializer")
    return numpy_helper.to_array(inits[name]).astype(np.float32)


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _dilated_mask(b: _Builder, g: str, geo: BlockGeometry) -> str:
    """(1,1,H,W) 0/1 mask of the inputs the active outputs' 3×3 depthwise reads.

    Stride 2: output (i, j) reads rows 2i − p_t .. 2i − p_t + 2 (columns alike); a transposed
    conv with a 3×3 box scatters each active output onto exactly that footprint (``pads`` crop
    p before, ``output_padding`` keeps the row after), then it is cropped to (H, W), as
    ``model.masks.receptive_mask`` does."""
    if geo.stride == 1:
        return b.op("MaxPool", [g], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
    top, left = geo.pad_before
    if top not in (0, 1) or left not in (0, 1):
        raise ValueError(f"a 3×3 depthwise pads 0 or 1 before, got {geo.pad_before}")
    box = b.const("box", np.ones((1, 1, 3, 3), np.float32))
    spread = b.op(
        "ConvTranspose", [g, box], strides=[2, 2], pads=[top, left, top, left],
        output_padding=[top, left],
    )
    h, w = geo.in_hw
    ho, wo = geo.out_hw
    full = (2 * (ho - 1) + 3 - 2 * top + top, 2 * (wo - 1) + 3 - 2 * left + left)
    if full[0] < h or full[1] < w:  # only odd sides could do this, and they pad 1
        raise ValueError(f"receptive footprint {full} does not cover the input {geo.in_hw}")
    starts = b.const("crop_s", np.array([0, 0], np.int64))
    ends = b.const("crop_e", np.array(geo.in_hw, np.int64))
    axes = b.const("crop_a", np.array([2, 3], np.int64))
    cropped = b.op("Slice", [spread, starts, ends, axes])
    zero = b.const("zero", np.zeros((), np.float32))
    return b.op("Cast", [b.op("Greater", [cropped, zero])], to=TensorProto.FLOAT)


def _active_rows(b: _Builder, mask: str, n: int) -> str:
    """(K, 1) int64 flat indices of the nonzero entries of a (1,1,h,w) mask with n = h·w."""
    flat = b.op("Reshape", [mask, b.const(f"flat{n}", np.array([n], np.int64))])
    return b.op("Transpose", [b.op("NonZero", [flat])], perm=[1, 0])


def _sparse_block(
    b: _Builder, x: str, g: str, w: dict[str, np.ndarray], a: dict[str, object],
    geo: BlockGeometry,
) -> str:  # fmt: skip
    c, (h, wd_), ce, co = geo.in_channels, geo.in_hw, geo.hidden_channels, geo.out_channels
    s = geo.stride
    ho, wo = geo.out_hw
    hp, wp = h + 2, wd_ + 2
    top, left = geo.pad_before
    if max((ho - 1) * s + 3 - top - h, (wo - 1) * s + 3 - left - wd_) > 1:
        raise ValueError(f"pads {geo.pads} read more than one row/col past the input")
    xt = b.op(
        "Transpose", [b.op("Reshape", [x, b.const("xshape", np.array([c, h * wd_]))])], perm=[1, 0]
    )  # (HW, C)
    dil = _active_rows(b, _dilated_mask(b, g, geo), h * wd_)  # (M, 1)
    rows = b.op("GatherND", [xt, dil])  # (M, C)
    six = b.const("six", np.array(6.0, np.float32))
    zero = b.const("zf", np.array(0.0, np.float32))
    if int(a["has_expand"]):
        mm = b.op("MatMul", [rows, b.const("we_t", w["we"].T)])
        rows = b.op("Clip", [b.op("Add", [mm, b.const("be", w["be"])]), zero, six])
    canvas = b.op(
        "ConstantOfShape",
        [b.const("cshape", np.array([h * wd_, ce], np.int64))],
        value=numpy_helper.from_array(np.zeros(1, np.float32)),
    )
    canvas = b.op("ScatterND", [canvas, dil, rows])  # (HW, Ce), zero where not dilated
    canvas = b.op("Reshape", [canvas, b.const("c3", np.array([h, wd_, ce], np.int64))])
    canvas = b.op("Pad", [canvas, b.const("pads", np.array([1, 1, 0, 1, 1, 0], np.int64))])
    canvas = b.op("Reshape", [canvas, b.const("c2", np.array([hp * wp, ce], np.int64))])
    act = _active_rows(b, g, ho * wo)  # (N, 1)
    act_flat = b.op("Reshape", [act, b.const("m1", np.array([-1], np.int64))])  # (N,)
    wo_c = b.const("wo", np.array(wo, np.int64))
    oy = b.op("Div", [act_flat, wo_c])
    ox = b.op("Mod", [act_flat, wo_c])
    base = b.op(
        "Add",
        [
            b.op("Mul", [oy, b.const("sy", np.array(s * wp, np.int64))]),
            b.op("Mul", [ox, b.const("sx", np.array(s, np.int64))]),
        ],
    )
    # The canvas has 1 zero row/col before the input; a window starting p before the input
    # starts 1 - p rows/cols into the canvas.
    offsets = np.array(
        [(1 - top + ky) * wp + 1 - left + kx for ky in range(3) for kx in range(3)], np.int64
    )
    taps = b.op(
        "Add",
        [
            b.op("Unsqueeze", [base, b.const("ax1", np.array([1], np.int64))]),
            b.const("offs", offsets[None, :]),
        ],
    )  # (N, 9)
    gathered = b.op("Gather", [canvas, taps], axis=0)  # (N, 9, Ce)
    dw = b.op(
        "ReduceSum",
        [
            b.op("Mul", [gathered, b.const("wd_t", w["wd"].T[None])]),
            b.const("ax1r", np.array([1], np.int64)),
        ],
        keepdims=0,
    )
    dw = b.op("Clip", [b.op("Add", [dw, b.const("bd", w["bd"])]), zero, six])  # (N, Ce)
    proj = b.op("Add", [b.op("MatMul", [dw, b.const("wp_t", w["wp"].T)]), b.const("bp", w["bp"])])
    if int(a["residual"]):
        target = xt
    else:
        target = b.op(
            "ConstantOfShape",
            [b.const("oshape", np.array([ho * wo, co], np.int64))],
            value=numpy_helper.from_array(np.zeros(1, np.float32)),
        )
    y = b.op("ScatterND", [target, act, proj], reduction="add")  # (HoWo, Co)
    y = b.op("Transpose", [y], perm=[1, 0])
    return b.op("Reshape", [y, b.const("yshape", np.array([1, co, ho, wo], np.int64))])


def _masked_dense_block(
    b: _Builder, x: str, g: str, w: dict[str, np.ndarray], a: dict[str, object],
    geo: BlockGeometry,
) -> str:  # fmt: skip
    ce, s = geo.hidden_channels, geo.stride
    top, bottom, left, right = geo.pads
    six = b.const("six", np.array(6.0, np.float32))
    zero = b.const("zf", np.array(0.0, np.float32))
    e = x
    if int(a["has_expand"]):
        e = b.op("Conv", [x, b.const("we", w["we"][:, :, None, None]), b.const("be", w["be"])])
        e = b.op("Clip", [e, zero, six])
    e = b.op("Mul", [e, _dilated_mask(b, g, geo)])
    d = b.op(
        "Conv",
        [e, b.const("wd", w["wd"].reshape(ce, 1, 3, 3)), b.const("bd", w["bd"])],
        group=ce,
        kernel_shape=[3, 3],
        pads=[top, left, bottom, right],
        strides=[s, s],
    )
    d = b.op("Mul", [b.op("Clip", [d, zero, six]), g])
    p = b.op("Conv", [d, b.const("wp", w["wp"][:, :, None, None]), b.const("bp", w["bp"])])
    p = b.op("Mul", [p, g])
    return b.op("Add", [x, p]) if int(a["residual"]) else p


def _check_node(k: int, attrs: dict[str, object], geo: BlockGeometry) -> None:
    """The custom node and the exported geometry describe the same block (a mismatch would
    expand a block with another's stride or padding: refuse it)."""
    if int(attrs["stride"]) != geo.stride:  # type: ignore[call-overload]
        raise ValueError(f"custom node {k}: stride {attrs['stride']} != geometry's {geo.stride}")
    pad = int(attrs.get("pad_before", 1))  # type: ignore[call-overload]  # absent = 1
    if (pad, pad) != geo.pad_before:
        raise ValueError(f"custom node {k}: pad_before {pad} != the block's "
                         f"depthwise pads {geo.pads} (top, bottom, left, right)")


def expand_plugin_graph(
    model: onnx.ModelProto, geometry: NetworkGeometry, sparse_blocks: Iterable[int] | None = None
) -> onnx.ModelProto:
    """Copy of a plugin graph with every custom node replaced by standard ops.

    Args:
        model: plugin graph from :func:`.onnx_export.export_network` (batch 1).
        geometry: its block geometry (shapes of every gated block).
        sparse_blocks: gated-block ordinals (0 = first gated block) to run gather-scatter; the
            others run masked dense. ``None`` = all sparse.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    gated = [geometry.blocks[i] for i in geometry.gated_indices]
    chosen = set(range(len(gated)) if sparse_blocks is None else sparse_blocks)
    if not chosen <= set(range(len(gated))):
        raise ValueError(f"sparse_blocks {sorted(chosen)} outside 0..{len(gated) - 1}")
    inits = {i.name: i for i in out.graph.initializer}
    new_nodes: list[onnx.NodeProto] = []
    k = 0
    for node in out.graph.node:
        if node.domain != DOMAIN or node.op_type != OP_TYPE:
            new_nodes.append(node)
            continue
        geo = gated[k]
        names = list(node.input)
        w = {
            key: _array(inits, n)
            for key, n in zip(("we", "be", "wd", "bd", "wp", "bp"), names[2:], strict=True)
        }
        attrs = _attrs(node)
        _check_node(k, attrs, geo)
        b = _Builder(f"sir{k}/")
        build = _sparse_block if k in chosen else _masked_dense_block
        y = build(b, names[0], names[1], w, attrs, geo)
        b.nodes[-1].output[0] = node.output[0]
        del y
        new_nodes.extend(b.nodes)
        out.graph.initializer.extend(b.inits)
        k += 1
    if k != len(gated):
        raise ValueError(f"plugin graph has {k} custom nodes for {len(gated)} gated blocks")
    del out.graph.node[:]
    out.graph.node.extend(new_nodes)
    used = {n for node in out.graph.node for n in node.input}
    for init in [i for i in out.graph.initializer if i.name not in used]:
        out.graph.initializer.remove(init)
    keep = [o for o in out.opset_import if o.domain != DOMAIN]
    del out.opset_import[:]
    out.opset_import.extend(keep)
    return out
