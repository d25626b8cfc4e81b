"""PyTorch backend: the reference every other runtime is compared with.

Runs the masked-dense network exactly as trained (CPU or CUDA). It is the slowest CPU option
(see DESIGN.md §2: ONNX Runtime is the dense bar) but needs nothing beyond the training stack.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import skeleton
from ..export.export_cache import apply_head_gating
from ..model.checkpoint import CheckpointError, load_checkpoint
from ..model.network import PoseNetwork
from ..runtime.geometry import network_geometry
from ..runtime.options import check_input_size, check_input_width, strip_width
from .base import (
    Backend,
    BackendError,
    BackendOptions,
    InferenceResult,
    ModelInfo,
    build_result,
    check_input,
    check_probability,
    resolve_device,
)

LOG = logging.getLogger(__name__)


def region_tensor(cells: np.ndarray | None, input_size: int,
                  device: torch.device | str = "cpu") -> torch.Tensor | None:
    """(S/16, S/16) 0/1 cells → the (1, 1, S/16, S/16) tensor networks take; ValueError on any
    other shape (a region for another input size would mask the wrong places)."""
    if cells is None:
        return None
    arr = np.asarray(cells, dtype=np.float32)
    n = input_size // 16
    if arr.shape != (n, n) or not np.isfinite(arr).all():
        raise ValueError(f"region must be ({n}, {n}) finite cells for a {input_size} px input, "
                         f"got {arr.shape}")
    return torch.from_numpy((arr > 0).astype(np.float32))[None, None].to(device)


def model_info_from_network(
    net: PoseNetwork, model_hash: str, source: str, input_size: int,
    training: Mapping[str, Any] | None = None, input_width: int = 0,
) -> ModelInfo:  # fmt: skip
    """ModelInfo of a loaded network (constants come from its stored config, never repeated);
    ``training``: the checkpoint's training record (``load_checkpoint``'s ``meta``);
    ``input_width``: a strip's width (0 = square)."""
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
        output_stride=int(cfg.output_stride),
        training=training,
        midpoint_torso=bool(cfg.midpoint_torso),
        bone_lengths_m=tuple(v / 1000.0 for v in cfg.bone_lengths_mm),
        input_width=strip_width(input_size, input_width),
        person_prior=bool(cfg.person_prior),
    )


def checked_strip_width(net: PoseNetwork, size: int, width: int | None, source: str) -> int:
    """The strip width a backend of ``net`` at ``size`` px takes (0 = square); BackendError
    when ``net`` cannot take one: a gated network's masks, regions and locator are square."""
    width = strip_width(size, width)
    if not width:
        return 0
    check_input_width(width, size, net.cfg.output_stride)
    if net.gated_blocks():
        raise BackendError(f"{source} is a gated model: input_width (a strip of the square "
                           "input) is for dense models only")
    return int(width)


def load_for_inference(
    path: str, opts: BackendOptions, map_location: str
) -> tuple[PoseNetwork, ModelInfo]:
    """A checkpoint as the torch-held backends run it: loaded (BackendError on a bad file),
    the input size checked against its output stride, head gating applied per ``opts``."""
    try:
        net, meta = load_checkpoint(path, map_location=map_location)
    except CheckpointError as exc:
        raise BackendError(str(exc)) from exc
    size = opts.input_size if opts.input_size is not None else int(net.cfg.input_size)
    check_input_size(size, net.cfg.output_stride)
    width = checked_strip_width(net, size, opts.input_width, path)
    apply_head_gating(net, opts.head_gating)
    info = model_info_from_network(net, str(meta["model_hash"]), path, size, meta.get("meta"),
                                   width)
    return net, info


class TorchBackend(Backend):
    """PoseNetwork from a .safetensors checkpoint under ``torch.inference_mode``.

    Args:
        model_file_path: .safetensors checkpoint written by ``model.checkpoint.save_checkpoint``.
        options: :class:`~sparse_pose_ros.runtime.options.BackendOptions`; ``shared`` keyword
            arguments change its fields. Here: ``device`` "auto", "cpu", "cuda" or "cuda:N";
            ``input_size`` a multiple of the checkpoint's output stride (default: its own);
            ``num_threads`` torch intra-op threads on CPU (default: torch's own choice);
            ``head_gating`` on a gated checkpoint (None keeps its setting); ``cache_dir`` is
            not used (nothing to cache).
    """

    name = "torch"

    def __init__(
        self, model_file_path: str, options: BackendOptions | None = None, **shared: Any
    ) -> None:
        opts = BackendOptions.build(options, **shared)
        path = str(model_file_path)
        if Path(path).suffix != ".safetensors":
            raise BackendError(f"torch backend needs a .safetensors checkpoint, got {path}")
        dev = resolve_device(opts.device)
        if dev.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"device {dev!r} requested for {path} but torch has no CUDA")
        if opts.num_threads is not None:
            torch.set_num_threads(opts.num_threads)
        net, info = load_for_inference(path, opts, dev)
        self.backend_options = opts
        self.net = net
        self.device = torch.device(dev)
        self._region: torch.Tensor | None = None
        self.info = info
        self.geometry = network_geometry(net, info.input_size, info.input_width)
        self.set_mask_threshold(opts.mask_threshold)
        LOG.info("torch backend: %s on %s, input %dx%d, %d gated blocks", path, dev,
                 *info.input_hw, len(self.geometry.gated_indices))  # fmt: skip

    def set_mask_threshold(self, probability: float) -> None:
        p = check_probability(probability)
        if self.net.gated_blocks():
            self.net.set_mask_threshold(p)
        self.mask_threshold = p

    def infer(self, tensor: np.ndarray) -> InferenceResult:
        x = check_input(tensor, self.info.input_size, self.info.input_width)
        with torch.inference_mode():
            out = self.net(torch.from_numpy(x).to(self.device), region=self._region)
            heatmaps = out.heatmaps[0].float().cpu().numpy()
            joints = out.joints[0].float().cpu().numpy()
            masks = [m.hard[0, 0].cpu().numpy() for m in out.masks if m is not None]
        return build_result(joints, heatmaps, masks, self.geometry)

    def set_region(self, cells: np.ndarray | None) -> bool:
        """Gated networks execute only ``cells`` (see :meth:`Backend.set_region`)."""
        if not self.net.gated_blocks():
            return False
        self._region = region_tensor(cells, self.info.input_size, self.device)
        return True

    def close(self) -> None:
        self.net = self.net.cpu()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    @property
    def options(self) -> dict[str, Any]:
        return {"device": str(self.device), "mask_threshold": self.mask_threshold}
