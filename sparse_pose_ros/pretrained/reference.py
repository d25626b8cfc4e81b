"""An independent float64 numpy execution of a TF.js graph, op by op from the graph JSON.

The import's referee: it shares no code with the PyTorch network (no layout conversion, no
module mapping), so when our network's MoveNet heads equal this executor's on a real photo,
every weight is in the right place with the right layout, padding and normalisation. It
implements exactly the op kinds MoveNet SinglePose uses; anything else raises
``NotImplementedError`` naming the node. Floats are float64 throughout (so the referee's own
rounding is far below any tolerance a test sets); integers keep TF's integer dtypes, because the
decoding tail does index arithmetic (ArgMax, FloorDiv, GatherNd) that must stay exact.
Convolutions are one matmul (1×1), im2col + matmul (k×k) or k·k shifted multiply-adds
(depthwise): Thunder at 256² (1.2 GMAC) runs in about a second on one core.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .tfjs import GraphNode, TfjsGraph

Array = np.ndarray

#: TF dtype enum -> the numpy dtype this executor computes in (every float is float64).
_DTYPES: dict[str, type] = {
    "DT_FLOAT": np.float64, "DT_DOUBLE": np.float64, "DT_HALF": np.float64,
    "DT_INT32": np.int32, "DT_INT64": np.int64, "DT_BOOL": np.bool_,
}


def _dtype(tf_type: str, node: GraphNode) -> type:
    try:
        return _DTYPES[tf_type]
    except KeyError:
        raise NotImplementedError(f"{node.name}: dtype {tf_type!r}") from None


def _widen(value: Array) -> Array:
    """Floats to float64, integers kept as they are (int32 stays int32, as in TF)."""
    value = np.asarray(value)
    return value if value.dtype.kind in "iub" else value.astype(np.float64)


def sigmoid(x: Array) -> Array:
    """Logistic function without overflow warnings on large negative logits."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'SAME' (before, after) along one axis: on an even input a 3×3 stride-2 conv pads
    0 before and 1 after (PyTorch's symmetric padding=1 would shift every output)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_nhwc(x: Array, kh: int, kw: int, stride: tuple[int, int], padding: str) -> Array:
    if padding == "VALID":
        return x
    if padding != "SAME":
        raise NotImplementedError(f"padding {padding!r}")
    top, bottom = same_pads(x.shape[1], kh, stride[0])
    left, right = same_pads(x.shape[2], kw, stride[1])
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))


def _windows(x: Array, kh: int, kw: int, sh: int, sw: int) -> tuple[list[Array], int, int]:
    """The kh·kw shifted, strided views of padded NHWC ``x`` (tap order row-major)."""
    ho = (x.shape[1] - kh) // sh + 1
    wo = (x.shape[2] - kw) // sw + 1
    taps = [x[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :]
            for i in range(kh) for j in range(kw)]
    return taps, ho, wo


def conv2d(x: Array, w: Array, strides: Sequence[int], padding: str) -> Array:
    """NHWC conv with an HWIO filter (im2col + one matmul)."""
    kh, kw, cin, cout = w.shape
    sh, sw = int(strides[1]), int(strides[2])
    xp = _pad_nhwc(x, kh, kw, (sh, sw), padding)
    if kh == kw == 1:
        return xp[:, ::sh, ::sw, :] @ w.reshape(cin, cout)
    taps, ho, wo = _windows(xp, kh, kw, sh, sw)
    cols = np.concatenate(taps, axis=-1)  # (..., kh·kw·cin) in (i, j, c) order = HWIO flatten
    return cols @ w.reshape(kh * kw * cin, cout)


def depthwise2d(x: Array, w: Array, strides: Sequence[int], padding: str) -> Array:
    """NHWC depthwise conv with an HWC1 filter (channel multiplier 1)."""
    kh, kw, c, mult = w.shape
    if mult != 1:
        raise NotImplementedError(f"depthwise channel multiplier {mult}")
    sh, sw = int(strides[1]), int(strides[2])
    xp = _pad_nhwc(x, kh, kw, (sh, sw), padding)
    taps, _, _ = _windows(xp, kh, kw, sh, sw)
    out = np.zeros_like(taps[0])
    for t, (i, j) in zip(taps, [(i, j) for i in range(kh) for j in range(kw)], strict=True):
        out += t * w[i, j, :, 0]
    return out


