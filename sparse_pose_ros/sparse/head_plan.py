"""The dense neck + factorized HEMlets head in the compiled CPU kernel (``HeadPlan`` in
``csrc/head.cpp``), fed the sparse backbone's channels-last buffers in place.

Why: after the backbone went sparse the neck + head were half of the network's time, and
running them in ONNX Runtime meant a second thread pool next to the kernel's (it either sleeps
and gains nothing from a second thread, or spins and slows the backbone down). Here they are
more steps for the kernel's own workers: 1x1 convs on the GEMM micro-kernel, dense depthwise
3x3, nearest upsampling, and a parallel online-softmax soft-argmax.

Only the ``factorized`` depth mode is compiled (the volumetric head goes to ONNX Runtime or
PyTorch); :func:`supported` says whether a network fits. Outputs ``heatmaps`` and ``triplets``
are views of the plan's buffers, valid until the next call (copy what you keep, as the
sparse-cpu backend does); ``joints`` is a fresh tensor.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from ..model.blocks import ConvBN
from ..model.heads import HemletsHead, Neck
from ..model.network import PoseNetwork
from .folding import FoldedConv, fold_conv_bn

#: positions per soft-argmax chunk (HeadPlan::kSoftmax)
SOFTMAX_CHUNK = 512


def supported(net: PoseNetwork) -> str | None:
    """None if the compiled head can run ``net``'s neck + head, else the reason it cannot."""
    neck, head = net.neck, net.head
    if not isinstance(neck, Neck) or not isinstance(head, HemletsHead):
        return (f"neck/head are {type(neck).__name__} + {type(head).__name__}, not the light "
                "Neck + HemletsHead (MoveNet's FPN: window_head_plan)")
    if net.head_pre is not None:
        return "a separable pre-conv in front of the head (head_hidden) is not compiled"
    if head.depth_mode != "factorized":
        return f"depth mode {head.depth_mode!r} (only 'factorized' is compiled)"
    if len(neck.skips) != 2:
        return f"{len(neck.skips)} neck skips (the plan has stride 16 -> 8 -> 4)"
    units: list[nn.Module] = [neck.reduce, *neck.skips]
    for refine in neck.refine:
        units.extend(refine)
    for u in units:
        if not (isinstance(u, ConvBN) and len(u) == 3 and isinstance(u[1], nn.BatchNorm2d)):
            return "a neck layer is not Conv + BatchNorm + ReLU6"
    for conv in (head.heatmap, head.triplet, head.depth):
        if conv.kernel_size != (1, 1) or conv.bias is None or conv.groups != 1:
            return "head convs must be 1x1 with bias"
    return None


def _pointwise(conv: nn.Conv2d) -> tuple[Tensor, Tensor]:
    """1x1 conv with bias -> ((C_in, C_out) weight, (C_out,) bias)."""
    w = conv.weight.detach().reshape(conv.out_channels, conv.in_channels).t().contiguous()
    assert conv.bias is not None
    return w, conv.bias.detach().contiguous()


def fold_head(net: PoseNetwork) -> list[Tensor]:
    """The plan's 9 (weight, bias) pairs, in its order: reduce, lateral 8, lateral 4,
    refine 8 (dw, pw), refine 4 (dw, pw), [heatmaps | triplets], depth."""
    why = supported(net)
    if why is not None:
        raise ValueError(f"the compiled head cannot run this network: {why}")
    neck, head = net.neck, net.head
    with torch.no_grad():
        folded: list[FoldedConv] = [fold_conv_bn(neck.reduce), fold_conv_bn(neck.skips[0]),
                                    fold_conv_bn(neck.skips[1])]  # fmt: skip
        for refine in neck.refine:
            folded.extend(fold_conv_bn(u) for u in refine)
        (red, l8, l4, d8, p8, d4, p4) = folded
        wh, bh = _pointwise(head.heatmap)
        wt, bt = _pointwise(head.triplet)
        wd, bd = _pointwise(head.depth)
        pairs = [(f.weight, f.bias) for f in (red, l8, l4, d8, p8, d4, p4)]
        pairs.append((torch.cat([wh, wt], dim=1).contiguous(), torch.cat([bh, bt]).contiguous()))
        pairs.append((wd, bd))
    return [t.float().contiguous() for pair in pairs for t in pair]


