"""The dense neck + head of a :class:`PoseNetwork` in ONNX Runtime, fed straight from the
sparse executor's channels-last feature buffers.

Why: the neck and head are dense (every pixel of the stride-4 map), so the fastest dense runtime
on the machine should run them. In PyTorch eager they cost about 3x what ONNX Runtime needs
(op overhead, NCHW without fused conv + activation). The graph takes the stride-16 / 8 / 4
features **channels-last** (the executor's layout) and transposes inside, so the executor's
buffers go to ONNX Runtime as zero-copy numpy views and no layout copy happens in Python.

The graph is exported once per (batch, feature shapes) with the network's current weights;
call :meth:`OrtHead.refresh` after changing them.

**Windowed head.** Where the head reads a region (head gating and/or MoveNet's person box,
``PoseNetwork.head_read_region``) the work is split in two graphs: the neck + the region on the
whole map, then ``head_pre`` + the HEMlets head on the region's bounding box alone (grown by
one cell for ``head_pre``'s 3x3 depthwise; spatial axes dynamic), pasted back into maps that
hold the outside constants (logits ``REGION_OFF_LOGIT``, triplets 0) and the joints moved to
the whole map's coordinates. Same outputs as the whole-map graph (tests), because outside the
region nothing the joints read depends on the features. Why: on a whole camera frame with a
small person the stride-4 head was ~60 % of the head's ~5.5 ms (Thunder, 256 px, one thread)
and the person box is a small share of the map.

Any neck the model has: the light one (stride 16 -> 8 -> 4) or MoveNet's FPN (stride 32 -> 16
-> 8 -> 4, bilinear x2 + laterals + separable convs) with the separable ``head_pre``. With the
compiled kernel the FPN networks' neck + head are compiled by default (``window_head_plan``);
this is their path without it, or with ``head="ort"``.
"""

from __future__ import annotations

import io
import logging
import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .. import skeleton
from ..model.heads import REGION_OFF_LOGIT, strip_to_square
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


class _NeckAndRegion(nn.Module):
    """Channels-last features [+ gate] -> (neck output (B, C, h, w), the (B, 1, h, w) region
    the head reads: ``PoseNetwork.head_read_region``, all ones where it reads everywhere)."""

    def __init__(self, net: PoseNetwork, n_feats: int) -> None:
        super().__init__()
        self.net = net
        self.n_feats = n_feats

    def forward(self, *inputs: Tensor) -> tuple[Tensor, Tensor]:
        feats = [t.permute(0, 3, 1, 2) for t in inputs[: self.n_feats]]
        gate = inputs[self.n_feats] if len(inputs) > self.n_feats else None
        y = self.net.neck(feats[0], feats[1:])
        region = self.net.head_read_region(y, [gate])
        if region is None:
            region = torch.ones_like(y[:, :1])
        return y, region


class _RegionFromNeck(nn.Module):
    """(neck output channels-last (B, h, w, C), MoveNet's centre logits (B, 1, h, w)) [+ gate]
    -> the (B, 1, h, w) region the head reads (``PoseNetwork.head_read_region``, all ones where
    it reads everywhere): the graph that follows the compiled FPN (``sparse.fpn_plan``)."""

    def __init__(self, net: PoseNetwork) -> None:
        super().__init__()
        self.net = net

    def forward(self, y: Tensor, center: Tensor, *gate: Tensor) -> Tensor:
        y = y.permute(0, 3, 1, 2)
        region = self.net.head_read_region(y, [gate[0] if gate else None], center_logits=center)
        return torch.ones_like(y[:, :1]) if region is None else region


class _HeadInWindow(nn.Module):
    """(neck output, region) on a window of a (h, w) map whose top-left cell is ``origin``
    (x0, y0) -> heatmaps, triplets of the window, and the joints as the whole-map graph gives
    them: x, y in [0, 1] of the map (the strip's square), the lifter's z
    (``PoseNetwork.head_in_region`` + ``strip_to_square`` + ``refine_joints``)."""

    def __init__(self, net: PoseNetwork, map_hw: tuple[int, int]) -> None:
        super().__init__()
        self.net = net
        self.map_hw = map_hw

    def forward(self, y: Tensor, region: Tensor, origin: Tensor
                ) -> tuple[Tensor, Tensor, Tensor]:
        heatmaps, triplets, joints, _ = self.net.head_in_region(y, region)
        h, w = self.map_hw
        size = torch.stack([torch.tensor(y.shape[-1]), torch.tensor(y.shape[-2])]).to(y.dtype)
        scale = torch.tensor([1.0 / w, 1.0 / h], dtype=y.dtype)
        xy = (origin + joints[..., :2] * size) * scale  # window -> whole map
        joints = strip_to_square(torch.cat([xy, joints[..., 2:]], dim=-1), h, w)
        return heatmaps, triplets, self.net.refine_joints(joints)


