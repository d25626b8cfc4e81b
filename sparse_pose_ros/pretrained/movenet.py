"""MoveNet SinglePose (TF.js graph model) -> our :class:`PoseNetwork`, tensor by tensor.

Every float weight that feeds a convolution in the graph is mapped onto exactly one of our
parameters, by its graph name, with its shape checked; the import fails if a graph weight is
left unused or one of the MoveNet-owned parameters of our network is left unset. The graph's
decoding constants (grids, the centre weighting map, the 1/size scale) and its input
normalisation are checked against what our code assumes, so a MoveNet release that changed them
is refused instead of silently decoded wrong.

Layouts: conv HWIO -> OIHW is ``permute(3, 2, 0, 1)``; depthwise HWC1 -> C1HW is
``permute(2, 3, 0, 1)``. BatchNorm is folded in the graph (``*_bn_offset`` biases only): our
backbone keeps its BatchNorm2d layers, loaded as gamma = 1, beta = offset, mean = 0,
var = 1 − eps, so eval mode is exactly the graph (train mode would use batch statistics and
ruin it: training must keep these layers frozen, ``model.blocks.freeze_batchnorm``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..model.movenet_head import DISTANCE_OFFSET, centre_weight
from ..model.network import NetworkConfig, PoseNetwork, movenet_config
from .tfjs import TfjsGraph

FEATURES = "StatefulPartitionedCall/center_net_mobile_net_v2fpn_feature_extractor/model_1/"
HEAD_NAMES = {"kpt_heatmap": "heatmap", "center": "center", "kpt_regress": "regress",
              "kpt_offset": "offset"}
#: graph ops whose weight inputs are network parameters.
CONV_OPS = ("_FusedConv2D", "FusedDepthwiseConv2dNative", "DepthwiseConv2dNative", "Conv2D")


class ImportMismatch(ValueError):
    """The graph does not map one-to-one onto our network (names the tensors)."""


@dataclass
class ImportReport:
    """What the import did: which graph weight went where, and what stayed ours."""

    assigned: dict[str, str] = field(default_factory=dict)  # graph weight -> our tensor
    fresh: list[str] = field(default_factory=list)  # our tensors not from MoveNet (heads, masks)
    input_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    input_std: tuple[float, float, float] = (0.5, 0.5, 0.5)


def variant_of(graph: TfjsGraph) -> str:
    """"thunder" or "lightning", from the graph's ``generatedBy`` (tfhub URL) and input size."""
    gen = str(graph.meta.get("generatedBy", ""))
    for name in ("thunder", "lightning"):
        if name in gen:
            return name
    raise ImportMismatch(f"graph generatedBy {gen!r} names neither thunder nor lightning")


def _conv(w: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1))).float()


def _depthwise(w: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(w.transpose(2, 3, 0, 1))).float()


def _vector(w: np.ndarray) -> Tensor:
    """Biases and folded-BN offsets: no layout change."""
    return torch.from_numpy(w).float()


