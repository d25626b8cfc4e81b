"""Inference executor that walks a :class:`PoseNetwork`'s backbone and runs gated blocks by
gather-scatter, with a per-stage policy (sparse where it pays, dense where it does not).

Why a separate executor instead of a mode flag inside the model: the model stays a plain
trainable ``nn.Module`` (masked dense semantics), while the executor owns everything that only
matters at inference — BN folded into weights (once), channels-last flat feature buffers and
fixed-capacity index buffers reused across frames, the per-stage policy and the kernel choice.

Outputs alias executor-owned buffers and are valid until the next call (as with ONNX Runtime
IO binding); clone them if they must outlive the next frame.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..model.blocks import InvertedResidual, conv_pads
from ..model.locator import cells_to_grid
from ..model.masks import BlockMask, receptive_mask
from ..model.network import Backbone, PoseNetwork, PoseOutput
from . import torch_ops
from .cpu_kernel import PRECISIONS, CpuBlockBuffers, block_args, block_mask, run_block_cpu
from .folding import FoldedBlock, FoldedConv, fold_batchnorm, fold_block, fold_conv_bn
from .indices import BlockIndex, allocate_index, build_index

log = logging.getLogger(__name__)

MODES = ("sparse", "dense")
KERNELS = ("torch", "cpp")
SYNC_POLICIES = ("exact", "capacity")


def block_stride_map(backbone: Backbone) -> list[int]:
    """Output stride (w.r.t. the input image) of every backbone block."""
    strides, s = [], 2
    for b in backbone.blocks:
        s *= b.stride
        strides.append(s)
    return strides


def _dense_above(mode: str | float) -> float:
    """Policy value -> active fraction above which a block runs densely."""
    if mode == "dense":
        return -1.0
    if mode == "sparse":
        return 2.0
    return float(mode)


def compute_block_mask(
    blk: InvertedResidual, fb: FoldedBlock, x: Tensor, b: int, hw: tuple[int, int],
    given: Tensor | None = None,
) -> BlockMask:
    """The block's mask from flat NHWC input ``x`` (B·H·W, C): ``fixed_mask``, else ``given``
    (the person locator's), else the learned mask unit thresholded without noise (=
    ``InvertedResidual.compute_mask`` in eval mode)."""
    h, w = hw
    ho, wo = (h - 1) // fb.stride + 1, (w - 1) // fb.stride + 1
    chosen = blk.fixed_mask if blk.fixed_mask is not None else given
    if chosen is not None:
        hard = chosen.to(dtype=x.dtype)
        if hard.shape != (b, 1, ho, wo):
            raise ValueError(f"fixed_mask shape {tuple(hard.shape)} != {(b, 1, ho, wo)}")
        logits = hard * 2.0 - 1.0
        soft = hard
    else:
        assert blk.mask_unit is not None and fb.mask_weight is not None
        img = x.view(b, h, w, -1)
        if fb.stride == 2:
            img = img[:, ::2, ::2]
        logits = (torch.matmul(img, fb.mask_weight) + fb.mask_bias).unsqueeze(1)
        soft = torch.sigmoid(logits)
        hard = (logits >= blk.mask_unit.threshold_logit).to(x.dtype)
    top, _, left, _ = conv_pads(blk.depthwise[0], h, w)  # type: ignore[arg-type]
    dilated = receptive_mask(hard, fb.stride, (h, w), pad_before=(top, left))
    return BlockMask(hard=hard, dilated=dilated, soft=soft, logits=logits)


@dataclass
class _BlockState:
    folded: FoldedBlock
    mode: str | float
    index: BlockIndex | None = None
    e_buf: Tensor | None = None
    out_buf: Tensor | None = None  # non-residual blocks only
    cpu: CpuBlockBuffers | None = None  # compiled-kernel scratch
    counts: tuple[int, int] = (0, 0)
    ran_dense: bool = True
    #: (top, bottom, left, right) padding of the depthwise conv at the planned input size
    pads: tuple[int, int, int, int] = (1, 1, 1, 1)


def bf16_available() -> bool:
    """Whether ``precision="bf16"`` can run here: the compiled kernel builds, was compiled for
    AMX or AVX512-BF16 (``-march=native`` on a CPU that has one) and, for AMX, Linux grants
    the process the tile state."""
    from .cpu_kernel import load_cpu_kernel

    cpp = load_cpu_kernel()
    return cpp is not None and bool(cpp.bf16_available())


def bf16_preferred() -> bool:
    """Whether ``"auto"`` takes bf16 here: where bf16 was measured faster than f32, i.e. AMX
    tiles, or the AVX512-BF16 dot product on an AMD CPU (0.49-0.57x f32's GEMM time on an EPYC,
    1.3-1.7x on the Xeon whose AMX is faster still; ``csrc/simd_gemm.h``)."""
    from .cpu_kernel import load_cpu_kernel

    cpp = load_cpu_kernel()
    return cpp is not None and bool(cpp.bf16_auto())


class SparseBackbone:
    """Gather-scatter executor of a (gated) :class:`Backbone`.

    Args:
        backbone: the model's backbone (weights are folded at construction; call
            :meth:`refresh` after changing them).
        policy: ``"sparse"`` / ``"dense"`` / a crossover density for every gated block, or a
            mapping from output stride (2, 4, 8, 16) to one of those: the per-stage policy.
            A crossover ``c`` in [0, 1] runs a block sparsely when its mask's active fraction is
            ≤ c and densely (masked afterwards, same result) above it; the crossovers come from
            the per-stage benchmark. Ungated blocks always run dense. With ``sync="capacity"``
            a crossover means sparse (deciding would need a host read).
        kernel: ``"torch"`` (portable PyTorch ops) or ``"cpp"`` (compiled fused CPU kernel,
            built on first use; falls back to torch with a warning if the build fails).
        sync: ``"exact"`` reads each block's active counts on the host and computes only those
            rows (free on CPU); ``"capacity"`` never reads them back inside the frame and
            computes over the fixed capacity (the sync-free scheme a GPU path uses); the counts
            of all blocks are then read together once per frame for diagnostics.
        threads: threads of the compiled kernel (None: torch's current intra-op count, read
            when buffers are planned). Separate from torch's process-wide setting so a node
            can keep the kernel single-threaded on shared cores (docs/sparse.md).
        precision: ``"f32"``, or ``"bf16"``: the compiled kernel's expand / project GEMMs and
            the 1x1 after the last block multiply bf16-rounded inputs, f32 sums (AMX tiles, or
            the AVX512-BF16 dot product; stem, depthwise and everything else f32). Only where
            :func:`bf16_available`: on the 2-core Xeon the late blocks' GEMMs ran 2.5-5x faster
            on the tiles, on the EPYC 1.75-2x with the dot product (docs/sparse.md).
    """

    def __init__(
        self,
        backbone: Backbone,
        policy: str | float | Mapping[int, str | float] = "sparse",
        kernel: str = "torch",
        sync: str = "exact",
        threads: int | None = None,
        precision: str = "f32",
    ) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.threads = threads
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        if sync not in SYNC_POLICIES:
            raise ValueError(f"sync must be one of {SYNC_POLICIES}, got {sync!r}")
        if kernel == "cpp" and sync != "exact":
            raise ValueError("the compiled CPU kernel reads counts on the host: use sync='exact'")
        self.backbone = backbone
        self.strides = block_stride_map(backbone)
        self.policy = self._normalise_policy(policy)
        self.sync = sync
        self.kernel = kernel
        self._cpp = None
        if kernel == "cpp":
            from .cpu_kernel import load_cpu_kernel

            self._cpp = load_cpu_kernel()
            if self._cpp is None:
                log.warning("compiled CPU kernel unavailable; using the PyTorch-ops kernel")
                self.kernel = "torch"
        if precision == "bf16" and not bf16_available():
            raise ValueError("precision='bf16' needs the compiled kernel on a CPU with AMX or "
                             "AVX512-BF16 (bf16_available() is False here)")  # fmt: skip
        self.precision = precision
        #: number of host reads of device counts during the last frame (tests assert on it)
        self.host_reads = 0
        #: set True to record per-block wall times of the next frames in ``block_times`` (and
        #: ``stem_time``, ``last_time``); on the compiled path they are the recorded sequence's
        #: own step times, so profiling times the path frames take
        self.profile = False
        #: µs the compiled kernel's workers keep spinning after a frame (on top of the idle
        #: spin) because the caller comes back soon: set by :class:`SparsePoseNetwork` to the
        #: time of a neck + head that runs outside the kernel between frames
        self.linger_us = 0
        #: set True to run the compiled kernel block by block (one ``run_block`` call each, as
        #: the sequence's reference in tests) instead of as one recorded sequence
        self.per_block = False
        self.block_times: list[float] = []
        self.stem_time = 0.0
        #: seconds of the last frame's person-locator look (0 without a locator)
        self.locator_time = 0.0
        self._given: list[Tensor | None] = []
        #: the region whose masks ``_given`` holds (None after new buffers or other masks)
        self._last_region: Tensor | None = None
        #: (region shape, input size) -> per given buffer the region's index map (_write_region)
        self._region_plan: tuple[object, list[tuple[Tensor, Tensor | None]]] | None = None
        self._use_given = False
        #: with ``profile``: time of MoveNet's 1x1 after the last block (compiled path only)
        self.last_time = 0.0
        self._shape: tuple[int, ...] | None = None
        self._bufs: dict[tuple[int, int, int], Tensor] = {}
        self._seq_sig: tuple[object, ...] = ()
        self._seq_out: tuple[Tensor, list[Tensor], list[BlockMask | None]] | None = None
        self.refresh()

    def _threads(self) -> int:
        return self.threads if self.threads is not None else torch.get_num_threads()

    def _normalise_policy(
        self, policy: str | float | Mapping[int, str | float]
    ) -> dict[int, str | float]:
        stages = sorted(set(self.strides))
        if isinstance(policy, str | float | int):
            policy = {s: policy for s in stages}
        out: dict[int, str | float] = {}
        for s in stages:
            mode = policy.get(s, "sparse")
            if isinstance(mode, int | float) and not isinstance(mode, bool):
                if not 0.0 <= float(mode) <= 1.0:
                    raise ValueError(f"crossover density must be in [0, 1], got {mode}")
                mode = float(mode)
            elif mode not in MODES:
                raise ValueError(f"policy mode must be one of {MODES} or a crossover density, "
                                 f"got {mode!r} for stride {s}")  # fmt: skip
            out[s] = mode
        unknown = set(policy) - set(stages)
        if unknown:
            raise ValueError(f"policy names strides {sorted(unknown)}; backbone has {stages}")
        return out

    def refresh(self) -> None:
        """(Re)fold BN into weights; call after loading new weights into the backbone."""
        self.stem: FoldedConv = fold_conv_bn(self.backbone.stem)
        cw = self.stem.conv_weight
        # the compiled stem takes (C_in*9, C_out) rows ordered (c, ky, kx); 3x3 + ReLU6 only
        self._stem_taps: Tensor | None = None
        if cw.shape[2:] == (3, 3) and self.stem.groups == 1 and self.stem.relu6:
            self._stem_taps = cw.permute(1, 2, 3, 0).reshape(-1, cw.shape[0]).contiguous()
        #: MoveNet's 1x1 conv to 1280 (+ BN + ReLU6) after the last block, folded; None without
        self.last: FoldedConv | None = (
            fold_conv_bn(self.backbone.last) if self.backbone.last is not None else None
        )
        self.blocks: list[_BlockState] = [
            _BlockState(fold_block(b), self.policy[s] if b.gated else "dense")
            for b, s in zip(self.backbone.blocks, self.strides, strict=True)
        ]
        self._shape = None
        self._bufs.clear()
        self._seq: object | None = None
        self._gated_attrs = [(b.__dict__, b.mask_unit) for b in self.backbone.blocks if b.gated]
        loc = self.backbone.locator
        #: the person locator's convs with BatchNorm folded (None without a locator)
        self._locator_features = (
            fold_batchnorm(loc.features).to(memory_format=torch.channels_last)
            if loc is not None else None
        )

    # ----------------------------------------------------------------------------- buffers
    def _buffer(self, key: tuple[int, int, int], rows: int, channels: int) -> Tensor:
        buf = self._bufs.get(key)
        if buf is None or buf.shape != (rows + 1, channels):
            buf = torch.zeros(rows + 1, channels)
            self._bufs[key] = buf
        return buf

    def _prepare(self, batch: int, hw: tuple[int, int]) -> None:
        # the compiled kernel's scratch is per thread: a thread-count change re-plans it
        key = (batch, *hw, self._threads())
        if self._shape == key:
            return
        self._stem_pads = conv_pads(self.backbone.stem[0], hw[0], hw[1])  # type: ignore[arg-type]
        h, w = (hw[0] - 1) // 2 + 1, (hw[1] - 1) // 2 + 1  # after the stem
        tapped = set(self.backbone.tap_after.values())
        for i, (blk, st) in enumerate(zip(self.backbone.blocks, self.blocks, strict=True)):
            fb = st.folded
            ho, wo = (h - 1) // fb.stride + 1, (w - 1) // fb.stride + 1
            st.pads = conv_pads(blk.depthwise[0], h, w)  # type: ignore[arg-type]
            if i - 1 in tapped and fb.use_residual:
                # a residual block updates its input buffer in place: the tap would change
                raise ValueError(f"block {i - 1} is tapped but block {i} is residual")
            if self._cpp is not None:
                st.cpu = CpuBlockBuffers.allocate(fb, batch, (h, w), self._threads())
            elif blk.gated:
                st.index = allocate_index(batch, (h, w), fb.stride,
                                          pad_before=(st.pads[0], st.pads[2]))
                st.e_buf = torch.zeros(batch * h * w + 1, fb.hidden_channels)
            if not fb.use_residual:
                st.out_buf = self._buffer((i, ho, wo), batch * ho * wo, fb.out_channels)
            h, w = ho, wo
        #: per gated block the buffer a mask decided outside the block (the person locator's,
        #: or the caller's region) is written into each frame; stable tensors, so a recorded
        #: sequence reads them. Such masks are one per grid (``masks_from_cells``), so the
        #: blocks of one grid share one buffer: a frame copies 5 masks into them, not 17
        cells0 = torch.zeros(batch, 1, max(hw[0] // 16, 1), max(hw[1] // 16, 1))
        per_grid: dict[int, Tensor] = {}
        self._given = [None if m is None else per_grid.setdefault(id(m), torch.zeros(m.shape))
                       for m in self.backbone.masks_from_cells(cells0, hw)]
        self._last_region = None  # new buffers hold no region's masks
        self._region_plan = None
        self._last_cpp = None
        if self.last is not None:
            out = self._buffer((len(self.blocks), h, w), batch * h * w, self.last.bias.numel())
            src = self.blocks[-1].out_buf  # its input (None: a residual last block)
            if self._cpp is not None and src is not None:
                self._last_cpp = self._cpp.Pointwise(
                    self.last.weight.contiguous(), self.last.bias.contiguous(), src, out,
                    self.last.relu6, self._threads())
        self._shape = key
        self._seq = None

    def buffers(self) -> list[Tensor]:
        """Every persistent tensor the executor owns (for no-growth tests)."""
        out = list(self._bufs.values())
        for st in self.blocks:
            if st.index is not None:
                out += st.index.buffers()
            if st.e_buf is not None:
                out.append(st.e_buf)
            if st.cpu is not None:
                out += st.cpu.tensors()
        return out

    # ----------------------------------------------------------------------------- forward
    @torch.no_grad()
    def __call__(self, x: Tensor, region: Tensor | None = None
                 ) -> tuple[Tensor, list[Tensor], list[BlockMask | None]]:
        """Same contract as ``Backbone.forward`` (features NCHW views, skips, masks; ``region``:
        the cells every gated block executes)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) input, got {tuple(x.shape)}")
        if x.device.type != "cpu" and self.kernel == "cpp":
            raise ValueError("the compiled kernel is CPU-only")
        x = x.float()
        b = x.shape[0]
        self._prepare(b, (x.shape[2], x.shape[3]))
        self.host_reads = 0
        self.block_times = []
        self._use_given = region is not None or self.backbone.locator is not None
        given: list[Tensor | None] | None = None
        if region is not None:
            region = region.to(x.dtype)
            # the buffers hold this region's masks already (a tracked person whose stride-16
            # cells did not change since the last frame; _prepare forgets it with new buffers):
            # ~0.3 ms of resampling and copies saved
            if self._last_region is None or not torch.equal(self._last_region, region):
                self._write_region(region, (x.shape[2], x.shape[3]))
                self._last_region = region.clone()
        elif self.backbone.locator is not None:
            t0 = time.perf_counter()
            xl = x.contiguous(memory_format=torch.channels_last)
            given = self.backbone.locator_masks(xl, self._locator_features)
            self.locator_time = time.perf_counter() - t0
        if region is None:
            self._last_region = None  # the buffers are about to hold other masks
        if given is not None:
            done: set[int] = set()
            for buf, m in zip(self._given, given, strict=True):
                if buf is not None and m is not None and id(buf) not in done:
                    buf.copy_(m)
                    done.add(id(buf))
        given_now = self._given if self._use_given else [None] * len(self.blocks)
        if self._cpp is not None and self._stem_taps is not None and not self.per_block:
            return self._run_sequence(x, b)
        if self.precision != "f32":
            raise ValueError("precision='bf16' runs in the recorded sequence only (per_block "
                             "is the f32 reference)")  # fmt: skip
        st0 = self.stem
        t0 = time.perf_counter() if self.profile else 0.0
        if self._cpp is not None and self._stem_taps is not None:
            s0 = st0.stride
            h, w = (x.shape[2] - 1) // s0 + 1, (x.shape[3] - 1) // s0 + 1
            cur = self._buffer((-1, h, w), b * h * w, st0.bias.numel())
            top, _, left, _ = self._stem_pads
            self._cpp.stem_conv(x.contiguous(), self._stem_taps, st0.bias, cur, s0, top, left,
                                self._threads())  # fmt: skip
        else:
            top, bottom, left, right = self._stem_pads
            xs = x.contiguous(memory_format=torch.channels_last)
            if (top, left) != (bottom, right):
                xs, pad = F.pad(xs, (left, right, top, bottom)), (0, 0)
            else:
                pad = (top, left)
            y = F.conv2d(xs, st0.conv_weight, st0.bias, st0.stride, pad, 1,
                         st0.groups).clamp_(0.0, 6.0)  # fmt: skip
            h, w = y.shape[2], y.shape[3]
            cur = self._buffer((-1, h, w), b * h * w, y.shape[1])
            cur[:-1].view(b, h, w, -1).copy_(y.permute(0, 2, 3, 1))
        if self.profile:
            self.stem_time = time.perf_counter() - t0
        masks: list[BlockMask | None] = []
        taps: dict[int, Tensor] = {}
        tap_of = {idx: s for s, idx in self.backbone.tap_after.items()}
        for i, (blk, st) in enumerate(zip(self.backbone.blocks, self.blocks, strict=True)):
            fb = st.folded
            ho, wo = (h - 1) // fb.stride + 1, (w - 1) // fb.stride + 1
            out = cur if fb.use_residual else st.out_buf
            assert out is not None
            if self._cpp is not None:
                t0 = time.perf_counter() if self.profile else 0.0
                mask, st.counts, st.ran_dense = run_block_cpu(
                    self._cpp, blk, fb, cur, out, b, (h, w), st.cpu, _dense_above(st.mode),
                    given_now[i])  # fmt: skip
                if self.profile:
                    self.block_times.append(time.perf_counter() - t0)
                masks.append(mask)
                cur, h, w = out, ho, wo
                if i in tap_of:
                    taps[tap_of[i]] = cur[:-1].view(b, h, w, -1).permute(0, 3, 1, 2)
                continue
            t0 = time.perf_counter() if self.profile else 0.0
            mask = (compute_block_mask(blk, fb, cur[:-1], b, (h, w), given_now[i])
                    if blk.gated else None)  # fmt: skip
            masks.append(mask)
            if mask is None or st.mode == "dense" or not self._run_sparse(st, cur, out, mask):
                hard = mask.hard.reshape(-1) if mask is not None else None
                torch_ops.dense_block(fb, cur[:-1], b, (h, w), hard, out[:-1], st.pads)
                st.ran_dense = True
            if self.profile:
                self.block_times.append(time.perf_counter() - t0)
            cur, h, w = out, ho, wo
            if i in tap_of:
                taps[tap_of[i]] = cur[:-1].view(b, h, w, -1).permute(0, 3, 1, 2)
        if self.sync == "capacity":
            self._read_counts_once()
        return self._run_last(cur, b, (h, w)), self._skips(taps), masks

    def _write_region(self, region: Tensor, input_hw: tuple[int, int]) -> None:
        """``Backbone.masks_from_region(region)`` into the given-mask buffers, one per grid.

        Why not that call and a copy: on grids finer than the region's (stride 2, 4, 8) each
        cell takes its parent's value, so the buffer is one ``index_select`` of the region
        through a fixed index (the same resampling run once on the cells' own indices), with no
        intermediate map; the coarser grids (a max) still resample. ~0.4 ms a frame before,
        on the ~70 % of tracked video frames whose region moved."""
        key = (tuple(region.shape), input_hw)
        if self._region_plan is None or self._region_plan[0] != key:
            ring = self.backbone.region_ring
            ids = torch.arange(region.numel(), dtype=torch.float32).view(region.shape)
            plan: list[tuple[Tensor, Tensor | None]] = []
            seen: set[int] = set()
            for buf in self._given:
                if buf is None or id(buf) in seen:
                    continue
                seen.add(id(buf))
                grid = (int(buf.shape[-2]), int(buf.shape[-1]))
                fine = grid[0] >= region.shape[-2] and grid[1] >= region.shape[-1]
                idx = cells_to_grid(ids, grid, ring).long().reshape(-1) if fine else None
                plan.append((buf, idx))
            self._region_plan = (key, plan)
        flat = region.reshape(-1)
        for buf, idx in self._region_plan[1]:
            if idx is not None:
                torch.index_select(flat, 0, idx, out=buf.view(-1))
            else:
                buf.copy_(cells_to_grid(region, (int(buf.shape[-2]), int(buf.shape[-1])),
                                        self.backbone.region_ring))

    def _skips(self, taps: dict[int, Tensor]) -> list[Tensor]:
        """The taps the neck reads, coarse to fine (``Backbone.skip_strides``)."""
        return [taps[s] for s in self.backbone.skip_strides]

    def _run_last(self, cur: Tensor, b: int, hw: tuple[int, int]) -> Tensor:
        """The backbone's output features (B, C, h, w) as a channels-last view: the last block's
        buffer, or MoveNet's 1x1 conv (+ ReLU6) to 1280 on it, into a reused buffer. With the
        compiled kernel the 1x1 runs on its workers (``Pointwise``; the recorded sequence runs
        it as its last step and does not come here), else as one ``addmm``."""
        h, w = hw
        if self.last is None:
            return cur[:-1].view(b, h, w, -1).permute(0, 3, 1, 2)
        out = self._bufs[(len(self.blocks), h, w)]
        y = out[:-1]
        if self._last_cpp is not None and cur.data_ptr() == self._last_src_ptr():
            self._last_cpp.run()
        else:
            torch.addmm(self.last.bias, cur[:-1], self.last.weight, out=y)
            if self.last.relu6:
                y.clamp_(0.0, 6.0)
        return y.view(b, h, w, -1).permute(0, 3, 1, 2)

    def _last_src_ptr(self) -> int:
        """Data pointer of the buffer the compiled 1x1 after the last block reads."""
        st = self.blocks[-1]
        return st.out_buf.data_ptr() if st.out_buf is not None else -1

    # ------------------------------------------------------------ compiled whole-backbone path
    def _sequence_signature(self) -> tuple[object, ...]:
        """What the recorded call sequence depends on besides the shapes: every gated block's
        fixed mask (identity + in-place version) and, where its mask unit decides (no fixed
        mask, no masks given from outside), its threshold.

        Why not the threshold always: with a locator or a region the kernel reads the given
        mask and ignores the threshold, and the latency budget moves the threshold every frame;
        keyed on it, each frame re-recorded the whole sequence (a real-video replay measured
        the controlled run 5 ms slower than the fixed threshold at lower density)."""
        sig: list[object] = []
        for attrs, unit in self._gated_attrs:  # plain dicts: nn.Module.__getattr__ is slow
            fm = attrs.get("fixed_mask")
            decides = unit is not None and fm is None and not self._use_given
            thr = unit.__dict__.get("threshold_logit") if decides else None
            sig.append((id(fm), fm._version if fm is not None else -1, thr))
        # masks given from outside (locator / region) are read from stable buffers: only
        # whether they are in use changes the recording
        sig.append(self._use_given)
        return tuple(sig)

    def _record_sequence(self, b: int, hw: tuple[int, int]) -> None:
        """Record stem + every block as one compiled ``BlockSequence`` (one C++ call a frame)."""
        assert self._cpp is not None and self._stem_taps is not None
        st0 = self.stem
        seq = self._cpp.BlockSequence()
        seq.set_bf16(self.precision == "bf16")
        h, w = (hw[0] - 1) // st0.stride + 1, (hw[1] - 1) // st0.stride + 1
        cur = self._buffer((-1, h, w), b * h * w, st0.bias.numel())
        top, _, left, _ = self._stem_pads
        seq.set_stem(self._stem_taps, st0.bias, cur, st0.stride, top, left, self._threads())
        masks: list[BlockMask | None] = []
        taps: dict[int, Tensor] = {}
        tap_of = {idx: s for s, idx in self.backbone.tap_after.items()}
        for i, (blk, st) in enumerate(zip(self.backbone.blocks, self.blocks, strict=True)):
            fb = st.folded
            ho, wo = (h - 1) // fb.stride + 1, (w - 1) // fb.stride + 1
            out = cur if fb.use_residual else st.out_buf
            assert out is not None and st.cpu is not None
            given = self._given[i] if self._use_given else None
            seq.add(*block_args(blk, fb, cur, out, b, (h, w), st.cpu, _dense_above(st.mode),
                                given))  # fmt: skip
            masks.append(block_mask(st.cpu) if blk.gated else None)
            cur, h, w = out, ho, wo
            if i in tap_of:
                taps[tap_of[i]] = cur[:-1].view(b, h, w, -1).permute(0, 3, 1, 2)
        feats = cur[:-1].view(b, h, w, -1).permute(0, 3, 1, 2)
        self._seq_runs_last = False
        if self.last is not None:
            out = self._bufs[(len(self.blocks), h, w)]
            # MoveNet's 1x1 to 1280 as the frame's last step (see ``_run_last``)
            seq.set_last(self.last.weight.contiguous(), self.last.bias.contiguous(), cur, out,
                         self.last.relu6)  # fmt: skip
            self._seq_runs_last = True
            feats = out[:-1].view(b, h, w, -1).permute(0, 3, 1, 2)
        self._seq = seq
        self._seq_last = (cur, h, w)
        self._seq_out = (feats, self._skips(taps), masks)

    def _run_sequence(
        self, x: Tensor, b: int
    ) -> tuple[Tensor, list[Tensor], list[BlockMask | None]]:
        sig = self._sequence_signature()
        if self._seq is None or sig != self._seq_sig:
            self._record_sequence(b, (x.shape[2], x.shape[3]))
            self._seq_sig = sig
        seq = self._seq
        seq.set_timing(self.profile)  # type: ignore[attr-defined]
        counts = seq.run(x.contiguous(), self.linger_us)  # type: ignore[attr-defined]
        if self.profile:  # the sequence's own step times: stem, blocks[, the 1x1 after them]
            times = seq.times()  # type: ignore[attr-defined]
            self.stem_time = times[0]
            self.block_times = list(times[1 : 1 + len(self.blocks)])
            self.last_time = times[1 + len(self.blocks)] if self._seq_runs_last else 0.0
        for k, st in enumerate(self.blocks):
            st.counts = (int(counts[3 * k]), int(counts[3 * k + 1]))
            st.ran_dense = bool(counts[3 * k + 2])
        feats, skips, masks = self._seq_out
        if self.last is not None and not self._seq_runs_last:
            cur, h, w = self._seq_last
            feats = self._run_last(cur, b, (h, w))
        return feats, list(skips), list(masks)

    def _run_sparse(self, st: _BlockState, cur: Tensor, out: Tensor, mask: BlockMask) -> bool:
        """Gather-scatter with the torch kernel; False if the crossover policy says dense."""
        fb = st.folded
        assert st.index is not None and st.e_buf is not None
        build_index(st.index, mask.hard, mask.dilated)
        counts = None
        if self.sync == "exact":
            n_act, n_dil = st.index.counts.tolist()
            counts = (int(n_act), int(n_dil))
            st.counts = counts
            self.host_reads += 1
            if n_act > _dense_above(st.mode) * st.index.n_out:
                return False
        torch_ops.sparse_block(fb, cur, out, st.index, st.e_buf, counts)
        st.ran_dense = False
        return True

    def _read_counts_once(self) -> None:
        gated = [st for st in self.blocks if st.index is not None and st.mode == "sparse"]
        if not gated:
            return
        all_counts = torch.stack([st.index.counts for st in gated]).tolist()  # one read
        self.host_reads += 1
        for st, c in zip(gated, all_counts, strict=True):
            st.counts = (int(c[0]), int(c[1]))

    def prewake(self, spin_us: int) -> None:
        """Wake the compiled kernel's sleeping workers ahead of a frame (``spin_us``: how long
        they spin waiting for it). Why: a worker asleep when a frame begins sits the frame out
        (the pool's guard against vCPUs that wake late), so at camera pace, where the workers
        sleep between frames, every backbone ran on the calling thread alone; woken while the
        frame is cropped and normalised they are hot when the backbone starts."""
        if self._cpp is not None and self._threads() > 1 and spin_us > 0:
            self._cpp.prewake(self._threads(), int(spin_us))

    def executed_counts(self) -> list[tuple[int, int] | None]:
        """(n_active, n_dilated) of every gated block in the last frame (None: ungated).

        With the torch kernel only sparse-executed blocks update their counts."""
        return [st.counts if b.gated else None
                for b, st in zip(self.backbone.blocks, self.blocks, strict=True)]  # fmt: skip


