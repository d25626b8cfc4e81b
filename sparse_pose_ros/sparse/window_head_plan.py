"""MoveNet's FPN, the person box, the HEMlets head on the box's window and the joint readout
(+ the depth lifter) in the compiled CPU kernel: ``FpnPlan`` + ``WindowHeadPlan``
(``csrc/fpn.cpp``, ``csrc/window_head.cpp``) as one dispatch to the kernel's workers, fed the
sparse backbone's channels-last buffers in place.

Why: with the backbone and the FPN compiled, what stayed in ONNX Runtime (``ort_head.OrtHead``'s
region graph and windowed head: the person box from the centre logits, ``head_pre`` + the
HEMlets head on the box's window, the peak-window soft-argmax, the lifter) was ~1.7-2 ms of a
~9 ms sparse network on whole frames (MoveNet Thunder, 256 px, two threads): ~10 M MACs whose
cost there was graph entry, per-operator overhead, the window's copies and a second thread pool
beside the kernel's. Same outputs as ``PoseNetwork.head_from_neck`` (tests): heatmap logits
``REGION_OFF_LOGIT`` and triplets 0 outside the region, joints after ``refine_joints``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from .. import skeleton
from ..model.fpn import SeparableConv
from ..model.heads import REGION_OFF_LOGIT, HemletsHead
from ..model.lifter import PoseLifter
from ..model.movenet_head import (
    PERSON_MARGIN,
    PERSON_MARGIN_CELLS,
    PERSON_MIN_SCORE,
    MoveNetBranch,
)
from ..model.network import PoseNetwork
from ..runtime.geometry import confidence_radius
from .fpn_plan import CppFpn, _depthwise, _pointwise
from .fpn_plan import supported as fpn_supported


def supported(net: PoseNetwork) -> str | None:
    """None if the compiled FPN + window head can run ``net``'s neck and head, else why not."""
    why = fpn_supported(net)
    if why is not None:
        return why
    head = net.head
    if not isinstance(head, HemletsHead) or head.depth_mode != "factorized":
        return "the head is not the factorized HEMlets head"
    for conv in (head.heatmap, head.triplet, head.depth):
        if conv.kernel_size != (1, 1) or conv.bias is None or conv.groups != 1:
            return "head convs must be 1x1 with bias"
    pre = net.head_pre
    if pre is not None and not (isinstance(pre, SeparableConv) and pre.relu):
        return "head_pre is not a separable conv with ReLU"
    if net.cfg.person_prior and not isinstance(net.movenet.branches["regress"],  # type: ignore[union-attr]
                                               MoveNetBranch):  # fmt: skip
        return "the person box needs MoveNet's regression branch"
    lifter = net.lifter
    if lifter is not None:
        layers = [m for m in lifter.mlp if isinstance(m, nn.Linear)]
        acts = [m for m in lifter.mlp if not isinstance(m, (nn.Linear, nn.Dropout))]
        if not isinstance(lifter, PoseLifter) or len(layers) != 3 or len(acts) != 2 or not all(
                isinstance(a, nn.ReLU) for a in acts):  # fmt: skip
            return "the lifter is not Linear-ReLU-Linear-ReLU-Linear"
    return None


def _empty() -> Tensor:
    return torch.zeros(0)


def window_head_weights(net: PoseNetwork) -> list[Tensor]:
    """The plan's 19 weights in its order (empty where the network has no such part): the
    regression branch (person box), ``head_pre``, [heatmap | triplet] and depth 1x1s, the
    torso mid-point matrix, the lifter's three layers."""
    why = supported(net)
    if why is not None:
        raise ValueError(f"the compiled window head cannot run this network: {why}")
    with torch.no_grad():
        out: list[Tensor] = [_empty()] * 5
        if net.cfg.person_prior:
            reg: MoveNetBranch = net.movenet.branches["regress"]  # type: ignore[union-attr,assignment]
            out = [_depthwise(reg.sep), *_pointwise(reg.sep.pointwise), *_pointwise(reg.out)]
        pre = net.head_pre
        out += ([_depthwise(pre), *_pointwise(pre.pointwise)] if pre is not None
                else [_empty()] * 3)  # fmt: skip
        wh, bh = _pointwise(net.head.heatmap)
        wt, bt = _pointwise(net.head.triplet)
        out += [torch.cat([wh, wt], dim=1), torch.cat([bh, bt]), *_pointwise(net.head.depth)]
        out.append(net.midpoints if net.midpoints is not None else _empty())
        if net.lifter is not None:
            for layer in (m for m in net.lifter.mlp if isinstance(m, nn.Linear)):
                out += [layer.weight.detach().t(), layer.bias.detach()]
        else:
            out += [_empty()] * 6
    return [t.float().contiguous() for t in out]