def _target(name: str, net: PoseNetwork) -> tuple[str, Callable[[np.ndarray], Tensor]] | None:
    """Our tensor name (and the layout converter) for one graph weight name, or None."""
    n_blocks = len(net.backbone.blocks)
    if name.startswith(FEATURES + "model/"):
        rest = name[len(FEATURES) + len("model/"):]
        m = re.fullmatch(r"(\w+?)/(Conv2D|depthwise)_(weights|bn_offset)", rest)
        if m is None:
            return None
        layer, kind, what = m.groups()
        if layer == "Conv1":
            mod = "backbone.stem"
        elif layer == "Conv_1":
            mod = "backbone.last"
        else:
            bm = re.fullmatch(r"(?:block_(\d+)|expanded_conv)_(expand|depthwise|project)", layer)
            if bm is None:
                return None
            k = int(bm.group(1) or 0)
            if k >= n_blocks:
                return None
            mod = f"backbone.blocks.{k}.{bm.group(2)}"
        if what == "bn_offset":
            return f"{mod}.1.bias", _vector
        conv = _depthwise if kind == "depthwise" else _conv
        return f"{mod}.0.weight", conv
    if name.startswith(FEATURES):
        rest = name[len(FEATURES):]
        m = re.fullmatch(r"conv2d(?:_(\d+))?/(Conv2D|BiasAdd)/ReadVariableOp", rest)
        if m is not None:
            i = int(m.group(1) or 0)
            mod = "neck.top" if i == 0 else f"neck.laterals.{i - 1}"
            return (f"{mod}.weight", _conv) if m.group(2) == "Conv2D" else (
                f"{mod}.bias", _vector)
        m = re.fullmatch(r"separable_conv2d(?:_(\d+))?/separable_conv2d"
                         r"(/ReadVariableOp|_weights|_bn_offset)", rest)
        if m is not None:
            mod = f"neck.refine.{int(m.group(1) or 0)}"
            return {
                "/ReadVariableOp": (f"{mod}.depthwise.weight", _depthwise),
                "_weights": (f"{mod}.pointwise.weight", _conv),
                "_bn_offset": (f"{mod}.pointwise.bias", _vector),
            }[m.group(2)]
        return None
    m = re.fullmatch(r"StatefulPartitionedCall/(kpt_heatmap|center|kpt_regress|kpt_offset)_0/"
                     r"(separable_conv2d_\d+/separable_conv2d/ReadVariableOp(?:_1)?|"
                     r"separable_conv2d_\d+/BiasAdd/ReadVariableOp|"
                     r"conv2d_\d+/Conv2D/ReadVariableOp|conv2d_\d+/BiasAdd/ReadVariableOp)", name)
    if m is None:
        return None
    mod = f"movenet.branches.{HEAD_NAMES[m.group(1)]}"
    part = m.group(2)
    if part.startswith("separable"):
        if part.endswith("BiasAdd/ReadVariableOp"):
            return f"{mod}.sep.pointwise.bias", _vector
        if part.endswith("_1"):
            return f"{mod}.sep.pointwise.weight", _conv
        return f"{mod}.sep.depthwise.weight", _depthwise
    if "/Conv2D/" in part:
        return f"{mod}.out.weight", _conv
    return f"{mod}.out.bias", _vector


def conv_weight_names(graph: TfjsGraph) -> set[str]:
    """Names of the graph weights that feed a convolution (filters and biases)."""
    names: set[str] = set()
    for node in graph.nodes:
        if node.op in CONV_OPS:
            names.update(i.split(":")[0] for i in node.inputs[1:] if i in graph.weights)
    return names


def _normalisation(graph: TfjsGraph) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) such that (x/255 − mean)/std equals the graph's (x − a)·b − c."""
    a = graph.weights["StatefulPartitionedCall/Reshape"].reshape(3).astype(np.float64)
    b = graph.weights["StatefulPartitionedCall/truediv"].reshape(3).astype(np.float64)
    c = float(graph.weights["StatefulPartitionedCall/sub_1/y"].reshape(()))
    std = 1.0 / (255.0 * b)
    mean = (a * b + c) * std
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


#: Float constants of the graph that are not network weights: the input normalisation (read by
#: ``_normalisation``) and the decoding constants (checked by ``check_decoding_constants``).
NORMALISATION_CONSTANTS = ("StatefulPartitionedCall/Reshape", "StatefulPartitionedCall/truediv",
                           "StatefulPartitionedCall/sub_1/y")
DECODING_CONSTANTS = ("StatefulPartitionedCall/strided_slice_3",
                      "StatefulPartitionedCall/strided_slice_4",
                      "ConstantFolding/StatefulPartitionedCall/truediv_2_recip",
                      "StatefulPartitionedCall/Reshape_13", "StatefulPartitionedCall/add_5/y")


