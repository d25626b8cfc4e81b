"""Runtimes behind one interface (see :mod:`.base`): torch, onnxruntime, tensorrt.

Only the interface is imported here; each runtime module is imported on demand by
:func:`create_backend`, so a machine without TensorRT (or onnxruntime) can still use the others.
"""

from .base import (
    BACKEND_NAMES,
    Backend,
    BackendError,
    InferenceResult,
    ModelInfo,
    create_backend,
    joint_confidence,
)

__all__ = [
    "BACKEND_NAMES",
    "Backend",
    "BackendError",
    "InferenceResult",
    "ModelInfo",
    "create_backend",
    "joint_confidence",
]
