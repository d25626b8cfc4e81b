"""ONNX Runtime backend: the fastest dense-capable CPU runtime here (DESIGN.md §2).

Takes an exported *portable* .onnx directly, or a .safetensors checkpoint, which it exports
once into a cache (``cache_dir`` option, else ``$SPARSE_POSE_CACHE``, else
``~/.cache/sparse_pose_ros``) keyed by model hash + input size + graph format, so the second
start is instant and a changed checkpoint never reuses a stale graph. Everything it needs to
interpret outputs (input size, joint order, normalisation, block geometry) is read back from
the ONNX metadata.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..runtime.options import check_threads
from .base import (
    BackendError,
    BackendOptions,
    resolve_device,
)
from .portable_graph import (  # noqa: F401  (re-exported: the cache's public name)
    RUNNABLE_GRAPHS,
    PortableGraphBackend,
    default_cache_dir,
    resolve_portable_graph,
)

LOG = logging.getLogger(__name__)

try:
    import onnxruntime as ort
except ImportError as exc:  # surfaced by create_backend as a BackendError with this reason
    raise ImportError(f"onnxruntime is not installed: {exc}") from exc


def select_providers(device: str) -> list[str]:
    """Execution providers for ``device`` among those this onnxruntime build has."""
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    wanted = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
    if not wanted:
        LOG.warning(
            "onnxruntime: device %s requested but this build has only %s; using CPU",
            device,
            available,
        )
    return [*wanted, "CPUExecutionProvider"]


class OnnxRuntimeBackend(PortableGraphBackend):
    """A portable ONNX graph in an onnxruntime InferenceSession.

    Args:
        model_file_path: portable .onnx written by ``sparse_pose_ros.export`` or a .safetensors
            checkpoint (exported into the cache on first use).
        options: :class:`~sparse_pose_ros.runtime.options.BackendOptions`; ``shared`` keyword
            arguments change its fields. Here: ``device`` "auto", "cpu", "cuda" or "cuda:N"
            (CUDA/TensorRT EPs when this onnxruntime build has them, CPU otherwise);
            ``input_size`` the export size for a checkpoint (default: its own), which must
            match the file for an .onnx; ``num_threads`` CPU threads per operator (default:
            onnxruntime's choice); ``cache_dir`` where checkpoint exports are cached (default
            :func:`default_cache_dir`); ``head_gating`` for a checkpoint (an .onnx file carries
            its own, fixed at export); ``spin_wait`` ORT's ``allow_spinning`` (default off).
        intra_op_threads: ONNX Runtime's own name for ``num_threads``; wins when both are given.
        graph: kind exported for a checkpoint: "portable" (masked dense) or "portable_sparse"
            (gather-scatter in standard ops; see ``export.sparse_graph``).
    """

    name = "onnxruntime"

    def __init__(
        self,
        model_file_path: str,
        options: BackendOptions | None = None,
        *,
        intra_op_threads: int | None = None,
        graph: str = "portable",
        **shared: Any,
    ) -> None:
        opts = BackendOptions.build(options, **shared)
        dev = resolve_device(opts.device)
        graph_file = resolve_portable_graph(model_file_path, opts, graph, self.name)
        onnx_path = graph_file.onnx_path
        intra_op_threads = check_threads(intra_op_threads, "intra_op_threads")
        if intra_op_threads is None:
            intra_op_threads = opts.num_threads  # the backend-independent name
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads is not None:
            session_options.intra_op_num_threads = int(intra_op_threads)
        session_options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if opts.spin_wait else "0"
        )
        providers = select_providers(dev)
        try:
            self.session = ort.InferenceSession(str(onnx_path), session_options,
                                                providers=providers)  # fmt: skip
        except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
            raise BackendError(f"onnxruntime cannot load {onnx_path}: {exc}") from exc
        self._adopt(graph_file, opts)
        LOG.info(
            "onnxruntime backend: %s (%s) on %s, input %d",
            onnx_path,
            model_file_path,
            self.session.get_providers(),
            self.info.input_size,
        )

    def _run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self._outputs, feed)

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
