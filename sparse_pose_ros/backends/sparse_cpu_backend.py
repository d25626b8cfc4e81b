"""Sparse CPU backend: the gated backbone by gather-scatter in the compiled CPU kernel, the dense
neck + head compiled too (``sparse.executor.SparsePoseNetwork``).

Why a backend of its own: on CPU this is the path that turns the masks into saved time. ONNX
Runtime runs the masked graph densely (a masked conv costs what a dense one does), and its
``portable_sparse`` graph pays ~20 small ops per gated block; the compiled kernel runs the whole
backbone in one C++ call with BN folded, its own AVX-512 GEMM micro-kernel and index lists built
once per block per frame (docs/sparse.md). Measured against ONNX Runtime dense in
``results/sparse_cpu.json``.

Needs a gated .safetensors checkpoint (the kernel runs PyTorch-held weights) and a C++
compiler on first use (the extension is built once and cached); without either it raises
:class:`BackendError`, so ``create_backend("auto")`` moves on to onnxruntime.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..runtime.geometry import network_geometry
from ..runtime.options import SPARSE_PRECISIONS
from .base import (
    Backend,
    BackendError,
    BackendOptions,
    InferenceResult,
    build_result,
    check_input,
    check_probability,
    resolve_device,
)
from .path_choice import ALWAYS_SPARSE, DENSE, SPARSE, Calibration, PathChooser
from .torch_backend import load_for_inference, region_tensor

LOG = logging.getLogger(__name__)

#: Default of ``SPARSE_POSE_PREWAKE_US``: how long (µs) the kernel's workers, woken when a frame
#: arrives, spin waiting for its backbone (the preprocessing before it takes ~1-6 ms); 0 = no
#: pre-wake (the workers then sleep through camera-paced frames' starts and sit them out).
DEFAULT_PREWAKE_US = 10_000


def prewake_us(env: Mapping[str, str] | None = None) -> int:
    """``SPARSE_POSE_PREWAKE_US`` (a non-negative integer), else :data:`DEFAULT_PREWAKE_US`."""
    raw = (os.environ if env is None else env).get("SPARSE_POSE_PREWAKE_US", "").strip()
    if not raw:
        return DEFAULT_PREWAKE_US
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        LOG.warning("SPARSE_POSE_PREWAKE_US=%r is not a non-negative integer; using %d", raw,
                    DEFAULT_PREWAKE_US)
        return DEFAULT_PREWAKE_US
    return value

#: Per-stage policy (output stride -> crossover density): a gated block runs sparsely when its
#: active fraction is at or below the crossover and masked-dense above it (same result). From
#: the per-stage dense/sparse kernel timings of ``python -m sparse_pose_ros.benchmarks
#: sparse-cpu`` (``policy_crossover`` in results/sparse_cpu.json). Stride 32 (MoveNet's
#: stride-32 stage) has no measurement of its own yet and takes the same crossover; only the
#: strides a backbone has are passed on (:func:`default_policy`).
DEFAULT_POLICY: dict[int, float] = {2: 0.75, 4: 0.75, 8: 0.75, 16: 0.75, 32: 0.75}


def default_policy(net: Any) -> dict[int, float]:
    """:data:`DEFAULT_POLICY` restricted to the strides of ``net``'s blocks (the executor
    rejects a policy that names a stride the backbone does not have)."""
    from ..sparse.executor import block_stride_map

    strides = set(block_stride_map(net.backbone))
    return {s: v for s, v in DEFAULT_POLICY.items() if s in strides}


class SparseCpuBackend(Backend):
    """Gated checkpoint on CPU: compiled gather-scatter backbone + compiled neck/head.

    Args:
        model_file_path: gated .safetensors checkpoint.
        options: :class:`~sparse_pose_ros.runtime.options.BackendOptions`; ``shared`` keyword
            arguments change its fields. Here: ``device`` "auto" or "cpu" (the kernel is
            CPU-only; "auto" must resolve to the CPU); ``input_size`` a multiple of the
            checkpoint's output stride (default: its own); ``cache_dir`` the ONNX export cache
            of the adaptive dense path; ``head_gating`` on the compiled head (which skips the
            rest) and on the adaptive dense path alike, so both paths keep giving one result;
            ``num_threads`` as follows.
        num_threads: threads of the compiled kernel's worker pool (default 1). One thread by
            default because the node shares the cores (ROS executor, image conversion, other
            nodes): under load one thread was still the faster choice (whole network 4.30 vs
            4.62 ms back to back, 7.27 vs 9.07 ms camera-paced; results/
            paced_cpu_loaded_*.json), and camera-paced frames on idle cores run on the calling
            thread anyway unless ``SPARSE_POSE_SPIN_US`` keeps the workers spinning
            (docs/sparse.md). On a dedicated machine use 2 (0.66x ORT dense back to back).
        policy: per-stage policy (see :class:`~sparse_pose_ros.sparse.executor.SparseBackbone`);
            default :data:`DEFAULT_POLICY`.
        head: "auto" / "cpp" / "ort" / "torch": where the dense neck + head run (auto: the
            compiled kernel for the factorized head, see ``SparsePoseNetwork``).
        adaptive: also load the checkpoint's ``portable`` graph in ONNX Runtime (masked dense:
            same outputs, cost independent of the masks) and run each frame on whichever is
            faster at the current executed-MAC fraction (see :meth:`calibrate`). The masks of
            a trained model decide whether gather-scatter pays: the same architecture ran at
            0.19 of the backbone MACs with one checkpoint and 0.55 with the next, where sparse
            execution loses to ORT dense (results/sparse_cpu.json).
        probe_every: adaptive mode re-times the path not in use on one frame in this many
            (:class:`~.path_choice.PathChooser`), so the choice follows live timings.
        kernel_precision: "f32" (default), "bf16": the kernel's expand / project GEMMs and
            the 1x1 after the last block in bf16 (bf16-rounded inputs, f32 sums: AMX tiles or
            the AVX512-BF16 dot product; the rest f32; ``SparseBackbone``'s ``precision``),
            refused where the CPU has neither; or "auto": bf16 where it was measured faster
            than f32 (AMX; AVX512-BF16 on AMD: ``executor.bf16_preferred``), else f32. The
            adaptive dense path stays f32.
            (Not ``precision``: ``auto`` hands OpenVINO's ``precision`` to whichever backend
            takes one.)
    """

    name = "sparse-cpu"

    def __init__(
        self,
        model_file_path: str,
        options: BackendOptions | None = None,
        *,
        policy: str | float | Mapping[int, str | float] | None = None,
        head: str = "auto",
        adaptive: bool = True,
        probe_every: int = 30,
        kernel_precision: str = "f32",
        **shared: Any,
    ) -> None:
        from ..sparse.cpu_kernel import load_cpu_kernel
        from ..sparse.executor import SparsePoseNetwork, bf16_available, bf16_preferred

        if kernel_precision not in SPARSE_PRECISIONS:
            raise ValueError(f"kernel_precision must be one of {SPARSE_PRECISIONS}, got "
                             f"{kernel_precision!r}")  # fmt: skip

        opts = BackendOptions.build(options, **shared)
        path = str(model_file_path)
        if Path(path).suffix != ".safetensors":
            raise BackendError(f"sparse-cpu needs a .safetensors checkpoint, got {path}")
        dev = resolve_device(opts.device)
        if dev != "cpu":
            raise BackendError(f"sparse-cpu runs on the CPU only, device {dev!r} requested "
                               f"for {path}")  # fmt: skip
        threads = 1 if opts.num_threads is None else opts.num_threads
        net, info = load_for_inference(path, opts, "cpu")
        if not net.gated_blocks():
            raise BackendError(f"{path} is a dense model: sparse-cpu has nothing to skip "
                               "(use onnxruntime)")  # fmt: skip
        if load_cpu_kernel() is None:
            raise BackendError(f"the sparse CPU kernel could not be built here (no C++ "
                               f"compiler?), cannot run {path}")  # fmt: skip
        precision = kernel_precision
        if precision == "auto":
            precision = "bf16" if bf16_preferred() else "f32"
        elif precision == "bf16" and not bf16_available():
            raise BackendError(f"sparse-cpu kernel_precision bf16 needs a CPU with AMX or "
                               f"AVX512-BF16, cannot run {path} so")  # fmt: skip
        size = info.input_size
        #: what the kernel's GEMMs run in ("f32" or "bf16"), after "auto" is resolved
        self.precision = precision
        self.backend_options = opts
        self.head_gating = bool(net.cfg.head_gating)
        self.probe_every = int(probe_every)
        self.net = net
        self.policy = default_policy(net) if policy is None else policy
        self.threads = threads
        self.runner = SparsePoseNetwork(net, kernel="cpp", policy=self.policy, head=head,
                                        threads=threads, precision=precision)  # fmt: skip
        self._region: torch.Tensor | None = None
        self._prewake_us = prewake_us()
        self.info = info
        self.geometry = network_geometry(net, size)
        self._dense: Backend | None = None
        if adaptive and net.backbone.locator is not None:
            # the portable graph's gated blocks run mask units, not the locator: its "same
            # result" would be another result
            LOG.info("sparse-cpu: masks from the person locator; no ONNX Runtime dense path")
        elif adaptive:
            try:
                from .onnxruntime_backend import OnnxRuntimeBackend

                self._dense = OnnxRuntimeBackend(
                    path, opts, device="cpu", input_size=size, num_threads=threads,
                    head_gating=self.head_gating,
                )  # fmt: skip
            except (BackendError, ImportError, OSError) as exc:
                LOG.warning("sparse-cpu: no ONNX Runtime dense path (%s); always sparse", exc)
        #: per-frame path choice from the start-up calibration and live timings (None: no
        #: dense path, always sparse)
        self._chooser: PathChooser | None = None
        self.last_path = "sparse"
        self._fraction: float | None = None  # moving average of the executed-MAC fraction
        self.mask_threshold = opts.mask_threshold
        if self._dense is not None:
            self.calibrate()
        self.set_mask_threshold(opts.mask_threshold)
        LOG.info("sparse-cpu backend: %s, input %d, %d gated blocks, %d threads, %s, head in "
                 "%s", path, size, len(self.geometry.gated_indices), threads, precision,
                 self.runner.head)  # fmt: skip

    @property
    def crossover(self) -> float:
        """Executed-MAC fraction at and below which frames run sparse (ALWAYS_SPARSE = 2.0 at
        most: a fully active gated model executes slightly more than f = 1)."""
        return ALWAYS_SPARSE if self._chooser is None else self._chooser.crossover

    @crossover.setter
    def crossover(self, value: float) -> None:
        """Decide by ``value`` from now on, forgetting live timings (until new ones arrive)."""
        if self._chooser is not None:
            self._chooser.reset(value)

    def calibrate(self, reps: int = 7) -> float:
        """Measure the crossover executed-MAC fraction between the two paths, here and now.

        The dense path's time does not depend on the masks; the sparse path's is close to
        linear in the executed-MAC fraction f. Both ends of the line are measured on a blank
        frame with the threshold at its extremes (all positions on / all off), so no scene is
        needed; the crossover is where the line meets the dense time. This is only the prior
        of :class:`~.path_choice.PathChooser`: live frame timings correct it while running (a
        calibration under load once chose "dense always").
        """
        if self._dense is None:
            return self.crossover
        s = self.info.input_size
        blank = np.zeros((1, 3, s, s), np.float32)

        def median_ms(fn: Any) -> tuple[float, Any]:
            fn()
            times, out = [], None
            for _ in range(reps):
                t0 = time.perf_counter()
                out = fn()
                times.append(time.perf_counter() - t0)
            return float(np.median(times)) * 1e3, out

        t_dense, _ = median_ms(lambda: self._dense.infer(blank))  # type: ignore[union-attr]
        ends = []
        for p in (1e-6, 1.0 - 1e-6):  # every position active / none
            self.net.set_mask_threshold(p)
            t, res = median_ms(lambda: self._infer_sparse(blank))
            ends.append((res.density, t))
        self.net.set_mask_threshold(self.mask_threshold)
        (f_hi, t_hi), (f_lo, t_lo) = ends
        self._chooser = PathChooser(Calibration(t_dense, f_lo, t_lo, f_hi, t_hi),
                                    probe_every=self.probe_every)
        LOG.info("sparse-cpu: dense ORT %.3f ms, sparse %.3f ms at f=%.2f and %.3f ms at f=%.2f "
                 "-> sparse below executed-MAC fraction %.2f", t_dense, t_lo, f_lo, t_hi, f_hi,
                 self.crossover)  # fmt: skip
        return self.crossover

    def set_mask_threshold(self, probability: float) -> None:
        p = check_probability(probability)
        self.net.set_mask_threshold(p)
        if self._dense is not None:
            self._dense.set_mask_threshold(p)
        self.mask_threshold = p

    def infer(self, tensor: np.ndarray) -> InferenceResult:
        """One frame on the path predicted faster from the recent executed-MAC fraction (both
        paths give the masked-dense result; the fraction is tracked on either)."""
        x = check_input(tensor, self.info.input_size)
        f = self._fraction
        chooser = self._chooser
        dense = self._dense
        # a region is executed by the sparse path only (the dense graph runs its own masks)
        path = (SPARSE if chooser is None or dense is None or self._region is not None
                else chooser.choose(f))  # fmt: skip
        t0 = time.perf_counter()
        res = dense.infer(x) if path == DENSE and dense is not None else self._infer_sparse(x)
        if chooser is not None:
            chooser.observe(path, res.density, (time.perf_counter() - t0) * 1e3)
        self.last_path = path
        self._fraction = res.density if f is None else 0.7 * f + 0.3 * res.density
        return res

    def diagnostics(self) -> dict[str, object]:
        """The path choice: the path frames run on now (probes aside), live and start-up
        crossover, recent times per path, probes."""
        if self._chooser is None:
            return {"path": "sparse (no dense path)"}
        return {"path": self._chooser.preferred(self._fraction), **self._chooser.summary()}

    def prewake(self) -> None:
        """Wake the kernel's workers while the frame is preprocessed (:func:`prewake_us`; see
        ``SparseBackbone.prewake``)."""
        self.runner.backbone.prewake(self._prewake_us)

    def set_region(self, cells: np.ndarray | None) -> bool:
        """The gated blocks execute only ``cells`` (see :meth:`Backend.set_region`) on the
        sparse path; the adaptive dense path runs everything anyway."""
        self._region = region_tensor(cells, self.info.input_size)
        return True

    def _infer_sparse(self, x: np.ndarray) -> InferenceResult:
        with torch.inference_mode():
            out = self.runner(torch.from_numpy(x), self._region)
            heatmaps = out.heatmaps[0].numpy().copy()
            joints = out.joints[0].numpy().copy()
            masks = [m.hard[0, 0].numpy() for m in out.masks if m is not None]
            # the compiled kernel counted every gated block's active and dilated cells
            counts = [c for c in self.runner.backbone.executed_counts() if c is not None]
            # and the compiled window head the joints' confidence with their readout
            conf = None if out.confidence is None else out.confidence[0].numpy()
        return build_result(joints, heatmaps, masks, self.geometry, counts, conf)

    def close(self) -> None:
        if self._dense is not None:
            self._dense.close()
        self.runner = None  # type: ignore[assignment]

    @property
    def options(self) -> dict[str, Any]:
        return {"device": "cpu", "mask_threshold": self.mask_threshold, "threads": self.threads,
                "policy": self.policy, "head": self.runner.head,
                "adaptive": self._dense is not None, "crossover": self.crossover}  # fmt: skip