def check_decoding_constants(graph: TfjsGraph, grid: int) -> None:
    """The graph's decoding constants equal what ``model.movenet_head.decode`` computes."""
    w = graph.weights
    ys, xs = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    centre = centre_weight(grid, grid, torch.zeros((), dtype=torch.float64)).numpy()
    expected = {
        "StatefulPartitionedCall/strided_slice_3": ys[..., None],
        "StatefulPartitionedCall/strided_slice_4": xs[..., None],
        "ConstantFolding/StatefulPartitionedCall/truediv_2_recip": centre[..., None],
        "StatefulPartitionedCall/Reshape_13": np.full((1, 1, 1, 2), 1.0 / grid),
        "StatefulPartitionedCall/add_5/y": np.array(DISTANCE_OFFSET),
    }
    for name, want in expected.items():
        got = w.get(name)
        if got is None:
            raise ImportMismatch(f"decoding constant {name} is missing from the graph")
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-3, atol=1e-3):
            raise ImportMismatch(
                f"decoding constant {name} differs from model.movenet_head.decode's assumption "
                f"(max diff {np.max(np.abs(got - want)) if got.shape == want.shape else 'shape'})"
            )


def import_graph(graph: TfjsGraph, gated: bool = True, **overrides: Any
                 ) -> tuple[PoseNetwork, ImportReport]:
    """Build ``movenet_config(variant)`` and load the graph's weights into it (eval mode)."""
    variant = variant_of(graph)
    mean, std = _normalisation(graph)
    cfg: NetworkConfig = movenet_config(variant, gated=gated, input_mean=mean, input_std=std,
                                        **overrides)
    net = PoseNetwork(cfg)
    # the graph has no masks: ours execute everywhere until trained, so the imported network
    # computes the graph exactly whatever the random draw of its fresh units
    net.set_masks_all_on()
    state = net.state_dict()
    report = ImportReport(input_mean=mean, input_std=std)  # type: ignore[arg-type]
    params = conv_weight_names(graph)
    unused = []
    for name in sorted(params):
        target = _target(name, net)
        if target is None or target[0] not in state:
            unused.append(name)
            continue
        key, convert = target
        value = convert(graph.weights[name])
        if tuple(value.shape) != tuple(state[key].shape):
            raise ImportMismatch(f"{name} {tuple(value.shape)} does not fit {key} "
                                 f"{tuple(state[key].shape)}")
        if key in report.assigned.values():
            raise ImportMismatch(f"two graph weights map onto {key}")
        state[key] = value
        report.assigned[name] = key
    known = params | set(NORMALISATION_CONSTANTS) | set(DECODING_CONSTANTS)
    unused += sorted(n for n, v in graph.weights.items()
                     if v.dtype.kind == "f" and n not in known)
    if unused:
        raise ImportMismatch(f"{len(unused)} graph weights have no place in the network: "
                             + ", ".join(unused[:5]))
    # Folded BatchNorm: gamma 1, beta = offset (assigned above), mean 0, var 1 - eps.
    owned = set(report.assigned.values())
    for mod_name, mod in net.named_modules():
        if isinstance(mod, nn.BatchNorm2d) and f"{mod_name}.bias" in owned:
            state[f"{mod_name}.weight"] = torch.ones_like(state[f"{mod_name}.weight"])
            state[f"{mod_name}.running_mean"] = torch.zeros_like(state[f"{mod_name}.running_mean"])
            state[f"{mod_name}.running_var"] = torch.full_like(
                state[f"{mod_name}.running_var"], 1.0 - mod.eps)
            owned.update({f"{mod_name}.weight", f"{mod_name}.running_mean",
                          f"{mod_name}.running_var", f"{mod_name}.num_batches_tracked"})
    must_own = [k for k in state if k.startswith(("backbone.", "neck.", "movenet."))
                and ".mask_unit." not in k]
    missing = [k for k in must_own if k not in owned]
    if missing:
        raise ImportMismatch(f"{len(missing)} MoveNet parameters were not in the graph: "
                             + ", ".join(missing[:5]))
    grid = cfg.input_size // 4
    check_decoding_constants(graph, grid)
    net.load_state_dict(state, strict=True)
    report.fresh = sorted(k for k in state if k not in owned)
    return net.eval(), report
