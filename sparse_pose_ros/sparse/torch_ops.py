"""Block execution on flat channels-last feature buffers with plain PyTorch ops.

Feature buffers are ``(B·H·W + 1, C)``: row ``p = (b·H + y)·W + x`` holds the C channels of one
position (NHWC), and the extra last row is kept at zero so padded index entries gather zeros
(see :mod:`.indices`). Everything here is device-agnostic; it is the portable reference of the
gather-scatter path and the fallback when the compiled CPU kernel is unavailable.

Semantics equal :meth:`InvertedResidual.forward_masked` (the masked dense reference):

* expand on the dilated (receptive) set, depthwise 3×3 on active outputs reading neighbours
  (zero outside the dilated set and outside the image), project on active outputs;
* residual blocks: ``X[active] += F(X)[active]`` (scatter-add), then ``r``;
* non-residual gated blocks (stride 2 / channel change): output ``F(X)∘G``, zero elsewhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .folding import FoldedBlock, FoldedConv
from .indices import BlockIndex


def _relu6_(t: Tensor) -> Tensor:
    return t.clamp_(0.0, 6.0)


def _pointwise(x: Tensor, conv: FoldedConv) -> Tensor:
    y = torch.addmm(conv.bias, x, conv.weight)
    return _relu6_(y) if conv.relu6 else y


def depthwise_dense_nhwc(e: Tensor, conv: FoldedConv, batch: int, hw: tuple[int, int],
                         pads: tuple[int, int, int, int] = (1, 1, 1, 1)) -> Tensor:
    """Dense depthwise 3×3 on a flat NHWC tensor; returns flat NHWC (B·Ho·Wo, C).

    ``pads`` = (top, bottom, left, right) zero padding (``model.blocks.conv_pads``): (1, 1, 1, 1)
    is PyTorch's padding=1; TF 'SAME' pads (0, 1, 0, 1) at stride 2 on an even size."""
    h, w = hw
    c = e.shape[1]
    img = e.view(batch, h, w, c).permute(0, 3, 1, 2)  # channels-last NCHW view, no copy
    top, bottom, left, right = pads
    if top == bottom and left == right:
        y = F.conv2d(img, conv.conv_weight, conv.bias, conv.stride, (top, left), 1, conv.groups)
    else:
        y = F.conv2d(F.pad(img, (left, right, top, bottom)), conv.conv_weight, conv.bias,
                     conv.stride, 0, 1, conv.groups)
    if conv.relu6:
        y = _relu6_(y)
    return y.permute(0, 2, 3, 1).reshape(-1, c)


def dense_block(
    fb: FoldedBlock,
    x: Tensor,
    batch: int,
    hw: tuple[int, int],
    hard: Tensor | None,
    out: Tensor,
    pads: tuple[int, int, int, int] = (1, 1, 1, 1),
) -> None:
    """Run the block densely on ``x`` (B·H·W, C_in) and write its output into ``out``.

    ``hard`` (B·Ho·Wo,) float mask or None: for a gated block the dense F is masked afterwards,
    which equals forward_masked exactly (every tap of an active output lies in the dilated set,
    so zeroing the expand output outside it cannot change an active output).
    """
    h = _pointwise(x, fb.expand) if fb.expand is not None else x
    d = depthwise_dense_nhwc(h, fb.depthwise, batch, hw, pads)
    p = _pointwise(d, fb.project)
    if hard is not None:
        p.mul_(hard.unsqueeze(1))
        if fb.fill is not None:  # skipped cells take the fill (``model.blocks``' skip_fill)
            p.addcmul_((1.0 - hard).unsqueeze(1), fb.fill)
    if fb.use_residual:
        torch.add(x, p, out=out)
        if fb.residual_relu:
            out.clamp_(min=0.0)
    else:
        out.copy_(p)


def sparse_block(
    fb: FoldedBlock,
    x_ext: Tensor,
    out_ext: Tensor,
    index: BlockIndex,
    e_buf: Tensor,
    counts: tuple[int, int] | None,
) -> None:
    """Gather-scatter execution of a gated block.

    Args:
        fb: folded block.
        x_ext: (n_in + 1, C_in) input buffer, last row zero.
        out_ext: (n_out + 1, C_out) output buffer, last row zero. For residual blocks it must be
            ``x_ext`` itself (the residual is added in place; inactive rows stay X).
        index: filled :class:`BlockIndex`.
        e_buf: (n_in + 1, C_e) scratch for the expanded rows; row 0 is the zero row.
        counts: ``(n_active, n_dilated)`` read on the host, or None to compute over the full
            fixed capacity (no host read at all; padded entries read zeros and hit the dump row).
    """
    n_in, n_out = index.n_in, index.n_out
    if counts is None:
        n_act, n_dil = n_out, n_in
    else:
        n_act, n_dil = counts
    if fb.use_residual and out_ext.data_ptr() != x_ext.data_ptr():
        raise ValueError("residual sparse blocks update the input buffer in place: pass out=x")
    if not fb.use_residual:
        out_ext.zero_()
        if fb.fill is not None:  # every cell the fill, the active ones overwritten below
            out_ext[:n_out].copy_(fb.fill.expand(n_out, -1))
    if n_act == 0:
        if fb.use_residual and fb.fill is not None:
            x_ext[:n_out].add_(fb.fill)
        if fb.use_residual and fb.residual_relu:
            x_ext.clamp_(min=0.0)
        return
    rows = index.dil_rows[:n_dil]
    g = x_ext.index_select(0, rows)
    e = e_buf[1 : 1 + n_dil]
    if fb.expand is not None:
        torch.addmm(fb.expand.bias, g, fb.expand.weight, out=e)
        _relu6_(e)
    else:
        e.copy_(g)
    e_buf[0].zero_()
    nbr = index.nbr[:n_act]
    dw = fb.depthwise
    # Nine gathered multiply-adds: much cheaper than one (N, 9, C) gather + einsum (which
    # PyTorch lowers to a badly shaped bmm on CPU).
    d = e_buf.index_select(0, nbr[:, 0]).mul_(dw.weight[0])
    for k in range(1, 9):
        d.addcmul_(e_buf.index_select(0, nbr[:, k]), dw.weight[k])
    _relu6_(d.add_(dw.bias))
    p = _pointwise(d, fb.project)
    act_rows = index.act_rows[:n_act]
    if fb.use_residual:
        if fb.fill is not None:  # every cell + the fill (X is read above), taken back where active
            x_ext[:n_out].add_(fb.fill)
            p.sub_(fb.fill)
        x_ext.index_add_(0, act_rows, p)
        if fb.residual_relu:
            x_ext.clamp_(min=0.0)
    else:
        out_ext.index_copy_(0, act_rows, p) if counts is not None else out_ext.index_put_(
            (act_rows,), p
        )
    out_ext[n_out].zero_()  # padded entries may have written the dump row
