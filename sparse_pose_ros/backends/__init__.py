"""Runtimes behind one interface (see :mod:`.base`): torch, onnxruntime, tensorrt, sparse-cpu,
all built from one validated :class:`BackendOptions` (device, input size, mask threshold,
threads, head gating, cache dir) plus each runtime's own keyword options.

Only the interface is imported here; each runtime module is imported on demand by
:func:`create_backend`, so a machine without TensorRT (or onnxruntime) can still use the others.
"""

from .base import (
    BACKEND_NAMES,
    Backend,
    BackendError,
    BackendOptions,
    InferenceResult,
    ModelInfo,
    create_backend,
    joint_confidence,
)

__all__ = [
    "BACKEND_NAMES",
    "Backend",
    "BackendError",
    "BackendOptions",
    "InferenceResult",
    "ModelInfo",
    "create_backend",
    "joint_confidence",
]
