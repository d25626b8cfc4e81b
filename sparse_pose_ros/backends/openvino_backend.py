"""OpenVINO backend: the same portable ONNX graph as onnxruntime, compiled by Intel's CPU plugin.

Why a second dense runtime: on CPUs with AMX or AVX512-BF16 (Sapphire Rapids and later, this
machine included) OpenVINO runs the convolutions in bfloat16, which onnxruntime's CPU provider
does not; the rules say timing claims are made against the *fastest* dense runtime on the
machine, and a user wants the fastest path that keeps the accuracy. ``precision`` is explicit
because bf16 changes the numbers (about 3 significant digits per activation): "f32" matches
onnxruntime to ~1e-4, "bf16" is faster where the CPU has it and is evaluated on the real
held-out frames before anything defaults to it (README, docs/benchmarks.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..provenance import cpu_flags, cpu_vendor
from ..runtime.options import OPENVINO_PRECISIONS, check_threads
from .base import (
    BackendError,
    BackendOptions,
    resolve_device,
)
from .portable_graph import PortableGraphBackend, resolve_portable_graph

LOG = logging.getLogger(__name__)

try:
    import openvino as ov
except ImportError as exc:  # surfaced by create_backend as a BackendError with this reason
    raise ImportError(f"openvino is not installed: {exc}") from exc

#: Inference precisions the backend accepts (the rule lives with the other options' rules).
PRECISIONS: tuple[str, ...] = OPENVINO_PRECISIONS


def cpu_supports_bf16() -> bool:
    """Whether OpenVINO's CPU plugin reports native bf16 (so "bf16" is not emulated)."""
    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "BF16" in caps


def bf16_is_fast(flags: Sequence[str] | None = None, vendor: str | None = None) -> bool:
    """Whether bf16 runs faster than f32 here: AMX tiles, or AVX512-BF16 on an AMD CPU (the rule
    of the sparse kernel's ``bf16_auto``). Why not every CPU OpenVINO calls native: on a Xeon
    with AVX512-BF16 but no AMX (a VM that hides it) the bf16 strips took 1.26-1.50x the f32
    strips' network time and scored lower (PCK@0.1 0.901 / 70 mm against 0.910 / 68 mm,
    ``results/real_frames_xeon_noamx_tracking_precision``), as the AVX512-BF16 dot product took
    1.2-2.0x the f32 GEMM's time there and 0.49-0.57x on an AMD EPYC
    (``results/dpbf16_gemm_microbench*.json``; OpenVINO's own bf16 on AMD is not measured)."""
    flags = set(cpu_flags() if flags is None else flags)
    vendor = cpu_vendor() if vendor is None else vendor
    return "amx_bf16" in flags or ("avx512_bf16" in flags and vendor == "AuthenticAMD")


def session_precision(precision: str, strip: bool, native_bf16: bool) -> str:
    """The precision one session compiles to: ``precision`` itself, except "bf16_strips", which
    is "bf16" for a strip session on a CPU with native, fast bf16 (:func:`bf16_is_fast`) and
    "f32" otherwise (emulated bf16 is slower than f32, and bf16 square inputs lose accuracy:
    ``runtime.options``)."""
    if precision != "bf16_strips":
        return precision
    return "bf16" if strip and native_bf16 else "f32"


class OpenVinoBackend(PortableGraphBackend):
    """A portable ONNX graph compiled by OpenVINO's CPU plugin, latency mode, one stream.

    Args:
        model_file_path: portable .onnx or a .safetensors checkpoint (exported into the same
            cache onnxruntime uses).
        options: :class:`~sparse_pose_ros.runtime.options.BackendOptions`; here ``device``
            must resolve to "cpu" (OpenVINO's GPU plugin is Intel graphics, not CUDA);
            ``num_threads`` its ``INFERENCE_NUM_THREADS`` (default: OpenVINO's choice).
        precision: "f32" (default; onnxruntime's numbers), "bf16", "f16", "auto" or
            "bf16_strips" (bf16 if this session is a strip and the CPU has native bf16, else
            f32: :func:`session_precision`).
        graph: "portable" or "portable_sparse", as for onnxruntime.
    """

    name = "openvino"

    def __init__(
        self,
        model_file_path: str,
        options: BackendOptions | None = None,
        *,
        precision: str = "f32",
        graph: str = "portable",
        **shared: Any,
    ) -> None:
        opts = BackendOptions.build(options, **shared)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        dev = resolve_device(opts.device)
        if dev != "cpu":
            raise BackendError(f"openvino runs on the CPU here, not {dev!r}: use tensorrt")
        graph_file = resolve_portable_graph(model_file_path, opts, graph, self.name)
        threads = check_threads(opts.num_threads, "num_threads")
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        width = graph_file.info.input_width  # 0: a square input
        strip = bool(width) and width < graph_file.info.input_size
        precision = session_precision(precision, strip, precision == "bf16_strips"
                                      and cpu_supports_bf16() and bf16_is_fast())  # fmt: skip
        if precision != "auto":
            config["INFERENCE_PRECISION_HINT"] = precision
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        core = ov.Core()
        try:
            compiled = core.compile_model(str(graph_file.onnx_path), "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise BackendError(f"openvino cannot compile {graph_file.onnx_path}: {exc}") from exc
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.precision = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        self._adopt(graph_file, opts)
        LOG.info("openvino backend: %s (%s), precision %s, input %d", self.onnx_path,
                 model_file_path, self.precision, self.info.input_size)  # fmt: skip

    def _run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        out = self.request.infer(feed)
        return [out[name] for name in self._outputs]

    def close(self) -> None:
        self.request = None  # type: ignore[assignment]
        self.compiled = None  # type: ignore[assignment]