def resize_bilinear_half_pixel(x: Array, size: Sequence[int]) -> Array:
    """TF ``ResizeBilinear`` with half_pixel_centers=True, align_corners=False: the source of
    output pixel d is (d + 0.5)·in/out − 0.5, floored and clamped at 0 for the lower tap, the
    upper tap clamped at in − 1."""
    out = x
    for axis, new in ((1, int(size[0])), (2, int(size[1]))):
        old = out.shape[axis]
        src = (np.arange(new) + 0.5) * (old / new) - 0.5
        lo_f = np.floor(src)
        frac = src - lo_f
        lo = np.clip(lo_f.astype(int), 0, old - 1)
        hi = np.clip(lo_f.astype(int) + 1, 0, old - 1)
        shape = [1] * out.ndim
        shape[axis] = new
        frac = frac.reshape(shape)
        out = np.take(out, lo, axis=axis) * (1 - frac) + np.take(out, hi, axis=axis) * frac
    return out


def _fused(y: Array, bias: Array | None, fused: Sequence[str], node: GraphNode) -> Array:
    for op in fused:
        if op == "BiasAdd":
            if bias is None:
                raise NotImplementedError(f"{node.name}: BiasAdd without a bias input")
            y = y + bias
        elif op == "Relu":
            y = np.maximum(y, 0.0)
        elif op == "Relu6":
            y = np.clip(y, 0.0, 6.0)
        else:
            raise NotImplementedError(f"{node.name}: fused op {op!r}")
    return y


def _gather_nd(params: Array, indices: Array) -> Array:
    idx = indices.astype(np.int64)
    k = idx.shape[-1]
    return params[tuple(idx[..., i] for i in range(k))]


def _axis(value: Array) -> int:
    return int(np.asarray(value).reshape(()))


def _check_conv_attrs(node: GraphNode) -> None:
    """Refuse what the conv helpers do not implement, naming the node (not silently wrong)."""
    a = node.attrs
    if a.get("data_format", "NHWC") != "NHWC":
        raise NotImplementedError(f"{node.name}: data_format {a['data_format']!r}")
    if any(int(d) != 1 for d in a.get("dilations", [1])):
        raise NotImplementedError(f"{node.name}: dilations {a['dilations']}")
    if a.get("padding") not in ("SAME", "VALID"):
        raise NotImplementedError(f"{node.name}: padding {a.get('padding')!r}")


def _run_node(node: GraphNode, args: list[Any]) -> Any:
    """Outputs of one node: an array, or a list of arrays for multi-output ops (Unpack)."""
    op, a = node.op, node.attrs
    if op == "Identity":
        return args[0]
    if op == "Cast":
        return args[0].astype(_dtype(a.get("DstT", "DT_FLOAT"), node))
    if op == "Unpack":
        axis = int(a.get("axis", 0))
        return [np.take(args[0], i, axis=axis) for i in range(args[0].shape[axis])]
    if op == "Pack":
        return np.stack(args, axis=int(a.get("axis", 0)))
    if op == "ExpandDims":
        return np.expand_dims(args[0], _axis(args[1]))
    if op == "Squeeze":
        dims = a.get("squeeze_dims") or [i for i, s in enumerate(args[0].shape) if s == 1]
        return np.squeeze(args[0], axis=tuple(int(d) for d in dims))
    if op == "Reshape":
        return args[0].reshape([int(v) for v in np.asarray(args[1]).reshape(-1)])
    if op == "ConcatV2":
        return np.concatenate(args[:-1], axis=_axis(args[-1]))
    binary: dict[str, Callable[[Array, Array], Array]] = {
        "AddV2": np.add, "Sub": np.subtract, "Mul": np.multiply, "RealDiv": np.divide,
        "SquaredDifference": lambda x, y: (x - y) ** 2,
        "FloorDiv": lambda x, y: np.floor_divide(x, y),
    }
    if op in binary:
        return binary[op](args[0], args[1])
    if op == "Sqrt":
        return np.sqrt(args[0])
    if op == "Sigmoid":
        return sigmoid(args[0])
    if op == "ArgMax":
        out_type = _dtype(a.get("output_type", "DT_INT64"), node)
        return np.argmax(args[0], axis=_axis(args[1])).astype(out_type)
    if op == "GatherNd":
        return _gather_nd(args[0], args[1])
    if op == "ResizeBilinear":
        if not a.get("half_pixel_centers", False) or a.get("align_corners", False):
            raise NotImplementedError(f"{node.name}: only half-pixel-centre bilinear resizing")
        return resize_bilinear_half_pixel(args[0], np.asarray(args[1]).reshape(-1))
    if op in ("_FusedConv2D", "Conv2D", "FusedDepthwiseConv2dNative", "DepthwiseConv2dNative"):
        _check_conv_attrs(node)
        conv = conv2d if op in ("_FusedConv2D", "Conv2D") else depthwise2d
        y = conv(args[0], args[1], a["strides"], a["padding"])
        return _fused(y, args[2] if len(args) > 2 else None, a.get("fused_ops", []), node)
    raise NotImplementedError(f"op {op!r} (node {node.name}) is not in the reference executor")