HEADS = ("auto", "cpp", "ort", "torch")
#: longest spin (µs) the workers keep up through a neck + head run outside the kernel
LINGER_CAP_US = 10_000


class SparsePoseNetwork:
    """Whole network: :class:`SparseBackbone` + the model's dense neck and head.

    Args:
        net: the network.
        head: where the dense neck + head run: ``"cpp"`` (the compiled kernel's workers, on
            the executor's buffers in place: the light neck + head, :mod:`.head_plan`, or
            MoveNet's FPN + the person box + the head on its window + the lifter,
            :mod:`.window_head_plan`), ``"ort"`` (ONNX Runtime, fed the channels-last buffers
            without a copy; :mod:`.ort_head`), ``"torch"`` (eager) or ``"auto"`` (cpp when the
            backbone runs the compiled kernel and one of the plans fits the network, else ORT
            when installed, else torch). With ``"cpp"``, and with ``"ort"`` where the head
            reads a region (``OrtHead``'s windowed graphs), ``heatmaps`` and ``triplets`` are
            views valid until the next call.
        head_threads: intra-op threads of the ORT head session (``head="ort"`` only). Default
            1: a second thread pool next to the kernel's on a 2-core machine either sleeps
            (no gain) or spins and slows the backbone (docs/sparse.md).
        compiled_fpn: with the ORT head on MoveNet's FPN and the compiled kernel, run the FPN
            and the person-centre logits in the kernel (``fpn_plan``; ONNX Runtime then runs
            the person box and the windowed head). False keeps the whole neck in ONNX Runtime
            (the reference).
        **kwargs: :class:`SparseBackbone` options (policy, kernel, sync).
    """

    def __init__(
        self, net: PoseNetwork, head: str = "auto", head_threads: int = 1,
        compiled_fpn: bool = True, **kwargs: object
    ) -> None:
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        self.compiled_fpn = compiled_fpn
        from .head_plan import CppHead
        from .head_plan import supported as light_supported
        from .ort_head import OrtHead, ort_available
        from .window_head_plan import CppNeckHead
        from .window_head_plan import supported as window_supported

        self.net = net
        self.backbone = SparseBackbone(net.backbone, **kwargs)  # type: ignore[arg-type]
        if head == "ort" and not ort_available():
            raise ValueError("head='ort' needs onnxruntime, which is not installed")
        light_why, window_why = light_supported(net), window_supported(net)
        why_not = ("the compiled kernel is not in use" if self.backbone._cpp is None
                   else None if light_why is None or window_why is None
                   else f"{light_why}; {window_why}")  # fmt: skip
        cpp_ok = why_not is None
        if head == "cpp" and not cpp_ok:
            raise ValueError(f"head='cpp' needs kernel='cpp' and a head the kernel compiles: "
                             f"{why_not}")  # fmt: skip
        if head == "cpp" or (head == "auto" and cpp_ok):
            self.head = "cpp"
        elif head == "ort" or (head == "auto" and ort_available()):
            self.head = "ort"
        else:
            self.head = "torch"
        self._ort = (OrtHead(net, threads=head_threads, neck=self._compiled_fpn())
                     if self.head == "ort" else None)  # fmt: skip
        cpp = self.backbone._cpp
        self._cpp_head = (CppHead(net, cpp, threads=self.backbone.threads)
                          if self.head == "cpp" and light_why is None else None)  # fmt: skip
        self._neck_head = (CppNeckHead(net, cpp, threads=self.backbone.threads,
                                       precision=self.backbone.precision)
                           if self.head == "cpp" and light_why is not None else None)  # fmt: skip

    def _compiled_fpn(self) -> Any:
        """MoveNet's FPN + centre logits in the compiled kernel (``fpn_plan``) for the ORT
        head's windowed path, or None: without the compiled kernel, for another neck, or
        with ``compiled_fpn=False``."""
        from .fpn_plan import CppFpn, supported

        if not self.compiled_fpn or self.backbone._cpp is None or supported(self.net) is not None:
            return None
        return CppFpn(self.net, self.backbone._cpp, threads=self.backbone.threads,
                      precision=self.backbone.precision)

    def refresh(self) -> None:
        """Re-fold weights and re-export the head after the network's weights changed."""
        self.backbone.refresh()
        if self._ort is not None:
            self._ort.refresh()
        for plan in (self._cpp_head, self._neck_head):
            if plan is not None:
                plan.refresh()

    @torch.no_grad()
    def __call__(self, x: Tensor, region: Tensor | None = None) -> PoseOutput:
        feats, skips, masks = self.backbone(x, region)
        if self._cpp_head is not None:
            heatmaps, triplets, joints = self._cpp_head(feats, *skips,
                                                        gate=self.net.head_gate(masks))
            joints = self.net.refine_joints(joints)
        elif self._neck_head is not None:  # refine_joints is in the plan
            heatmaps, triplets, joints = self._neck_head(
                *(t.permute(0, 2, 3, 1) for t in (feats, *skips)),
                gate=self.net.head_gate(masks))  # fmt: skip
            return PoseOutput(heatmaps, triplets, joints, masks,
                              confidence=self._neck_head.confidence())
        else:
            t0 = time.perf_counter()
            if self._ort is not None and x.device.type == "cpu":
                heatmaps, triplets, joints = self._ort(
                    *(t.permute(0, 2, 3, 1) for t in (feats, *skips)),
                    gate=self.net.head_gate(masks),
                )
            else:
                heatmaps, triplets, joints, _depth = self.net.run_head(feats, skips, masks)
            self._linger_for_head(time.perf_counter() - t0)
        return PoseOutput(heatmaps, triplets, joints, masks)

    def _linger_for_head(self, head_s: float) -> None:
        """Keep the kernel's workers spinning through the next frame's neck + head (this
        frame's time, + 25 % + 0.2 ms, at most ``LINGER_CAP_US``), so that a frame that follows
        at once finds them awake. Why: a worker asleep when a frame begins sits it out (the
        pool's guard against vCPUs that wake late), and MoveNet's FPN head in ONNX Runtime
        (~2 ms at Thunder's 256 px, one thread) outlasts the 1 ms idle spin: every
        back-to-back frame's backbone then ran on one thread. Frames at camera pace still find
        the workers asleep, as before; the price is a spinning core during the head."""
        bb = self.backbone
        if bb._cpp is None or bb._threads() == 1:
            return
        bb.linger_us = min(LINGER_CAP_US, int(head_s * 1.25e6) + 200)


