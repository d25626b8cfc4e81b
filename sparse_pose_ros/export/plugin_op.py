"""The ``sparse_pose_ros::SparseInvertedResidual`` custom ONNX node: contract, schema, tracer.

One node replaces one gated inverted-residual block in the *plugin graph*. TensorRT's ONNX parser
does not know the op, so it looks up a plugin creator with the node's op type, ``plugin_version``
and ``plugin_namespace`` attributes; our IPluginV3 (``plugin/``) registers exactly that.

Contract (what the TensorRT plugin and the CUDA kernels implement; BN already folded):

======  ==============  ==========================================================
index   name            shape / meaning
======  ==============  ==========================================================
0       X               (B, C, H, W) block input
1       G               (B, 1, Ho, Wo) execution mask, 0/1 (Ho = (H-1)//stride + 1)
2       W_expand        (Ce, C); a 1-element dummy when has_expand = 0
3       b_expand        (Ce,); a 1-element dummy when has_expand = 0
4       W_dw            (Ce, 9), taps row-major (ky·3 + kx)
5       b_dw            (Ce,)
6       W_proj          (Co, Ce)
7       b_proj          (Co,)
out 0   Y               (B, Co, Ho, Wo) = residual ? X + P∘G : P∘G
======  ==============  ==========================================================

with E = ReLU6(W_expand·X + b_expand) (or X), D = ReLU6(depthwise3×3_stride(E) + b_dw),
P = W_proj·D + b_proj. Attributes: stride (int, 1|2), has_expand (int 0|1), residual (int 0|1),
plugin_version "1", plugin_namespace "sparse_pose_ros".
"""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F
from torch import Tensor

from ..model.masks import receptive_mask

OP_TYPE = "SparseInvertedResidual"
DOMAIN = "sparse_pose_ros"
DOMAIN_VERSION = 1
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "sparse_pose_ros"
INPUT_NAMES: tuple[str, ...] = (
    "X",
    "G",
    "W_expand",
    "b_expand",
    "W_dw",
    "b_dw",
    "W_proj",
    "b_proj",
)
INT_ATTRIBUTES: tuple[str, ...] = ("stride", "has_expand", "residual")
STRING_ATTRIBUTES: tuple[str, ...] = ("plugin_version", "plugin_namespace")

_REGISTER_LOCK = threading.Lock()


def register_schema() -> None:
    """Register the op's ONNX schema once per process, so ``onnx.checker`` (full check) knows it.

    The schema types the op (float/float16 tensors) and declares its attributes; shape
    inference is not registered (Python schemas cannot carry one), the exporter writes the
    output's value_info instead.
    """
    import onnx
    from onnx import defs

    with _REGISTER_LOCK:
        if defs.has(OP_TYPE, DOMAIN):
            return
        attr = defs.OpSchema.Attribute
        attr_type = defs.OpSchema.AttrType
        schema = defs.OpSchema(
            OP_TYPE,
            DOMAIN,
            DOMAIN_VERSION,
            doc=(
                "Gated MobileNetV2 inverted-residual block executed only where G = 1 "
                "(gather -> expand -> depthwise -> project -> scatter). See "
                "sparse_pose_ros/export/plugin_op.py for the contract."
            ),
            inputs=[
                defs.OpSchema.FormalParameter(name, "T", description=name) for name in INPUT_NAMES
            ],
            outputs=[defs.OpSchema.FormalParameter("Y", "T", description="block output")],
            type_constraints=[
                ("T", ["tensor(float)", "tensor(float16)"], "float tensors"),
            ],
            attributes=[
                attr("stride", attr_type.INT, "depthwise stride, 1 or 2"),
                attr("has_expand", attr_type.INT, "1 if the block has a 1x1 expand conv"),
                attr("residual", attr_type.INT, "1 to add X to the output"),
                attr("plugin_version", attr_type.STRING, "TensorRT plugin creator version"),
                attr("plugin_namespace", attr_type.STRING, "TensorRT plugin namespace"),
            ],
        )
        defs.register_schema(schema)
        del onnx  # imported for its side effect of loading the defs module


def reference_forward(
    x: Tensor,
    g: Tensor,
    w_expand: Tensor,
    b_expand: Tensor,
    w_dw: Tensor,
    b_dw: Tensor,
    w_proj: Tensor,
    b_proj: Tensor,
    stride: int,
    has_expand: bool,
    residual: bool,
) -> Tensor:
    """The contract in dense PyTorch ops (masked dense; equal to the sparse kernels)."""
    ce = w_dw.shape[0]
    h = x
    if has_expand:
        h = F.relu6(F.conv2d(x, w_expand[:, :, None, None], b_expand))
    h = h * receptive_mask(g, stride, (x.shape[-2], x.shape[-1]))
    h = F.relu6(F.conv2d(h, w_dw.reshape(ce, 1, 3, 3), b_dw, stride=stride, padding=1, groups=ce))
    p = F.conv2d(h * g, w_proj[:, :, None, None], b_proj) * g
    return x + p if residual else p


class SparseInvertedResidualFunction(torch.autograd.Function):
    """Traced as one custom ONNX node; runs :func:`reference_forward` in PyTorch."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: object,
        x: Tensor,
        g: Tensor,
        w_expand: Tensor,
        b_expand: Tensor,
        w_dw: Tensor,
        b_dw: Tensor,
        w_proj: Tensor,
        b_proj: Tensor,
        stride: int,
        has_expand: bool,
        residual: bool,
    ) -> Tensor:
        return reference_forward(
            x, g, w_expand, b_expand, w_dw, b_dw, w_proj, b_proj, stride, has_expand, residual
        )

    @staticmethod
    def symbolic(  # type: ignore[no-untyped-def]
        graph, x, g, w_expand, b_expand, w_dw, b_dw, w_proj, b_proj, stride, has_expand, residual
    ):
        out = graph.op(
            f"{DOMAIN}::{OP_TYPE}",
            x,
            g,
            w_expand,
            b_expand,
            w_dw,
            b_dw,
            w_proj,
            b_proj,
            stride_i=int(stride),
            has_expand_i=int(bool(has_expand)),
            residual_i=int(bool(residual)),
            plugin_version_s=PLUGIN_VERSION,
            plugin_namespace_s=PLUGIN_NAMESPACE,
        )
        sizes = x.type().sizes()
        if sizes is not None and len(sizes) == 4:
            ho, wo = ((sizes[2] - 1) // stride + 1, (sizes[3] - 1) // stride + 1)
            out.setType(x.type().with_sizes([sizes[0], w_proj.type().sizes()[0], ho, wo]))
        return out
