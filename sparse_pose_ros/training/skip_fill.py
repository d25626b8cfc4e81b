"""Fit the per-channel vector a gated block writes at the cells it skips (``skip_fill``).

A gated block that skips a cell leaves zero there (non-residual) or X unchanged (residual:
its branch F is zero). Every layer after it — the rest of the frozen MoveNet backbone, its FPN
— was trained on dense features, and around a small person almost every cell it reads is such
a skipped one. Replacing the zero branch by the branch's mean output over training frames puts
those cells near what the frozen layers saw, at no cost in the sparse kernel (it writes a
vector instead of zeros). Measured on the shipped sparse checkpoint's 515 held-out whole frames
(``docs/network.md`` §2b): the same masks went from PCK@0.1 0.52 to 0.67 against BlazePose.

The mean is over *every* cell of whole training frames, letterboxed as the node does (people
small, background and padding as the node meets them), with every cell executed: what a
skipped cell would most likely have held. Only the label cache's training sources are read.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..data.label_cache import load_corpus
from ..evaluation.real_heldout import iter_rows, select_rows
from ..model.network import PoseNetwork
from ..pipeline.preprocess import letterbox, mean_fill, normalise


def training_frames(labels: Path, per_source: int) -> Iterator[np.ndarray]:
    """RGB frames of every *training* label set, ``per_source`` of each, evenly spread."""
    corpus = load_corpus(labels)
    train = {k: v for k, v in sorted(corpus.items()) if v.split == "train"}
    if not train:
        raise ValueError(f"no training label sets under {labels}: run ./run label")
    for ls in train.values():
        rows = select_rows(len(ls.manifest["frames"]), per_source)
        for _, rgb in iter_rows(ls, rows):
            yield rgb


def branch_means(net: PoseNetwork, frames: Iterable[np.ndarray]) -> tuple[list[Tensor], int]:
    """Per gated block, the mean over every cell of its branch output F(X) with every cell
    executed; and how many frames were read. F is read off the forward pass itself: a
    non-residual block's output, a residual block's output minus its input (so a ReLU
    residual, which hides F, is refused)."""
    blocks = net.gated_blocks()
    if not blocks:
        raise ValueError("the network has no gated blocks")
    if any(b.use_residual and b.residual_activation is not None for b in blocks):
        raise ValueError("a ReLU residual hides its branch from the block's output: the skip "
                         "fill is fitted on identity residuals only")
    size = net.cfg.input_size
    pad = mean_fill(net.cfg.input_mean)
    sums = [torch.zeros(b.out_channels, dtype=torch.float64) for b in blocks]
    cells = [0] * len(blocks)

    def add(i: int, block: Any, args: tuple[Tensor, ...], output: tuple[Tensor, Any]) -> None:
        f = output[0] - args[0] if block.use_residual else output[0]
        sums[i] += f.double().sum((0, 2, 3))
        cells[i] += f.shape[0] * f.shape[2] * f.shape[3]

    hooks = [b.register_forward_hook(lambda m, a, o, i=i: add(i, m, a, o))
             for i, b in enumerate(blocks)]
    n = 0
    every = torch.ones(1, 1, size // 16, size // 16)
    try:
        with torch.no_grad():
            for rgb in frames:
                canvas, _ = letterbox(rgb, size, pad)
                net.backbone(torch.from_numpy(normalise(canvas, net.cfg.input_mean,
                                                        net.cfg.input_std)), every)
                n += 1
    finally:
        for hk in hooks:
            hk.remove()
    if n == 0:
        raise ValueError("no frames to fit the skip fill on")
    return [(s / c).float() for s, c in zip(sums, cells, strict=True)], n


def fit_skip_fill(net: PoseNetwork, labels: Path, per_source: int) -> dict[str, Any]:
    """Set every gated block's ``skip_fill`` buffer (the network needs ``skip_fill: true``)
    from ``per_source`` frames of each training source; returns a description."""
    blocks = net.gated_blocks()
    if any(b.skip_fill is None for b in blocks):
        raise ValueError("the network has no skip_fill buffers (NetworkConfig.skip_fill)")
    t0 = time.perf_counter()
    means, frames = branch_means(net, training_frames(labels, per_source))
    with torch.no_grad():
        for b, m in zip(blocks, means, strict=True):
            b.skip_fill.copy_(m.to(b.skip_fill.dtype))  # type: ignore[union-attr]
    return {"frames": frames, "per_source": per_source,
            "mean_abs_per_block": [round(float(m.abs().mean()), 4) for m in means],
            "seconds": round(time.perf_counter() - t0, 1)}