def _flat(t: Tensor) -> Tensor:
    """(B, C, H, W) view of a channels-last buffer -> its (B*H*W, C) rows, without a copy."""
    rows = t.permute(0, 2, 3, 1)
    if not rows.is_contiguous():
        raise ValueError("head inputs must be channels-last buffers (the executor's taps)")
    return rows.reshape(-1, t.shape[1])


class CppHead:
    """Runs ``net.neck`` + ``net.head`` in the compiled kernel on the executor's buffers."""

    def __init__(self, net: PoseNetwork, kernel: ModuleType, threads: int | None = None) -> None:
        """``threads``: worker-pool size; None follows ``torch.get_num_threads()`` per call."""
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.net = net
        self.kernel = kernel
        self.threads = threads
        self._weights = fold_head(net)
        self._key: tuple[Any, ...] | None = None
        self._plan: Any = None
        self._out: tuple[Tensor, Tensor, Tensor] | None = None

    def _n_threads(self) -> int:
        return self.threads if self.threads is not None else torch.get_num_threads()

    def refresh(self) -> None:
        """Re-fold after the network's weights changed."""
        self._weights = fold_head(self.net)
        self._key = None

    def _record(self, f16: Tensor, f8: Tensor, f4: Tensor, gate: Tensor | None) -> None:
        b, _, h4, w4 = f4.shape
        ch = self._weights[0].shape[1]
        j = self._weights[17].numel()
        n_maps = self._weights[15].numel()
        n16 = b * f16.shape[2] * f16.shape[3]
        n8 = b * f8.shape[2] * f8.shape[3]
        n4 = b * h4 * w4
        n_pc = -(-(h4 * w4) // SOFTMAX_CHUNK)
        z = torch.zeros(n4, ch + n_maps)
        bufs = [torch.zeros(n16, ch), torch.zeros(n8, ch), torch.zeros(n8, ch),
                torch.zeros(n4, ch), torch.zeros(n4, ch), z, torch.zeros(n4, j),
                torch.zeros(b * n_pc * j * 5), torch.zeros(b, j, 3)]  # fmt: skip
        dims = [b, f16.shape[2], f16.shape[3], f8.shape[2], f8.shape[3], h4, w4]
        if gate is not None:  # head gating: the plan derives the region from this buffer
            if gate.dim() != 4 or gate.shape[:2] != (b, 1) or not gate.is_contiguous():
                raise ValueError(f"gate must be a contiguous (B, 1, h, w) mask, got {gate.shape}")
            dims += [gate.shape[2], gate.shape[3]]
            bufs += [gate.reshape(-1), torch.zeros(n4)]
        self._plan = self.kernel.Head(_flat(f16), _flat(f8), _flat(f4), dims, self._weights,
                                      bufs, self._n_threads())  # fmt: skip
        zz = z.view(b, h4, w4, ch + n_maps)
        heatmaps = zz[..., ch : ch + j].permute(0, 3, 1, 2)
        triplets = zz[..., ch + j :].permute(0, 3, 1, 2)
        self._out = (heatmaps, triplets, bufs[8])

    @torch.no_grad()
    def __call__(self, f16: Tensor, f8: Tensor, f4: Tensor,
                 gate: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(B, C, H, W) channels-last feature views -> (heatmaps, triplets, joints).

        ``gate``: the last execution mask when head gating is on (``PoseNetwork.head_gate``),
        a buffer the executor reuses every frame (the plan keeps its address)."""
        tensors = (f16, f8, f4) if gate is None else (f16, f8, f4, gate)
        key = (self._n_threads(), *((t.data_ptr(), tuple(t.shape)) for t in tensors))
        if key != self._key:
            self._record(f16, f8, f4, gate)
            self._key = key
        self._plan.run()
        assert self._out is not None
        heatmaps, triplets, joints = self._out
        return heatmaps, triplets, joints.clone()
