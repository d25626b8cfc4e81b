"""The facts a model file states, and the error a runtime raises when it cannot use one.

Below both ``export`` (which writes these facts into ONNX metadata and reads them back) and
``backends`` (which hand them to callers), so neither imports the other for them.
"""

from __future__ import annotations

from dataclasses import dataclass


class BackendError(RuntimeError):
    """A model file is missing, corrupt or unusable by the requested runtime (names the path)."""


@dataclass(frozen=True)
class ModelInfo:
    """Facts a caller needs to prepare inputs and interpret outputs, read from the model file."""

    model_hash: str
    input_size: int
    joint_names: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    depth_range_mm: float
    gated: bool
    source: str
