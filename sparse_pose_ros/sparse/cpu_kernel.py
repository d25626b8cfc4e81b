"""Compiled fused CPU kernel (``csrc/``: ``module.cpp`` and the files it names), built on first
use and cached.

Why compiled: on a 2-core CPU the gated blocks at stride 8/16 do a few hundred thousand MACs
each at density 0.25, less than the ~5-10 µs Python + dispatcher overhead of each of the ~30
PyTorch ops the portable path needs per block. One C++ call per frame (stem, then per block: mask
unit, index lists, gather, expand GEMM, masked depthwise, project GEMM, scatter) removes that
overhead; the GEMMs are the kernel's own register-blocked micro-kernel (``csrc/simd_gemm.h``).
Threads: a persistent worker pool of the kernel's own, not OpenMP (why: ``csrc/worker_pool.h``).

The extension is built with the machine's compiler through ``torch.utils.cpp_extension.load``
(``-O3 -march=native``; built on the machine that runs it, so native is what we want; every
``csrc/*.cpp`` compiled together into one module) into a cache directory keyed by the hash of
every source and header, compiler flags and torch version, so a source change or torch upgrade
rebuilds and an unchanged one loads in milliseconds. If no compiler is
available the loader returns None and the executor falls back to the PyTorch-ops kernel.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

from ..model.blocks import InvertedResidual, conv_pads
from ..model.masks import BlockMask
from .folding import FoldedBlock

log = logging.getLogger(__name__)

CSRC = Path(__file__).with_name("csrc")
#: translation units compiled together (module.cpp holds the bindings; the rest one job each)
SOURCES: tuple[Path, ...] = tuple(sorted(CSRC.glob("*.cpp")))
#: everything the build reads: the sources and the headers they include (the cache key)
BUILD_INPUTS: tuple[Path, ...] = tuple(sorted([*CSRC.glob("*.cpp"), *CSRC.glob("*.h")]))
CFLAGS = ["-O3", "-march=native", "-fopenmp-simd", "-fno-math-errno", "-pthread",
          "-ffp-contract=fast"]
#: arithmetic of the kernel's GEMMs: f32, or bf16 on AMX tiles (``precision`` of the executor
#: and the compiled FPN)
PRECISIONS: tuple[str, ...] = ("f32", "bf16")
_loaded: ModuleType | None = None
_failed = False
#: A build lock older than this is a dead process's (a build takes ~1-2 min here): removed.
STALE_LOCK_S = 600.0


def cache_dir() -> Path:
    """Build directory keyed by every source and header, flags and torch version."""
    h = hashlib.sha256()
    for path in BUILD_INPUTS:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    h.update(" ".join(CFLAGS).encode() + torch.__version__.encode())
    key = h.hexdigest()[:16]
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return root / "sparse_pose_ros" / "cpu_kernel" / key


def clear_stale_lock(build: Path, max_age_s: float = STALE_LOCK_S) -> bool:
    """Remove ``build/lock`` when it is older than ``max_age_s``; True if removed.

    Why: torch's extension loader takes that file for every load (ninja checks the build even
    when it is up to date) and waits for it without a timeout. A process killed inside that
    window (a node stopped with SIGKILL as it starts, a crashed test run) leaves it behind, and
    every later start then hangs in the loader."""
    lock = build / "lock"
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return False
    if age <= max_age_s:
        return False
    log.warning("removing the stale build lock %s (%.0f s old: its process is gone)", lock, age)
    lock.unlink(missing_ok=True)
    return True


def load_cpu_kernel(verbose: bool = False) -> ModuleType | None:
    """Build (first time) and import the extension; None if it cannot be built here."""
    global _loaded, _failed
    if _loaded is not None or _failed:
        return _loaded
    try:
        from torch.utils.cpp_extension import load

        build = cache_dir()
        build.mkdir(parents=True, exist_ok=True)
        clear_stale_lock(build)
        _loaded = load(
            name="sparse_pose_ros_cpu",
            sources=[str(p) for p in SOURCES],
            extra_cflags=CFLAGS,
            extra_ldflags=["-pthread"],
            build_directory=str(build),
            verbose=verbose,
        )
    except Exception as exc:  # compiler missing, headers missing, ...: fall back, say why
        log.warning("could not build the sparse CPU kernel (%s); using PyTorch ops", exc)
        _failed = True
        _loaded = None
    return _loaded


@dataclass
class CpuBlockBuffers:
    """Per-block scratch owned by the executor and reused every frame."""

    hard: Tensor
    dilated: Tensor
    logits: Tensor
    soft: Tensor
    rank: Tensor
    act_rows: Tensor
    dil_rows: Tensor
    row_ptr: Tensor
    e_buf: Tensor
    d_buf: Tensor
    p_buf: Tensor
    strip_rows: int
    channel_slices: int = 1

    @classmethod
    def allocate(
        cls, fb: FoldedBlock, batch: int, in_hw: tuple[int, int], threads: int | None = None
    ) -> CpuBlockBuffers:
        h, w = in_hw
        ho, wo = (h - 1) // fb.stride + 1, (w - 1) // fb.stride + 1
        n_in, n_out = batch * h * w, batch * ho * wo
        threads = max(1, threads or torch.get_num_threads())
        rows = strip_rows(fb, batch, in_hw, threads)
        cap_e = min(h, fb.stride * rows + 2) * w
        cap_a = rows * wo
        i32 = torch.int32
        return cls(
            hard=torch.zeros(batch, 1, ho, wo),
            dilated=torch.zeros(batch, 1, h, w),
            logits=torch.zeros(batch, 1, ho, wo),
            soft=torch.zeros(batch, 1, ho, wo),
            rank=torch.zeros(n_in, dtype=i32),
            act_rows=torch.zeros(n_out, dtype=i32),
            dil_rows=torch.zeros(n_in, dtype=i32),
            row_ptr=torch.zeros(batch * h + 1 + batch * ho + 1, dtype=i32),
            e_buf=torch.zeros(threads, cap_e, fb.hidden_channels),
            d_buf=torch.zeros(threads, cap_a, fb.hidden_channels),
            p_buf=torch.zeros(n_out, fb.out_channels),
            strip_rows=rows,
            channel_slices=channel_slices(fb, threads),
        )

    def tensors(self) -> list[Tensor]:
        return [v for v in vars(self).values() if isinstance(v, Tensor)]


#: Target size of one band's expanded rows: fits L2 next to the weights and the band's input.
STRIP_BYTES = 256 * 1024
#: Above this many bytes of expand + project weights a band spans its whole group of rows.
WHOLE_GROUP_WEIGHT_BYTES = 2 * 1024 * 1024


def gemm_weight_bytes(fb: FoldedBlock) -> int:
    """Bytes of the weights a block's GEMMs stream (expand, if any, and project; float32)."""
    c_in = fb.in_channels if fb.expand is not None else 0
    return 4 * fb.hidden_channels * (c_in + fb.out_channels)