class BlockRunner:
    """Gather-scatter execution of a single block on NCHW tensors (tests, per-block benchmarks).

    Folding and buffers are prepared once per input shape, as in :class:`SparseBackbone`.
    The mask is the block's ``fixed_mask`` if set, else its learned mask unit.
    """

    def __init__(self, block: InvertedResidual, kernel: str = "torch", sync: str = "exact",
                 mode: str = "sparse") -> None:  # fmt: skip
        if kernel not in KERNELS or sync not in SYNC_POLICIES or mode not in MODES:
            raise ValueError(f"invalid kernel/sync/mode {kernel!r}/{sync!r}/{mode!r}")
        self.block = block
        self.folded = fold_block(block)
        self.kernel, self.sync, self.mode = kernel, sync, mode
        self._cpp = None
        if kernel == "cpp":
            from .cpu_kernel import load_cpu_kernel

            self._cpp = load_cpu_kernel()
            if self._cpp is None:
                raise RuntimeError("compiled CPU kernel unavailable on this machine")
        self._shape: tuple[int, ...] | None = None
        self.host_reads = 0
        self.counts: tuple[int, int] = (0, 0)

    def _prepare(self, b: int, h: int, w: int) -> None:
        if self._shape == (b, h, w, torch.get_num_threads()):
            return
        fb = self.folded
        ho, wo = (h - 1) // fb.stride + 1, (w - 1) // fb.stride + 1
        self.x_buf = torch.zeros(b * h * w + 1, fb.in_channels)
        self.out_buf = torch.zeros(b * ho * wo + 1, fb.out_channels)
        self.pads = conv_pads(self.block.depthwise[0], h, w)  # type: ignore[arg-type]
        self.index = (allocate_index(b, (h, w), fb.stride, pad_before=(self.pads[0], self.pads[2]))
                      if self.block.gated else None)
        self.e_buf = torch.zeros(b * h * w + 1, fb.hidden_channels)
        self.cpu = CpuBlockBuffers.allocate(fb, b, (h, w)) if self._cpp is not None else None
        self._shape = (b, h, w, torch.get_num_threads())

    @torch.no_grad()
    def __call__(self, x: Tensor) -> tuple[Tensor, BlockMask | None]:
        if x.dim() != 4 or x.shape[1] != self.folded.in_channels:
            raise ValueError(f"expected (B, {self.folded.in_channels}, H, W), got {tuple(x.shape)}")
        b, _, h, w = x.shape
        self._prepare(b, h, w)
        fb = self.folded
        ho, wo = (h - 1) // fb.stride + 1, (w - 1) // fb.stride + 1
        self.host_reads = 0
        self.x_buf[:-1].view(b, h, w, -1).copy_(x.permute(0, 2, 3, 1))
        out = self.x_buf if fb.use_residual else self.out_buf
        if self._cpp is not None:
            mask, self.counts, _ = run_block_cpu(
                self._cpp, self.block, fb, self.x_buf, out, b, (h, w), self.cpu,
                _dense_above(self.mode),
            )  # fmt: skip
        else:
            mask = None
            if self.block.gated:
                mask = compute_block_mask(self.block, fb, self.x_buf[:-1], b, (h, w))
            if mask is not None and self.mode == "sparse":
                assert self.index is not None
                build_index(self.index, mask.hard, mask.dilated)
                counts = None
                if self.sync == "exact":
                    c = self.index.counts.tolist()
                    counts = (int(c[0]), int(c[1]))
                    self.host_reads += 1
                torch_ops.sparse_block(fb, self.x_buf, out, self.index, self.e_buf, counts)
                if counts is None:
                    c = self.index.counts.tolist()  # the frame's single read, for diagnostics
                    counts = (int(c[0]), int(c[1]))
                    self.host_reads += 1
                self.counts = counts
            else:
                hard = mask.hard.reshape(-1) if mask is not None else None
                torch_ops.dense_block(fb, self.x_buf[:-1], b, (h, w), hard, out[:-1], self.pads)
        y = out[:-1].view(b, ho, wo, -1).permute(0, 3, 1, 2).clone()
        return y, mask
