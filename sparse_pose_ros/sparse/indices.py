"""Index lists for gather-scatter execution, built without host synchronisation.

dynconv calls ``nonzero`` in every block, which on a GPU is a device->host sync per block. Here
every index list lives in a **fixed-capacity buffer** sized for the densest possible mask
(all positions active) and is filled with sync-free tensor ops (``cumsum`` + ``scatter``):

* ``act_rows[k]``  flat output position of the k-th active output (``k < counts[0]``);
  entries past the count hold ``pad_out`` (the zero/dump row of the output buffer);
* ``dil_rows[k]``  flat input position of the k-th position of the dilated (receptive) mask;
  entries past the count hold ``pad_in`` (the all-zero row appended to every feature buffer);
* ``nbr[k, t]``    row of the expanded buffer ``E`` that tap ``t`` (3×3, row-major) of the
  k-th active output reads: ``1 + rank`` in the dilated list, or 0 = the zero row of ``E``
  for taps outside the image (zero padding) or outside the dilated set;
* ``counts``       a 2-element int64 *tensor* ``[n_active, n_dilated]`` (never read here).

A consumer can either compute over the full capacity (padded rows read the zero row and write
the dump row, so results are exact and nothing is ever read back to the host), or read the
counts once and slice. On CPU reading a tensor is a plain memory load, so the CPU executor
slices; a CUDA consumer keeps the counts on the device (kernels early-exit past the count) and
reads all per-block counts back at most once per frame, together, for diagnostics.

Buffers are allocated once per input shape and reused on every frame (no per-frame growth);
the static tap table (which input position each output tap reads) depends only on the shape
and stride and is built once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


def tap_table(batch: int, in_hw: tuple[int, int], stride: int, device: torch.device,
              pad_before: tuple[int, int] = (1, 1)) -> Tensor:
    """(B·Ho·Wo + 1, 9) flat input position read by each 3×3 tap, or the pad index.

    ``pad_before`` = (top, left) zero padding: output (oy, ox) reads the window whose top-left
    input is (oy·s − top, ox·s − left); (1, 1) is PyTorch's padding=1, (0, 0) TF 'SAME' at
    stride 2 on an even size. The pad index is ``B·H·W`` (one past the last input position).
    The extra last row (all pad) serves padded output entries.
    """
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride}")
    h, w = in_hw
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    n_in = batch * h * w
    b = torch.arange(batch, device=device).view(batch, 1, 1, 1)
    top, left = pad_before
    oy = torch.arange(ho, device=device).view(1, ho, 1, 1) * stride + (1 - top)
    ox = torch.arange(wo, device=device).view(1, 1, wo, 1) * stride + (1 - left)
    d = torch.arange(-1, 2, device=device)
    dy = d.repeat_interleave(3).view(1, 1, 1, 9)
    dx = d.repeat(3).view(1, 1, 1, 9)
    iy, ix = oy + dy, ox + dx
    valid = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    flat = (b * h + iy.clamp(0, h - 1)) * w + ix.clamp(0, w - 1)
    table = torch.where(valid, flat, torch.full_like(flat, n_in)).reshape(-1, 9)
    pad_row = torch.full((1, 9), n_in, dtype=table.dtype, device=device)
    return torch.cat([table, pad_row]).contiguous()


@dataclass
class BlockIndex:
    """Fixed-capacity index buffers of one (batch, input size, stride) shape. See module doc."""

    batch: int
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    stride: int
    taps: Tensor
    act_rows: Tensor
    dil_rows: Tensor
    nbr: Tensor
    counts: Tensor
    _dil_rank: Tensor = field(repr=False)
    _act_slot: Tensor = field(repr=False)
    _dil_slot: Tensor = field(repr=False)
    _act_csum: Tensor = field(repr=False)
    _dil_csum: Tensor = field(repr=False)
    _arange_out: Tensor = field(repr=False)
    _arange_in: Tensor = field(repr=False)
    _act_dump: Tensor = field(repr=False)
    _dil_dump: Tensor = field(repr=False)
    _nbr_src: Tensor = field(repr=False)

    @property
    def n_out(self) -> int:
        return self.batch * self.out_hw[0] * self.out_hw[1]

    @property
    def n_in(self) -> int:
        return self.batch * self.in_hw[0] * self.in_hw[1]

    def buffers(self) -> list[Tensor]:
        """Every tensor this index owns (for buffer-identity tests)."""
        return [
            self.taps, self.act_rows, self.dil_rows, self.nbr, self.counts, self._dil_rank,
            self._act_slot, self._dil_slot, self._act_csum, self._dil_csum, self._act_dump,
            self._dil_dump, self._nbr_src,
        ]  # fmt: skip


def allocate_index(
    batch: int, in_hw: tuple[int, int], stride: int, device: torch.device | str = "cpu",
    pad_before: tuple[int, int] = (1, 1),
) -> BlockIndex:
    """Allocate the buffers for one shape (done once, then reused every frame)."""
    device = torch.device(device)
    h, w = in_hw
    out_hw = ((h - 1) // stride + 1, (w - 1) // stride + 1)
    n_in, n_out = batch * h * w, batch * out_hw[0] * out_hw[1]
    i64 = dict(dtype=torch.long, device=device)
    return BlockIndex(
        batch=batch,
        in_hw=(h, w),
        out_hw=out_hw,
        stride=stride,
        taps=tap_table(batch, in_hw, stride, device, pad_before),
        act_rows=torch.empty(n_out + 1, **i64),  # +1: dump slot for inactive scatter targets
        dil_rows=torch.empty(n_in + 1, **i64),
        nbr=torch.empty(n_out, 9, **i64),
        counts=torch.zeros(2, **i64),
        _dil_rank=torch.zeros(n_in + 1, **i64),
        _act_slot=torch.empty(n_out, **i64),
        _dil_slot=torch.empty(n_in, **i64),
        _act_csum=torch.empty(n_out, **i64),
        _dil_csum=torch.empty(n_in, **i64),
        _arange_out=torch.arange(n_out, **i64),
        _arange_in=torch.arange(n_in, **i64),
        _act_dump=torch.full((n_out,), n_out, **i64),
        _dil_dump=torch.full((n_in,), n_in, **i64),
        _nbr_src=torch.empty(n_out * 9, **i64),
    )


def build_index(index: BlockIndex, hard: Tensor, dilated: Tensor) -> BlockIndex:
    """Fill ``index`` from binary masks (B,1,Ho,Wo) and (B,1,H,W). No host sync, no allocation
    of index-sized buffers (only tiny temporaries for the boolean views)."""
    b = index.batch
    if hard.shape != (b, 1, *index.out_hw) or dilated.shape != (b, 1, *index.in_hw):
        raise ValueError(
            f"mask shapes {tuple(hard.shape)}, {tuple(dilated.shape)} do not match index "
            f"(B={b}, out {index.out_hw}, in {index.in_hw})"
        )
    n_in, n_out = index.n_in, index.n_out
    act = hard.reshape(-1) > 0
    dil = dilated.reshape(-1) > 0
    torch.cumsum(act, 0, out=index._act_csum)
    torch.cumsum(dil, 0, out=index._dil_csum)
    if n_out:
        index.counts[0].copy_(index._act_csum[-1])
    if n_in:
        index.counts[1].copy_(index._dil_csum[-1])
    # Slots: k-th active -> k; inactive -> dump slot (n_out). Rows past the count keep the pad.
    torch.where(act, index._act_csum - 1, index._act_dump, out=index._act_slot)
    torch.where(dil, index._dil_csum - 1, index._dil_dump, out=index._dil_slot)
    index.act_rows.fill_(n_out).scatter_(0, index._act_slot, index._arange_out)
    index.act_rows[n_out] = n_out
    index.dil_rows.fill_(n_in).scatter_(0, index._dil_slot, index._arange_in)
    index.dil_rows[n_in] = n_in
    # Rank (1-based) of every input position in the dilated list; 0 = not dilated / pad.
    rank = index._dil_rank
    torch.where(dil, index._dil_csum, torch.zeros((), dtype=torch.long, device=rank.device),
                out=rank[:n_in])  # fmt: skip
    rank[n_in] = 0
    # Neighbour table of the (possibly padded) active list.
    torch.index_select(index.taps, 0, index.act_rows[:n_out], out=index.nbr)
    torch.index_select(rank, 0, index.nbr.view(-1), out=index._nbr_src)
    index.nbr.view(-1).copy_(index._nbr_src)
    return index