def strip_rows(fb: FoldedBlock, batch: int, in_hw: tuple[int, int], threads: int) -> int:
    """Output rows per band: as many as keep the band's expanded rows within ``STRIP_BYTES``,
    and at most a quarter of the image's rows per thread. The kernel balances threads with
    work-placed band groups (a group's bands reuse each other's halo rows), so this cap is no
    longer about balance; lifting it (bands of 8 rows on the 16x16 grids) measured 4-6 % slower
    per block there (256 px, density 0.25, 2 threads), so it stays.

    Except for blocks whose weights are larger than the band (``WHOLE_GROUP_WEIGHT_BYTES``):
    every band streams all of them through the GEMMs again, from L3 once they exceed L2
    (MoveNet Thunder's 8x8 blocks: 3.8-5.6 MB of weights, 1 MB of L2 on this Zen 4, bands of 2
    of 8 rows). There one band takes a thread's whole group (scratch sized for every row):
    1 thread, 256 px, density 0.25, sequence step times, two alternating runs on a loaded VM:
    the ungated 280->1680->560 block 2.16 -> 1.90 and 2.21 -> 1.99 ms, the gated 8x8 ones
    0.65 -> 0.62 and 0.75 -> 0.69 ms;
    the 16x16 blocks (1.35-1.8 MB) gained nothing from it and keep the bands."""
    h, w = in_hw
    ho = (h - 1) // fb.stride + 1
    if gemm_weight_bytes(fb) > WHOLE_GROUP_WEIGHT_BYTES:
        return int(ho)  # work-placed groups may hold any number of rows: size for all
    fit = (STRIP_BYTES // (4 * fb.hidden_channels * w) - 2) // fb.stride
    balance = -(-(batch * ho) // (2 * threads)) if batch * ho >= 2 * threads else 1
    return int(max(1, min(fit, balance, ho)))


#: Blocks with fewer bytes of expand + project weights keep their bands cut by rows on
#: several threads (``channel_slices``): MoveNet Thunder's blocks 1-3 (47-99 KB, reading 128x128 /
#: 64x64 grids); 0 would cut every block with an expand conv by channels.
CHANNEL_SPLIT_MIN_WEIGHT_BYTES = 128 * 1024


def channel_slices(fb: FoldedBlock, threads: int) -> int:
    """How many channel slices the kernel cuts a block's expand -> depthwise -> project into
    (one chunk each, block.h ``BlockPlan::Slice``); 1 = bands cut by rows into work-placed
    groups, one a thread. With several threads every block with an expand conv and at least
    ``CHANNEL_SPLIT_MIN_WEIGHT_BYTES`` of weights gets one slice a thread: cut by rows, each
    thread streamed all of the block's weights through its GEMMs, expanded its own copy of
    the rows its neighbour's group also reads (the 3x3 halo), and the groups' estimated work
    only roughly matched their time; cut by channels, each thread reads its share of the
    weights once, no row is expanded twice, and the shares are equal by construction — for
    the price of both threads reading every input row and the scatter adding the slices'
    partial project sums, which is what the early blocks' large grids and small weights pay
    for. Measured on the sparse checkpoint, 2 threads, held-out real whole frames,
    interleaved (``results/sparse_channel_split_ab.json``): only the 8x8 stage split
    (weights > 2 MB) 0.94-0.98x the network time of rows everywhere, blocks above 500 KB
    0.92-0.93x, every block 0.91x; with the locator's masks on every frame (denser) 0.95x;
    per block, every block but 1-3 faster by channels (the 8x8 ones 0.71-0.76x), blocks 1-2
    4-9 % slower (so they keep rows: blocks 6.87 ms in all against 6.91 every block and 7.99
    rows). A block without an expand conv reads x in place and keeps its rows, as does one
    thread."""
    if threads <= 1 or fb.expand is None:
        return 1
    return threads if gemm_weight_bytes(fb) >= CHANNEL_SPLIT_MIN_WEIGHT_BYTES else 1


_EMPTY = torch.empty(0)


def depthwise_pads(blk: InvertedResidual, in_hw: tuple[int, int]) -> tuple[int, int]:
    """(top, left) zero padding of the block's depthwise conv on an ``in_hw`` input: 1 for
    PyTorch's padding=1, 0 for a TF 'SAME' stride-2 conv on an even size (MoveNet). The kernel
    takes both because the pad before decides which inputs an output reads; the pad after is
    implicit there (taps past the grid read zero)."""
    top, _, left, _ = conv_pads(blk.depthwise[0], in_hw[0], in_hw[1])  # type: ignore[arg-type]
    return top, left


def block_args(
    blk: InvertedResidual,
    fb: FoldedBlock,
    x_ext: Tensor,
    out_ext: Tensor,
    batch: int,
    in_hw: tuple[int, int],
    bufs: CpuBlockBuffers,
    dense_above: float,
    given: Tensor | None = None,
) -> tuple[object, ...]:
    """The compiled ``run_block`` arguments of one block (also recorded by ``BlockSequence``).

    The mask: the block's ``fixed_mask``, else ``given`` (decided outside the block: the
    network's person locator; the kernel reads it at run time, so a recorded sequence sees
    in-place updates), else the learned mask unit.

    If the mask's active fraction exceeds ``dense_above`` every row is computed and the mask
    applied at the scatter (= masked dense); otherwise only the active / dilated rows are.
    ``dense_above`` < 0: always dense; >= 1: always sparse."""
    if blk.gated:
        chosen = blk.fixed_mask if blk.fixed_mask is not None else given
        if chosen is not None:
            fixed = chosen.to(torch.float32).contiguous()
            if fixed.shape != bufs.hard.shape:
                raise ValueError(
                    f"fixed_mask shape {tuple(fixed.shape)} != {tuple(bufs.hard.shape)}"
                )
            gate = 2
        else:
            fixed, gate = _EMPTY, 1
        if blk.mask_unit is None:
            raise ValueError("a gated block without a mask unit cannot be executed")
        threshold = float(blk.mask_unit.threshold_logit)
    else:
        fixed, gate, threshold, dense_above = _EMPTY, 0, 0.0, -1.0
    ex = fb.expand
    pad_top, pad_left = depthwise_pads(blk, in_hw)
    return (
        x_ext, out_ext, batch, in_hw[0], in_hw[1], fb.stride, pad_top, pad_left,
        ex.weight if ex is not None else _EMPTY, ex.bias if ex is not None else _EMPTY,
        fb.depthwise.weight, fb.depthwise.bias, fb.project.weight, fb.project.bias,
        fb.use_residual, fb.residual_relu, gate, dense_above,
        fb.mask_weight if fb.mask_weight is not None else _EMPTY,
        float(fb.mask_bias) if fb.mask_bias is not None else 0.0, threshold, fixed,
        bufs.hard, bufs.dilated, bufs.logits, bufs.soft, bufs.rank, bufs.act_rows,
        bufs.dil_rows, bufs.row_ptr, bufs.e_buf, bufs.d_buf, bufs.p_buf,
        bufs.strip_rows, fb.fill if fb.fill is not None else _EMPTY, bufs.channel_slices,
    )  # fmt: skip


def block_mask(bufs: CpuBlockBuffers) -> BlockMask:
    """The BlockMask the kernel writes into ``bufs`` (aliases, valid until the next frame)."""
    return BlockMask(hard=bufs.hard, dilated=bufs.dilated, soft=bufs.soft, logits=bufs.logits)


def run_block_cpu(
    kernel: ModuleType,
    blk: InvertedResidual,
    fb: FoldedBlock,
    x_ext: Tensor,
    out_ext: Tensor,
    batch: int,
    in_hw: tuple[int, int],
    bufs: CpuBlockBuffers,
    dense_above: float,
    given: Tensor | None = None,
) -> tuple[BlockMask | None, tuple[int, int], bool]:
    """One fused call (see :func:`block_args`). Returns (mask, (n_active, n_dilated), ran_dense)."""
    args = block_args(blk, fb, x_ext, out_ext, batch, in_hw, bufs, dense_above, given)
    n_act, n_dil, ran_dense = kernel.run_block(*args)
    if not blk.gated:
        return None, (n_act, n_dil), True
    return block_mask(bufs), (n_act, n_dil), bool(ran_dense)
