"""The dense bar: the same backbone / network exported with ``torch.onnx.export`` and run by
ONNX Runtime (all graph optimisations, which fold BN and fuse conv + clip, fixed intra-op
threads). DESIGN.md §2: a sparse path only counts if it beats this, not PyTorch eager."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..model.network import Backbone, PoseNetwork


class DenseBackbone(nn.Module):
    """The ungated backbone (every block ``forward_dense``) returning its last features: the
    stride-16 block output, or for MoveNet's architecture the stride-32 one through
    ``backbone.last`` (the 1×1 conv to 1280), whatever the gating of ``backbone``."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone

    def features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(last features, the neck's taps coarse to fine: ``backbone.skip_strides``)."""
        x = self.backbone.stem(x)
        taps: dict[int, Tensor] = {}
        tap_of = {i: s for s, i in self.backbone.tap_after.items()}
        for i, block in enumerate(self.backbone.blocks):
            x = block.forward_dense(x)
            if i in tap_of:
                taps[tap_of[i]] = x
        if self.backbone.last is not None:
            x = self.backbone.last(x)
        return x, [taps[s] for s in self.backbone.skip_strides]

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)[0]


class DenseNetwork(nn.Module):
    """The ungated whole network: dense backbone + neck (light or FPN) + head (with its
    separable pre-conv when there is one) -> (heatmaps, triplets, joints). MoveNet's own heads
    are not run, as no runtime runs them."""

    def __init__(self, net: PoseNetwork) -> None:
        super().__init__()
        self.dense = DenseBackbone(net.backbone)
        self.neck = net.neck
        self.head_pre = net.head_pre
        self.head = net.head

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        feats, skips = self.dense.features(x)
        y = self.neck(feats, skips)
        if self.head_pre is not None:
            y = self.head_pre(y)
        return self.head(y)[:3]


class MoveNetDense(nn.Module):
    """MoveNet as imported, dense: backbone + FPN + MoveNet's own four heads -> raw (heatmap,
    center, regress, offset) logits, decoded outside the graph by ``model.movenet_head.decode``.

    The node's exporter (``export.onnx_export``) writes our HEMlets head only, so this is the
    graph a user of the imported MoveNet would run in ONNX Runtime (the TF.js graph decodes
    inside; here decoding is the caller's numpy/torch step)."""

    def __init__(self, net: PoseNetwork) -> None:
        super().__init__()
        if net.movenet is None:
            raise ValueError("this network has no MoveNet heads (movenet_heads: false)")
        self.dense = DenseBackbone(net.backbone)
        self.neck = net.neck
        self.movenet = net.movenet

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        feats, skips = self.dense.features(x)
        out = self.movenet(self.neck(feats, skips))
        return out.heatmap, out.center, out.regress, out.offset


def export_onnx(module: nn.Module, example: Tensor) -> bytes:
    """Export with the TorchScript-based exporter (static shapes, opset 17)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(), (example,), buf, dynamo=False, opset_version=17,
            input_names=["image"], do_constant_folding=True,
        )  # fmt: skip
    return buf.getvalue()


def ort_runner(model: bytes, threads: int, example: Tensor) -> Callable[[], object]:
    """A zero-argument callable running one inference on ``example`` in ONNX Runtime."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: np.ascontiguousarray(example.numpy())}
    return lambda: sess.run(None, feed)