def _split(ref: str) -> tuple[str, int]:
    name, _, k = ref.partition(":")
    return name, int(k) if k else 0


def _schedule(graph: TfjsGraph, outputs: Sequence[str]) -> list[GraphNode]:
    """The nodes ``outputs`` depend on, inputs before readers (iterative post-order, so deep
    graphs do not hit Python's recursion limit)."""
    by_name = {n.name: n for n in graph.nodes}
    order: list[GraphNode] = []
    done: set[str] = set()
    stack = [_split(o)[0] for o in outputs]
    while stack:
        name = stack.pop()
        if name in done:
            continue
        if name not in by_name:
            raise KeyError(f"no node named {name!r}")
        pending = [src for src, _ in map(_split, by_name[name].inputs) if src not in done]
        if pending:
            stack.append(name)
            stack.extend(pending)
            continue
        done.add(name)
        order.append(by_name[name])
    return order


def _source(graph: TfjsGraph, node: GraphNode, feeds: dict[str, Array]) -> Array:
    """The value of a Placeholder (its feed, in the declared dtype) or a Const (its weight)."""
    if node.op == "Const":
        return _widen(graph.weights[node.name])
    if node.name not in feeds:
        raise KeyError(f"placeholder {node.name!r} was not fed")
    feed = np.asarray(feeds[node.name])
    declared = node.attrs.get("dtype")
    return feed.astype(_dtype(declared, node)) if declared else _widen(feed)


def run_graph(graph: TfjsGraph, feeds: dict[str, Array], outputs: Sequence[str]
              ) -> dict[str, Array]:
    """Evaluate ``outputs`` (node names, optionally "name:k") given Placeholder ``feeds``,
    computing only what they need, in float64 (integers stay integers). An intermediate is
    dropped as soon as its last reader has run, so Thunder's peak memory stays a few maps."""
    order = _schedule(graph, outputs)
    readers: dict[str, int] = {}
    for node in order:
        for src, _ in map(_split, node.inputs):
            readers[src] = readers.get(src, 0) + 1
    keep = {_split(o)[0] for o in outputs}
    values: dict[str, Any] = {}
    for node in order:
        if node.op in ("Placeholder", "Const"):
            values[node.name] = _source(graph, node, feeds)
            continue
        args = []
        for ref in node.inputs:
            src, k = _split(ref)
            v = values[src]
            args.append(v[k] if isinstance(v, list) else v)
        values[node.name] = _run_node(node, args)
        del args
        for src, _ in map(_split, node.inputs):
            readers[src] -= 1
            if readers[src] == 0 and src not in keep:
                del values[src]
    out = {}
    for ref in outputs:
        src, k = _split(ref)
        v = values[src]
        out[ref] = v[k] if isinstance(v, list) else v
    return out