def region_window(region: np.ndarray, halo: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the bounding box of the nonzero cells of a (B, 1, h, w) region over
    the batch, grown by ``halo`` cells and clipped to the map; the whole map when the region is
    empty (the head then reads every cell: a uniform softmax over the map)."""
    h, w = region.shape[-2:]
    inside = region.reshape(-1, h, w).max(axis=0) > 0
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    if rows.size == 0:
        return 0, h, 0, w
    return (max(0, int(rows[0]) - halo), min(h, int(rows[-1]) + 1 + halo),
            max(0, int(cols[0]) - halo), min(w, int(cols[-1]) + 1 + halo))


def _session(module: nn.Module, example: tuple[Tensor, ...], names: list[str],
             outputs: list[str], threads: int,
             dynamic_axes: dict[str, dict[int, str]] | None = None) -> Any:
    """An ONNX Runtime CPU session of ``module`` exported with the network's current weights
    (all graph optimisations, no spinning between frames)."""
    import onnxruntime as ort

    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter warns that it is legacy
        torch.onnx.export(module.eval(), example, buf, dynamo=False, opset_version=17,
                          input_names=names, output_names=outputs, do_constant_folding=True,
                          dynamic_axes=dynamic_axes)  # fmt: skip
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])


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

    def __init__(self, net: PoseNetwork, threads: int | None = None, neck: Any = None) -> None:
        """``neck``: a :class:`~.fpn_plan.CppFpn` of ``net``: where the head runs windowed, the
        compiled FPN computes the neck and the centre logits and ONNX Runtime only the region
        and the window's head."""
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.net = net
        self.threads = threads
        self.neck = neck
        self._region_inputs: set[str] = set()
        self._key: tuple[Any, ...] | None = None
        self._session: Any = None
        self._window_session: Any = None
        self._maps: tuple[np.ndarray, np.ndarray] | None = None
        self._pasted = (0, 0, 0, 0)
        self._names: list[str] = []

    def refresh(self) -> None:
        """Forget the exported graph (re-exported with the current weights on the next call)."""
        if self.neck is not None:
            self.neck.refresh()
        self._key = None
        self._session = None
        self._window_session = None

    def _threads(self) -> int:
        return int(self.threads or torch.get_num_threads())

    def windowed(self, gate: Tensor | None) -> bool:
        """Whether the head reads a region (gate or person box), i.e. runs windowed."""
        return gate is not None or (self.net.cfg.person_prior and self.net.movenet is not None)

    def _build(self, feats: tuple[Tensor, ...], windowed: bool) -> None:
        n_feats = len(feature_names(self.net))
        self._names = [*feature_names(self.net), "gate"][: len(feats)]
        example = tuple(torch.zeros_like(f) for f in feats)
        if not windowed:
            self._session = _session(_ChannelsLastHead(self.net, n_feats), example,
                                     self._names, ["heatmaps", "triplets", "joints"],
                                     self._threads())  # fmt: skip
            self._window_session = None
        else:
            neck = _NeckAndRegion(self.net, n_feats)
            with torch.no_grad():
                y, region = neck(*example)
            if self.neck is None:
                self._session = _session(neck, example, self._names, ["neck", "region"],
                                         self._threads())  # fmt: skip
            else:
                gate = example[n_feats:]
                self._session = _session(
                    _RegionFromNeck(self.net),
                    (y.permute(0, 2, 3, 1).contiguous(), torch.zeros_like(y[:, :1]), *gate),
                    ["neck", "center", *(["gate"] if gate else [])], ["region"],
                    self._threads())  # fmt: skip
                self._region_inputs = {i.name for i in self._session.get_inputs()}
            spatial = {2: "h", 3: "w"}
            self._window_session = _session(
                _HeadInWindow(self.net, (int(y.shape[-2]), int(y.shape[-1]))),
                (y, region, torch.zeros(2)), ["neck", "region", "origin"],
                ["heatmaps", "triplets", "joints"], self._threads(),
                {n: spatial for n in ("neck", "region", "heatmaps", "triplets")})
            self._maps = (np.full((y.shape[0], skeleton.NUM_JOINTS, *y.shape[-2:]),
                                  REGION_OFF_LOGIT, dtype=np.float32),
                          np.zeros((y.shape[0], 3 * skeleton.NUM_BONES, *y.shape[-2:]),
                                   dtype=np.float32))  # fmt: skip
            self._pasted = (0, 0, 0, 0)
        log.info("neck + head exported to ONNX Runtime for features %s%s",
                 [tuple(f.shape) for f in feats],
                 " (head on the read region's window)" if windowed else "")  # fmt: skip

    def __call__(self, *feats: Tensor,
                 gate: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Channels-last (B, H, W, C) float32 CPU features (the backbone's output, then its taps
        coarse to fine) [+ the (B, 1, h, w) head-gating mask, ``PoseNetwork.head_gate``] ->
        (heatmaps, triplets, joints). Windowed (a region to read), the heatmaps and triplets
        are views of maps this head reuses: valid until its next call."""
        n = len(feature_names(self.net))
        if len(feats) != n:
            raise ValueError(f"expected {n} feature maps, got {len(feats)}")
        feats = (*feats,) if gate is None else (*feats, gate)
        windowed = self.windowed(gate)
        key = (tuple(tuple(f.shape) for f in feats), windowed)
        if key != self._key:
            self._build(feats, windowed)
            self._key = key
        if self._window_session is not None and self.neck is not None:
            y, center = self.neck(*(f.contiguous() for f in feats[:n]))
            feed = {"neck": y.numpy(), "center": center.numpy()}
            if gate is not None:
                feed["gate"] = np.ascontiguousarray(gate.numpy())
            # the exporter drops inputs the region does not depend on (no person prior: the
            # gate alone decides it)
            feed = {k: v for k, v in feed.items() if k in self._region_inputs}
            return self._run_windowed(y.numpy(), self._session.run(None, feed)[0],
                                      channels_last=True)  # fmt: skip
        feed = {n: np.ascontiguousarray(f.numpy()) for n, f in zip(self._names, feats, strict=True)}
        if self._window_session is None:
            heatmaps, triplets, joints = self._session.run(None, feed)
            return torch.from_numpy(heatmaps), torch.from_numpy(triplets), torch.from_numpy(joints)
        return self._run_windowed(*self._session.run(None, feed))

    def _run_windowed(self, y: np.ndarray, region: np.ndarray, channels_last: bool = False
                      ) -> tuple[Tensor, Tensor, Tensor]:
        """The head on the region's window (see the module docstring), pasted into maps that
        are reused from call to call (only the last window is reset). ``y``: the neck's output,
        (B, C, h, w), or (B, h, w, C) with ``channels_last`` (the compiled FPN's)."""
        halo = 1 if self.net.head_pre is not None else 0  # head_pre's 3x3 depthwise
        y0, y1, x0, x1 = region_window(region, halo)
        y_win = (y[:, y0:y1, x0:x1, :].transpose(0, 3, 1, 2) if channels_last
                 else y[:, :, y0:y1, x0:x1])  # fmt: skip
        heat_w, trip_w, joints = self._window_session.run(None, {
            "neck": np.ascontiguousarray(y_win),
            "region": np.ascontiguousarray(region[:, :, y0:y1, x0:x1]),
            "origin": np.array([x0, y0], dtype=np.float32)})  # fmt: skip
        heatmaps, triplets = self._maps
        p0, p1, q0, q1 = self._pasted
        heatmaps[:, :, p0:p1, q0:q1] = REGION_OFF_LOGIT
        triplets[:, :, p0:p1, q0:q1] = 0.0
        heatmaps[:, :, y0:y1, x0:x1] = heat_w
        triplets[:, :, y0:y1, x0:x1] = trip_w
        self._pasted = (y0, y1, x0, x1)
        return torch.from_numpy(heatmaps), torch.from_numpy(triplets), torch.from_numpy(joints)
