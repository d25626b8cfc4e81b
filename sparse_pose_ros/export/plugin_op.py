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
pad_before (int 1|0), plugin_version "1", plugin_namespace "sparse_pose_ros".

``pad_before`` is the zero rows/cols the depthwise pads before the input on both axes: output
(i, j) reads inputs (i·s − p .. i·s − p + 2, j·s − p .. j·s − p + 2) and taps past the input read
zero. 1 is PyTorch's padding=1; 0 is TF 'SAME' of a stride-2 conv on an even input (0 before,
1 after), which MoveNet's weights need (PRETRAINED.md trap 1: with padding 1 every keypoint
moves by ~29 px). The plugin takes one value for both axes, so an even × odd input of a TF
'SAME' block (0 on one axis, 1 on the other) cannot be exported; :func:`block_pad_before`
refuses it. A plugin reading a node without the attribute assumes 1, what such files meant.
"""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model.blocks import InvertedResidual, conv_pads
from ..model.masks import receptive_mask
from ..sparse.kernels import FIELD_PAD_BEFORE, PAD_BEFORE_DEFAULT
from ..sparse.kernels.weights import block_weights

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
INT_ATTRIBUTES: tuple[str, ...] = ("stride", "has_expand", "residual", FIELD_PAD_BEFORE)
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
                attr(
                    FIELD_PAD_BEFORE,
                    attr_type.INT,
                    "zero rows/cols padded before the input: 1 (padding=1) or, at stride 2 on an "
                    "even input, 0 (TF 'SAME'); absent means 1",
                    required=False,
                ),
                attr("plugin_version", attr_type.STRING, "TensorRT plugin creator version"),
                attr("plugin_namespace", attr_type.STRING, "TensorRT plugin namespace"),
            ],
        )
        defs.register_schema(schema)
        del onnx  # imported for its side effect of loading the defs module


def output_extent(size: int, stride: int) -> int:
    """Output side of the node's 3×3 depthwise (the same for pad_before 0 and 1)."""
    return (size - 1) // stride + 1


def check_pad_before(pad_before: int, stride: int, in_hw: tuple[int, int]) -> None:
    """Raise ``ValueError`` unless the plugin accepts ``pad_before`` for this stride and input.

    The plugin's rules (``configError`` / ``blockShape`` in ``sparseInvertedResidualPlugin.cpp``):
    0 or 1; 0 only at stride 2 and only on an even H and W, the one case where TF 'SAME' pads 0
    before (on an odd side it pads 1, so a 0 there would mean two zero rows after the input,
    which no exported conv computes).
    """
    if pad_before not in (0, 1):
        raise ValueError(f"pad_before must be 0 or 1, got {pad_before}")
    if pad_before == 0 and stride != 2:
        raise ValueError(f"pad_before 0 (TF 'SAME') is only valid at stride 2, got stride {stride}")
    if pad_before == 0 and (in_hw[0] % 2 or in_hw[1] % 2):
        raise ValueError(f"pad_before 0 (TF 'SAME') needs an even H and W, got {in_hw}")


