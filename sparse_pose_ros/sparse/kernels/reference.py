"""NumPy mirror of the CUDA kernels in ``sparse_block_kernels.cuh``, step by step.

Why a mirror and not just a call to the PyTorch block: no GPU is available where this project
is built, so the index logic of the kernels (three-pass tile compaction, the inverse stride-2
footprint used for the dilated list, neighbour lookup through the row map, scatter) is checked
here against the masked dense PyTorch block on CPU. Each function names the kernel it mirrors
and uses the same formulas, tile sizes and buffer conventions (capacity-sized lists whose tail
past the device-side count is never read; -1 marks "no row" in the row map).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .weights import SparseBlockWeights

SCAN_THREADS = 256  # kSCAN_THREADS
SCAN_ITEMS = 4  # kSCAN_ITEMS
SCAN_TILE = SCAN_THREADS * SCAN_ITEMS  # kSCAN_TILE
MASK_ON = 0.5  # kMASK_ON


def output_extent(in_extent: int, stride: int) -> int:
    """``sparseBlockOutExtent``: output size of a 3×3 conv with padding 1."""
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride}")
    return (in_extent - 1) // stride + 1


def active_flags(mask: np.ndarray) -> np.ndarray:
    """``ActiveFlag`` over every output position of a (B, 1, Ho, Wo) mask, flat int32."""
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must be (B, 1, Ho, Wo), got {mask.shape}")
    return (mask.reshape(-1) >= MASK_ON).astype(np.int32)


def dilated_flags(mask: np.ndarray, stride: int, in_hw: tuple[int, int],
                  pad_before: int = 1) -> np.ndarray:
    """``DilatedFlag``: input positions read by the depthwise 3×3 of an active output, flat int32.

    With p = ``pad_before`` (1: padding=1; 0: TF 'SAME' at stride 2 on an even size), row y is
    read by outputs ceil((y+p-2)/s) <= oy <= floor((y+p)/s) (same for columns); the kernel
    loops over that range, here the (at most 3×3) range offsets are vectorised.
    """
    batch, _, out_h, out_w = mask.shape
    height, width = in_hw
    if (output_extent(height, stride), output_extent(width, stride)) != (out_h, out_w):
        raise ValueError(
            f"mask {out_h}x{out_w} does not match input {height}x{width} at stride {stride}"
        )
    on = mask[:, 0] >= MASK_ON
    y = np.arange(height)
    x = np.arange(width)
    p = pad_before
    oy0 = np.where(y + p <= 2, 0, (y + p - 2 + stride - 1) // stride)
    ox0 = np.where(x + p <= 2, 0, (x + p - 2 + stride - 1) // stride)
    oy1 = np.minimum(out_h - 1, (y + p) // stride)
    ox1 = np.minimum(out_w - 1, (x + p) // stride)
    flags = np.zeros((batch, height, width), dtype=bool)
    for dy in range(3):
        oy = oy0 + dy
        row_ok = oy <= oy1
        for dx in range(3):
            ox = ox0 + dx
            col_ok = ox <= ox1
            hit = on[:, np.minimum(oy, out_h - 1)][:, :, np.minimum(ox, out_w - 1)]
            flags |= hit & row_ok[None, :, None] & col_ok[None, None, :]
    return flags.reshape(-1).astype(np.int32)


def compact(flags: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """``countTilesKernel`` -> ``scanTileSumsKernel`` -> ``compactTilesKernel``.

    Returns (index list of capacity ``flags.size`` with -1 past the count, count, row map). The
    -1 tail stands for memory the kernels leave unwritten and never read; the kernels write the
    row map only for the dilated list (it is unused for the active list).
    """
    n = flags.size
    tiles = max(1, -(-n // SCAN_TILE))
    padded = np.zeros(tiles * SCAN_TILE, dtype=np.int64)
    padded[:n] = flags
    per_item = padded.reshape(tiles, SCAN_THREADS, SCAN_ITEMS)
    # Pass 1: every thread sums its ITEMS consecutive flags; the block reduces them per tile.
    per_thread = per_item.sum(axis=2)
    tile_sums = per_thread.sum(axis=1)
    # Pass 2: one block turns tile sums into exclusive tile offsets; the total is the count.
    tile_offsets = np.cumsum(tile_sums) - tile_sums
    count = int(tile_sums.sum())
    # Pass 3: exclusive scan over threads inside the tile, then a running position per item.
    thread_offsets = np.cumsum(per_thread, axis=1) - per_thread
    item_offsets = np.cumsum(per_item, axis=2) - per_item
    position = tile_offsets[:, None, None] + thread_offsets[:, :, None] + item_offsets
    position = position.reshape(-1)[:n]
    flagged = flags.astype(bool)
    index = np.full(n, -1, dtype=np.int32)
    index[position[flagged]] = np.flatnonzero(flagged).astype(np.int32)
    row_map = np.where(flagged, position, -1).astype(np.int32)
    return index, count, row_map


@dataclass(frozen=True)
class IndexLists:
    """What ``launchSparseIndexLists`` leaves in device memory."""

    active_idx: np.ndarray  # (B*Ho*Wo,) int32
    active_count: int
    dilated_idx: np.ndarray  # (B*H*W,) int32
    dilated_count: int
    row_map: np.ndarray  # (B*H*W,) int32, -1 outside the dilated set


def index_lists(mask: np.ndarray, stride: int, in_hw: tuple[int, int],
                pad_before: int = 1) -> IndexLists:
    """Active output list and dilated input list (+ row map) of one block."""
    active_idx, active_count, _ = compact(active_flags(mask))
    dilated_idx, dilated_count, row_map = compact(dilated_flags(mask, stride, in_hw, pad_before))
    return IndexLists(active_idx, active_count, dilated_idx, dilated_count, row_map)


def gather_rows(x: np.ndarray, dilated_idx: np.ndarray, count: int) -> np.ndarray:
    """``gatherRowsKernel``: rows[n, c] = X[b, c, y, x] of the n-th dilated position."""
    batch, channels, height, width = x.shape
    plane = height * width
    p = dilated_idx[:count].astype(np.int64)
    b, s = p // plane, p % plane
    flat = x.reshape(batch, channels, plane).astype(np.float32)
    return np.ascontiguousarray(flat[b, :, s])


def rows_gemm(rows: np.ndarray, weight: np.ndarray, bias: np.ndarray, relu6: bool) -> np.ndarray:
    """``rowsGemmKernel``: act(rows @ weight.T + bias) (a 1×1 conv with BN folded)."""
    out = rows.astype(np.float32) @ weight.astype(np.float32).T + bias.astype(np.float32)
    return np.clip(out, 0.0, 6.0) if relu6 else out


def masked_depthwise(
    hidden: np.ndarray,
    row_map: np.ndarray,
    active_idx: np.ndarray,
    count: int,
    w_dw: np.ndarray,
    b_dw: np.ndarray,
    in_hw: tuple[int, int],
    stride: int,
    pad_before: int = 1,
) -> np.ndarray:
    """``maskedDepthwiseKernel``: 3×3 depthwise at active outputs via row-map neighbour lookup."""
    height, width = in_hw
    out_h, out_w = output_extent(height, stride), output_extent(width, stride)
    q = active_idx[:count].astype(np.int64)
    b = q // (out_h * out_w)
    s = q % (out_h * out_w)
    oy, ox = s // out_w, s % out_w
    acc = np.broadcast_to(b_dw.astype(np.float32), (count, hidden.shape[1])).copy()
    for ky in range(3):
        iy = oy * stride - pad_before + ky
        for kx in range(3):
            ix = ox * stride - pad_before + kx
            inside = (iy >= 0) & (iy < height) & (ix >= 0) & (ix < width)
            flat = (b * height + np.clip(iy, 0, height - 1)) * width + np.clip(ix, 0, width - 1)
            r = np.where(inside, row_map[flat], -1)
            ok = r >= 0
            tap = w_dw[:, ky * 3 + kx].astype(np.float32)
            acc[ok] += hidden[r[ok]] * tap[None, :]
    return np.clip(acc, 0.0, 6.0)


def scatter_add(y: np.ndarray, rows: np.ndarray, active_idx: np.ndarray, count: int) -> np.ndarray:
    """``scatterAddKernel``: y[b, :, oy, ox] += rows[m] at the m-th active output (in place)."""
    batch, channels, out_h, out_w = y.shape
    plane = out_h * out_w
    q = active_idx[:count].astype(np.int64)
    b, s = q // plane, q % plane
    flat = y.reshape(batch, channels, plane)
    flat[b, :, s] += rows.astype(y.dtype)
    return y


def sparse_inverted_residual(
    x: np.ndarray, mask: np.ndarray, weights: SparseBlockWeights
) -> np.ndarray:
    """``launchSparseInvertedResidual``: the whole block, in the kernels' order."""
    if x.ndim != 4:
        raise ValueError(f"x must be (B, C, H, W), got {x.shape}")
    batch, channels, height, width = x.shape
    if channels != weights.in_channels:
        raise ValueError(f"x has {channels} channels, the weights expect {weights.in_channels}")
    stride = weights.stride
    out_hw = (output_extent(height, stride), output_extent(width, stride))
    if mask.shape != (batch, 1, *out_hw):
        raise ValueError(f"mask must be {(batch, 1, *out_hw)}, got {mask.shape}")
    if weights.pad_before not in ((1,) if stride == 1 else (0, 1)):
        raise ValueError(f"pad_before {weights.pad_before} at stride {stride}")
    lists = index_lists(mask, stride, (height, width), weights.pad_before)
    y = (
        x.astype(np.float32).copy()
        if weights.residual
        else np.zeros((batch, weights.out_channels, *out_hw), dtype=np.float32)
    )
    rows = gather_rows(x, lists.dilated_idx, lists.dilated_count)
    hidden = (
        rows_gemm(rows, weights.w_expand, weights.b_expand, relu6=True)
        if weights.has_expand
        else rows
    )
    depthwise = masked_depthwise(
        hidden,
        lists.row_map,
        lists.active_idx,
        lists.active_count,
        weights.w_dw,
        weights.b_dw,
        (height, width),
        stride,
        weights.pad_before,
    )
    projected = rows_gemm(depthwise, weights.w_proj, weights.b_proj, relu6=False)
    return scatter_add(y, projected, lists.active_idx, lists.active_count)
