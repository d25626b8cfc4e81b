"""The dense neck + head of a :class:`PoseNetwork` in ONNX Runtime, fed straight from the
sparse executor's channels-last feature buffers.

Why: the neck and head are dense (every pixel of the stride-4 map), so the fastest dense runtime
on the machine should run them. In PyTorch eager they cost about 3x what ONNX Runtime needs
(op overhead, NCHW without fused conv + activation). The graph takes the stride-16 / 8 / 4
features **channels-last** (the executor's layout) and transposes inside, so the executor's
buffers go to ONNX Runtime as zero-copy numpy views and no layout copy happens in Python.

The graph is exported once per (batch, feature shapes) with the network's current weights;
call :meth:`OrtHead.refresh` after changing them.

Any neck the model has: the light one (stride 16 -> 8 -> 4) or MoveNet's FPN (stride 32 -> 16
-> 8 -> 4, bilinear x2 + laterals + separable convs) with the separable ``head_pre``: the
compiled head (``head_plan``) only knows the light neck, so the FPN networks run here.
"""

from __future__ import annotations

import io
import logging
import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..model.network import PoseNetwork

log = logging.getLogger(__name__)


class _ChannelsLastHead(nn.Module):
    """neck + head taking (B, H, W, C) features (the backbone's output, then its taps coarse to
    fine) [+ the head-gating mask]; outputs heatmaps, triplets, joints."""

    def __init__(self, net: PoseNetwork, n_feats: int) -> None:
        super().__init__()
        self.net = net
        self.n_feats = n_feats

    def forward(self, *inputs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        feats = [t.permute(0, 3, 1, 2) for t in inputs[: self.n_feats]]
        gate = inputs[self.n_feats] if len(inputs) > self.n_feats else None
        return self.net.run_head(feats[0], feats[1:], [gate])[:3]


def feature_names(net: PoseNetwork) -> list[str]:
    """Graph input names of the features: ``f<stride>``, the backbone output first."""
    strides = (net.cfg.output_stride, *net.backbone.skip_strides)
    return [f"f{s}" for s in strides]


def ort_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class OrtHead:
    """Runs ``net.neck`` + ``net.head`` in an ONNX Runtime session (CPU, ``threads`` intra-op
    threads, all graph optimisations, no spinning between frames)."""

    def __init__(self, net: PoseNetwork, threads: int | None = None) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.net = net
        self.threads = threads
        self._key: tuple[Any, ...] | None = None
        self._session: Any = None
        self._names: list[str] = []

    def refresh(self) -> None:
        """Forget the exported graph (re-exported with the current weights on the next call)."""
        self._key = None
        self._session = None

    def _build(self, feats: list[Tensor]) -> None:
        import onnxruntime as ort

        names = feature_names(self.net)
        module = _ChannelsLastHead(self.net, len(names)).eval()
        buf = io.BytesIO()
        self._names = [*names, "gate"][: len(feats)]
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter warns that it is legacy
            torch.onnx.export(
                module, tuple(torch.zeros_like(f) for f in feats), buf, dynamo=False,
                opset_version=17, input_names=self._names,
                output_names=["heatmaps", "triplets", "joints"], do_constant_folding=True,
            )  # fmt: skip
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = int(self.threads or torch.get_num_threads())
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            buf.getvalue(), so, providers=["CPUExecutionProvider"]
        )
        log.info("neck + head exported to ONNX Runtime for features %s",
                 [tuple(f.shape) for f in feats])  # fmt: skip

    def __call__(self, *feats: Tensor,
                 gate: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Channels-last (B, H, W, C) float32 CPU features (the backbone's output, then its taps
        coarse to fine) [+ the (B, 1, h, w) head-gating mask, ``PoseNetwork.head_gate``] ->
        (heatmaps, triplets, joints)."""
        n = len(feature_names(self.net))
        if len(feats) != n:
            raise ValueError(f"expected {n} feature maps, got {len(feats)}")
        feats = (*feats,) if gate is None else (*feats, gate)
        key = tuple(tuple(f.shape) for f in feats)
        if key != self._key:
            self._build(feats)
            self._key = key
        feed = {n: np.ascontiguousarray(f.numpy()) for n, f in zip(self._names, feats, strict=True)}
        heatmaps, triplets, joints = self._session.run(None, feed)
        return torch.from_numpy(heatmaps), torch.from_numpy(triplets), torch.from_numpy(joints)