def block_pad_before(block: InvertedResidual, in_hw: tuple[int, int]) -> int:
    """The node's ``pad_before`` for ``block`` on an ``in_hw`` input, from its real padding.

    Reads ``conv_pads`` of the block's depthwise conv (symmetric: 1 everywhere; TF 'SAME': 0 on
    even sides of a stride-2 conv). The plugin pads the same on both axes, so a TF 'SAME' block
    on an even × odd input (top ≠ left) is refused, as is any padding under which the conv's
    output side differs from the plugin's ``(H - 1) // stride + 1``.

    Raises:
        ValueError: mixed-parity input of a TF 'SAME' stride-2 block, or a padding the plugin
            cannot express.
    """
    height, width = in_hw
    top, bottom, left, right = conv_pads(block.depthwise[0], height, width)
    if top != left:
        raise ValueError(
            "the SparseInvertedResidual plugin pads the same before both axes, but this TF "
            f"'SAME' block pads {top} before the rows and {left} before the columns of its "
            f"{height}x{width} input (one side even, the other odd); export at an input size "
            "whose feature maps have equal parities (a multiple of 32 for MoveNet)"
        )
    stride = block.stride
    for side, before, after in ((height, top, bottom), (width, left, right)):
        if (side + before + after - 3) // stride + 1 != output_extent(side, stride):
            raise ValueError(
                f"padding ({before}, {after}) on a side of {side} at stride {stride} gives an "
                "output the plugin does not compute"
            )
    check_pad_before(top, stride, in_hw)
    return top


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
    pad_before: int = PAD_BEFORE_DEFAULT,
) -> Tensor:
    """The contract in dense PyTorch ops (masked dense; equal to the sparse kernels).

    The depthwise pads ``pad_before`` before each axis and, after it, the zeros the last output
    reads past the input: 1 for TF 'SAME' on an even side, what the TF graph pads; for padding=1
    at most its 1 (0 on an even side at stride 2, whose last padded row no output reads), so
    the result equals the block's own conv with ``conv_pads``.
    """
    in_hw = (int(x.shape[-2]), int(x.shape[-1]))
    check_pad_before(pad_before, stride, in_hw)
    ce = w_dw.shape[0]
    h = x
    if has_expand:
        h = F.relu6(F.conv2d(x, w_expand[:, :, None, None], b_expand))
    h = h * receptive_mask(g, stride, in_hw, pad_before=pad_before)
    bottom, right = ((output_extent(n, stride) - 1) * stride + 3 - n - pad_before for n in in_hw)
    h = F.pad(h, (pad_before, right, pad_before, bottom))
    h = F.relu6(F.conv2d(h, w_dw.reshape(ce, 1, 3, 3), b_dw, stride=stride, groups=ce))
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
        pad_before: int = PAD_BEFORE_DEFAULT,
    ) -> Tensor:
        return reference_forward(
            x,
            g,
            w_expand,
            b_expand,
            w_dw,
            b_dw,
            w_proj,
            b_proj,
            stride,
            has_expand,
            residual,
            pad_before,
        )

    @staticmethod
    def symbolic(  # type: ignore[no-untyped-def]
        graph,
        x,
        g,
        w_expand,
        b_expand,
        w_dw,
        b_dw,
        w_proj,
        b_proj,
        stride,
        has_expand,
        residual,
        pad_before=PAD_BEFORE_DEFAULT,
    ):
        # Always written (1 too): the node then says which padding its weights were trained for.
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
            pad_before_i=int(pad_before),
            plugin_version_s=PLUGIN_VERSION,
            plugin_namespace_s=PLUGIN_NAMESPACE,
        )
        sizes = x.type().sizes()
        if sizes is not None and len(sizes) == 4:
            ho, wo = ((sizes[2] - 1) // stride + 1, (sizes[3] - 1) // stride + 1)
            out.setType(x.type().with_sizes([sizes[0], w_proj.type().sizes()[0], ho, wo]))
        return out


class PluginNodeBlock(nn.Module):
    """One gated block as the custom node: BN-folded weights as buffers, the depthwise's pad
    before for the block's input size, ``forward(x, hard_mask)``. The one place the exporter and
    the plugin tests build the node from a block."""

    def __init__(self, block: InvertedResidual, in_hw: tuple[int, int]) -> None:
        super().__init__()
        self.block = block
        # Where the depthwise window starts (0 for a TF 'SAME' stride-2 block on an even
        # input); refuses what the node cannot say (an even × odd TF 'SAME' input).
        self.pad_before = block_pad_before(block, in_hw)
        w = block_weights(block, in_hw)  # BN-folded, in the plugin's layout
        self.has_expand = w.has_expand
        for name in ("w_expand", "b_expand", "w_dw", "b_dw", "w_proj", "b_proj"):
            self.register_buffer(name, torch.from_numpy(getattr(w, name).copy()))

    def forward(self, x: Tensor, hard: Tensor) -> Tensor:
        return SparseInvertedResidualFunction.apply(
            x, hard, self.w_expand, self.b_expand, self.w_dw, self.b_dw, self.w_proj,
            self.b_proj, self.block.stride, self.has_expand, self.block.use_residual,
            self.pad_before,
        )  # fmt: skip