class CppNeckHead(CppFpn):
    """MoveNet's FPN + the window head in the compiled kernel.

    ``__call__(top, *taps, gate=None)``: channels-last (B, H, W, C) contiguous features (the
    backbone's stride-32 output, then its taps coarse to fine) [+ the (B, 1, h, w) head-gating
    mask, ``PoseNetwork.head_gate``] -> (heatmaps (B, J, h, w), triplets (B, 3P, h, w), joints
    (B, J, 3) after ``refine_joints``). Heatmaps and triplets are views of maps this object
    reuses: valid until its next call; joints are a fresh tensor. :meth:`confidence`: each
    joint's ``joint_confidence``, computed with the readout."""

    def __init__(self, net: PoseNetwork, kernel: ModuleType, threads: int | None = None,
                 precision: str = "f32") -> None:
        """``precision``: the FPN's 1x1s ("bf16": on AMX tiles); the head after it is f32."""
        super().__init__(net, kernel, threads, precision)
        window_head_weights(net)  # refuses a network the plan cannot run, here and not later
        self._maps: tuple[Tensor, Tensor, Tensor, Tensor] | None = None

    def _record(self, top: Tensor, taps: tuple[Tensor, ...], gate: Tensor | None = None) -> None:
        super()._record(top, taps)
        assert self._out is not None
        y = self._out[0]
        b, h, w, _ = y.shape
        j, p = skeleton.NUM_JOINTS, skeleton.NUM_BONES
        heatmaps = torch.full((b, j, h, w), REGION_OFF_LOGIT)
        triplets = torch.zeros(b, 3 * p, h, w)
        joints = torch.zeros(b, j, 3)
        confidence = torch.zeros(b, j)
        hg, wg = (0, 0) if gate is None else (int(gate.shape[-2]), int(gate.shape[-1]))
        self._plan.attach_head(
            window_head_weights(self.net), [heatmaps, triplets, joints, confidence],
            [b, h, w, hg, wg, self.net.head.readout_window, skeleton.ROOT,
             confidence_radius(h, w)],
            [PERSON_MARGIN, PERSON_MARGIN_CELLS, PERSON_MIN_SCORE])  # fmt: skip
        self._maps = (heatmaps, triplets, joints, confidence)

    @torch.no_grad()
    def __call__(self, top: Tensor, *taps: Tensor,  # type: ignore[override]
                 gate: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        if gate is not None:
            if gate.dim() != 4 or gate.shape[1] != 1 or gate.shape[0] != top.shape[0]:
                raise ValueError(f"gate must be a (B, 1, h, w) mask, got {tuple(gate.shape)}")
            gate = gate.float().contiguous()
        extra: Any = (self.net.cfg.person_prior,
                      None if gate is None else tuple(gate.shape))  # fmt: skip
        self._run((top, *taps), extra, gate)
        assert self._maps is not None
        heatmaps, triplets, joints, _ = self._maps
        return heatmaps, triplets, joints.clone()

    def confidence(self) -> Tensor:
        """(B, J): the last call's ``backends.base.joint_confidence`` of each heatmap, computed
        beside the readout from the window the head wrote (the rest of a map is one constant);
        a fresh tensor."""
        if self._maps is None:
            raise RuntimeError("the window head has not run yet")
        return self._maps[3].clone()

    def window(self) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1): the map cells the head read in the last call (the region's
        bounding box over the batch; the whole map where the region is empty)."""
        y0, y1, x0, x1 = self._plan.head_window()
        return int(y0), int(y1), int(x0), int(x1)
