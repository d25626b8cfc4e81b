"""MoveNet's FPN neck and its person-centre logits in the compiled CPU kernel (``FpnPlan`` in
``csrc/fpn.cpp``), fed the sparse backbone's channels-last buffers in place.

Why: with the backbone's GEMMs on AMX the neck + person prior in ONNX Runtime were ~1.4-1.9 ms
of a ~9 ms sparse network on whole frames (MoveNet Thunder, 256 px): ~28 M MACs of small convs
whose cost there is per-operator overhead and layout changes. Compiled, they are a few more
steps for the kernel's own workers. What follows: the person box from
these logits and the head on the box's window, compiled too (``window_head_plan``, the same
dispatch) or in ONNX Runtime (``ort_head.OrtHead``, ``head="ort"``).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from ..model.fpn import MoveNetFPN, SeparableConv
from ..model.movenet_head import MoveNetBranch
from ..model.network import PoseNetwork
from .cpu_kernel import PRECISIONS


def supported(net: PoseNetwork) -> str | None:
    """None if the compiled FPN can run ``net``'s neck and centre branch, else why not."""
    neck = net.neck
    if not isinstance(neck, MoveNetFPN):
        return f"the neck is {type(neck).__name__}, not MoveNet's FPN"
    if not 1 <= len(neck.laterals) <= 3:
        return f"{len(neck.laterals)} FPN levels (the plan has 1-3)"
    if net.movenet is None or not isinstance(net.movenet.branches["center"], MoveNetBranch):
        return "no MoveNet centre branch"
    if not all(r.relu for r in neck.refine) or not net.movenet.branches["center"].sep.relu:
        return "a separable conv without ReLU"
    return None


def _pointwise(conv: nn.Conv2d) -> tuple[Tensor, Tensor]:
    """1x1 conv with bias -> ((C_in, C_out) weight, (C_out,) bias)."""
    w = conv.weight.detach().reshape(conv.out_channels, conv.in_channels).t()
    assert conv.bias is not None
    return w, conv.bias.detach()


def _depthwise(sep: SeparableConv) -> Tensor:
    """(C, 1, 3, 3) depthwise weight -> (9, C): tap (dy, dx) row-major, channels contiguous."""
    w = sep.depthwise.weight.detach()
    return w.reshape(w.shape[0], 9).t()


def fpn_weights(net: PoseNetwork) -> list[Tensor]:
    """The plan's weights in its order: top, per level (lateral, depthwise, pointwise), the
    centre branch (depthwise, pointwise, out)."""
    why = supported(net)
    if why is not None:
        raise ValueError(f"the compiled FPN cannot run this network: {why}")
    neck: MoveNetFPN = net.neck  # type: ignore[assignment]
    with torch.no_grad():
        out: list[Tensor] = [*_pointwise(neck.top)]
        for lateral, refine in zip(neck.laterals, neck.refine, strict=True):
            out += [*_pointwise(lateral), _depthwise(refine), *_pointwise(refine.pointwise)]
        centre: MoveNetBranch = net.movenet.branches["center"]  # type: ignore[union-attr,assignment]
        out += [_depthwise(centre.sep), *_pointwise(centre.sep.pointwise)]
        w_out, b_out = _pointwise(centre.out)
        out += [w_out.reshape(-1), b_out.reshape(-1)]
    return [t.float().contiguous() for t in out]


class CppFpn:
    """Runs MoveNet's FPN + centre branch in the compiled kernel.

    ``__call__(top, *taps)``: channels-last (B, H, W, C) contiguous features (the backbone's
    stride-32 output, then its taps coarse to fine) -> (the neck's output (B, h, w, C)
    channels-last, the centre logits (B, 1, h, w)): views of the plan's buffers, valid until
    the next call."""

    def __init__(self, net: PoseNetwork, kernel: ModuleType, threads: int | None = None,
                 precision: str = "f32") -> None:
        """``precision``: "f32", or "bf16": the 1x1 convs on AMX tiles (``SparseBackbone``'s
        precision; the depthwise, upsampling and the centre's last 1x1 stay f32)."""
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        self.net = net
        self.kernel = kernel
        self.threads = threads
        self._weights = fpn_weights(net)
        self._key: tuple[Any, ...] | None = None
        self._plan: Any = None
        self._out: tuple[Tensor, Tensor] | None = None

    def refresh(self) -> None:
        """Re-read the weights after they changed."""
        self._weights = fpn_weights(self.net)
        self._key = None

    def _n_threads(self) -> int:
        return self.threads if self.threads is not None else torch.get_num_threads()

    def _record(self, top: Tensor, taps: tuple[Tensor, ...], gate: Tensor | None = None) -> None:
        """A new plan for these feature shapes (``gate``: for a subclass's head)."""
        b, h0, w0, _ = top.shape
        widths = [self._weights[1].numel()]
        bufs = [torch.zeros(b * h0 * w0, widths[0])]
        h, w = h0, w0
        for level in range(len(taps)):
            h, w = 2 * h, 2 * w
            if taps[level].shape[1:3] != (h, w):
                raise ValueError(f"tap {level} is {tuple(taps[level].shape)}, expected "
                                 f"(B, {h}, {w}, C)")  # fmt: skip
            c_out = self._weights[2 + 5 * level + 4].numel()
            bufs += [torch.zeros(b * h * w, widths[-1]), torch.zeros(b * h * w, c_out)]
            widths.append(c_out)
        bufs.append(torch.zeros(b * h * w))
        self._plan = self.kernel.Fpn(self._weights, bufs, [b, h0, w0], self._n_threads())
        if self.precision == "bf16":
            self._plan.use_bf16()
        self._out = (bufs[-2].view(b, h, w, widths[-1]), bufs[-1].view(b, 1, h, w))

    @torch.no_grad()
    def __call__(self, top: Tensor, *taps: Tensor) -> tuple[Tensor, Tensor]:
        self._run((top, *taps))
        assert self._out is not None
        return self._out

    def _run(self, feats: tuple[Tensor, ...], extra: Any = None,
             gate: Tensor | None = None) -> None:
        """Run the plan on ``feats`` (recorded again where their shapes, the thread count or
        ``extra`` changed) [+ the head's gate]."""
        if any(f.dim() != 4 or not f.is_contiguous() or f.dtype != torch.float32 for f in feats):
            raise ValueError("CppFpn takes contiguous float32 channels-last (B, H, W, C) maps")
        key = (self._n_threads(), extra, *(tuple(f.shape) for f in feats))
        if key != self._key:
            self._record(feats[0], feats[1:], gate)
            self._key = key
        self._plan.run([f.reshape(-1) for f in feats], None if gate is None else gate.reshape(-1))
