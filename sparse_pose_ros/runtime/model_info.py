"""The facts a model file states, and the error a runtime raises when it cannot use one.

Below both ``export`` (which writes these facts into ONNX metadata and reads them back) and
``backends`` (which hand them to callers), so neither imports the other for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .options import INPUT_SIZE_MULTIPLE


class BackendError(RuntimeError):
    """A model file is missing, corrupt or unusable by the requested runtime (names the path)."""


@dataclass(frozen=True)
class ModelInfo:
    """Facts a caller needs to prepare inputs and interpret outputs, read from the model file.

    Attributes:
        output_stride: the backbone's output stride; an input size must be a multiple of it
            (``runtime.options.check_input_size``).
        training: the checkpoint's training record (the ``meta`` that ``save_checkpoint``
            stored: command, data, metrics), read by the backend with the model; None when the
            file carries none to read (an exported .onnx keeps only the network: the record
            stays with its checkpoint). See :attr:`trained`.
        midpoint_torso: the pelvis, thorax and spine the model outputs are mid-points of hips /
            shoulders / those two (``NetworkConfig.midpoint_torso``): what "pelvis" means in
            the published skeleton, reported in the node's diagnostics.
        bone_lengths_m: the reference bone lengths (m, ``skeleton.BONES`` order) of the
            skeleton the model outputs, which the root-depth fit scales it to
            (``NetworkConfig.bone_lengths_mm``); empty = the fit's Human3.6M default.
        person_prior: with several people in view the model reads one person's joints, the one
            MoveNet's centre heads choose (``NetworkConfig.person_prior``): reported in the
            node's diagnostics, because it decides whose skeleton ``/pose3d`` carries.
        input_width: the input's width when it is not square (a tracking crop's central
            strip, ``pipeline.preprocess.Letterbox.input_width``); 0 = square, ``input_size``
            wide. The joints such a model returns are in the frame of the ``input_size``
            square the strip is the middle of (``model.heads.strip_to_square``).
    """

    model_hash: str
    input_size: int
    joint_names: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    depth_range_mm: float
    gated: bool
    source: str
    output_stride: int = INPUT_SIZE_MULTIPLE
    training: Mapping[str, Any] | None = field(default=None, compare=False)
    midpoint_torso: bool = False
    bone_lengths_m: tuple[float, ...] = ()
    input_width: int = 0
    person_prior: bool = False

    @property
    def input_hw(self) -> tuple[int, int]:
        """(height, width) of the input tensor the model takes."""
        return self.input_size, self.input_width or self.input_size

    @property
    def trained(self) -> bool:
        """False when the checkpoint's training record is empty or says ``untrained`` (the
        network runs, but its poses mean nothing); True otherwise, also when the file carries
        no record to inspect (:attr:`training` None)."""
        if self.training is None:
            return True
        return bool(self.training) and not self.training.get("untrained", False)
