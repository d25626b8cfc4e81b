"""PyTorch backend: the reference every other runtime is compared with.

Runs the masked-dense network exactly as trained (CPU or CUDA). It is the slowest CPU option
(see DESIGN.md §2: ONNX Runtime is the dense bar) but needs nothing beyond the training stack.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import skeleton
from ..export.export_cache import apply_head_gating
from ..model.checkpoint import CheckpointError, load_checkpoint
from ..model.network import PoseNetwork
from ..runtime.geometry import network_geometry
from .base import (
    Backend,
    BackendError,
    InferenceResult,
    ModelInfo,
    build_result,
    check_input,
    check_probability,
    resolve_device,
)

LOG = logging.getLogger(__name__)


def model_info_from_network(
    net: PoseNetwork, model_hash: str, source: str, input_size: int
) -> ModelInfo:
    """ModelInfo of a loaded network (constants come from its stored config, never repeated)."""
    cfg = net.cfg
    return ModelInfo(
        model_hash=model_hash,
        input_size=int(input_size),
        joint_names=tuple(skeleton.JOINT_NAMES),
        mean=tuple(float(v) for v in cfg.input_mean),  # type: ignore[arg-type]
        std=tuple(float(v) for v in cfg.input_std),  # type: ignore[arg-type]
        depth_range_mm=float(cfg.depth_range_mm),
        gated=bool(net.gated_blocks()),
        source=source,
    )


class TorchBackend(Backend):
    """PoseNetwork from a .safetensors checkpoint under ``torch.inference_mode``.

    Args:
        model_file_path: .safetensors checkpoint written by ``model.checkpoint.save_checkpoint``.
        device: "auto", "cpu", "cuda" or "cuda:N".
        input_size: square input side, a multiple of the output stride (16, or 32 for
            MoveNet's architecture); default: the checkpoint's.
        mask_threshold: initial mask probability threshold (default 0.5, the training boundary).
        num_threads: torch intra-op threads on CPU (default: torch's own choice).
        head_gating: heads only inside the last mask's region (``docs/network.md`` §5b);
            None keeps the checkpoint's setting, a dense model ignores it.
    """

    name = "torch"

    def __init__(
        self,
        model_file_path: str,
        device: str = "auto",
        input_size: int | None = None,
        mask_threshold: float = 0.5,
        num_threads: int | None = None,
        head_gating: bool | None = None,
    ) -> None:
        path = str(model_file_path)
        if Path(path).suffix != ".safetensors":
            raise BackendError(f"torch backend needs a .safetensors checkpoint, got {path}")
        dev = resolve_device(device)
        if dev.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"device {dev!r} requested for {path} but torch has no CUDA")
        if num_threads is not None:
            if num_threads < 1:
                raise ValueError(f"num_threads must be >= 1, got {num_threads}")
            torch.set_num_threads(int(num_threads))
        try:
            net, meta = load_checkpoint(path, map_location=dev)
        except CheckpointError as exc:
            raise BackendError(str(exc)) from exc
        size = int(input_size) if input_size is not None else int(net.cfg.input_size)
        stride = net.cfg.output_stride
        if size <= 0 or size % stride:
            raise ValueError(f"input_size must be a positive multiple of {stride} (the "
                             f"network's output stride), got {size}")
        apply_head_gating(net, head_gating)
        self.net = net
        self.device = torch.device(dev)
        self.info = model_info_from_network(net, str(meta["model_hash"]), path, size)
        self.geometry = network_geometry(net, size)
        self.set_mask_threshold(mask_threshold)
        LOG.info(
            "torch backend: %s on %s, input %d, %d gated blocks",
            path,
            dev,
            size,
            len(self.geometry.gated_indices),
        )

    def set_mask_threshold(self, probability: float) -> None:
        p = check_probability(probability)
        if self.net.gated_blocks():
            self.net.set_mask_threshold(p)
        self.mask_threshold = p

    def infer(self, tensor: np.ndarray) -> InferenceResult:
        x = check_input(tensor, self.info.input_size)
        with torch.inference_mode():
            out = self.net(torch.from_numpy(x).to(self.device))
            heatmaps = out.heatmaps[0].float().cpu().numpy()
            joints = out.joints[0].float().cpu().numpy()
            masks = [m.hard[0, 0].cpu().numpy() for m in out.masks if m is not None]
        return build_result(joints, heatmaps, masks, self.geometry)

    def close(self) -> None:
        self.net = self.net.cpu()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    @property
    def options(self) -> dict[str, Any]:
        return {"device": str(self.device), "mask_threshold": self.mask_threshold}
