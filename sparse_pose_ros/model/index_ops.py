"""Index arithmetic that every runtime runs cheaply: the network's argmaxes.

Why not ``Tensor.argmax``: it exports to an ONNX ArgMax, which OpenVINO's CPU plugin runs as a
stable TopK. For the 17 heatmaps of a 224 × 96 strip that TopK took 0.28 ms on one thread and
1.4 ms on two — 4 % and 17 % of the whole network — and left the next layers slower on two
threads; ReduceMax, Equal, Where and ReduceMin take microseconds and give the same index
(``docs/benchmarks.md``, "The argmax"). The reduction runs on int32, which TensorRT's reduce
layers take, and the index comes back as int64, what ``argmax`` returns.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["first_max_index"]


def first_max_index(values: Tensor) -> Tensor:
    """``values.argmax(dim=-1)``: the index of the first maximum along the last dim (ties break
    to the lowest index, as an argmax's do), as int64."""
    n = values.shape[-1]
    peak = values.amax(dim=-1, keepdim=True)
    cells = torch.arange(n, device=values.device, dtype=torch.int32)
    beyond = torch.full_like(cells, n)
    return torch.where(values == peak, cells, beyond).amin(dim=-1).long()
