"""The one interface every runtime implements, and the postprocessing they all share.

The node and the benchmarks talk only to :class:`Backend`; torch, ONNX Runtime and TensorRT
differ in what they execute, never in what they return. Postprocessing that turns raw network
outputs into an :class:`InferenceResult` (confidence from heatmaps, density from masks) lives
here in numpy so all backends compute it identically.
"""

from __future__ import annotations

import abc
import importlib
import importlib.util
import inspect
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..runtime.geometry import NetworkGeometry, confidence_radius
from ..runtime.model_info import BackendError, ModelInfo
from ..runtime.options import BackendOptions, check_device, check_probability

__all__ = ["BACKEND_NAMES", "Backend", "BackendError", "BackendOptions", "InferenceResult",
           "ModelInfo", "accepted_options", "auto_candidates", "build_result", "check_input",
           "check_probability", "create_backend", "cuda_gpu_present", "joint_confidence",
           "resolve_device", "threshold_logit"]

LOG = logging.getLogger(__name__)

BACKEND_NAMES: tuple[str, ...] = (
    "auto", "torch", "onnxruntime", "openvino", "tensorrt", "sparse-cpu")


@dataclass
class InferenceResult:
    """One frame's output, identical in structure for every backend.

    Attributes:
        joints: (J, 3) float32; x, y in [0, 1] of the network input, z in [-1, 1].
        confidence: (J,) float32 in [0, 1], see :func:`joint_confidence`.
        masks: one (h_b, w_b) uint8 0/1 array per gated block at the block's output resolution.
        density: executed fraction of backbone MACs (1.0 for a dense model).
        block_density: active fraction of each gated block's output positions.
        heatmaps: (J, h, w) float32 logits when the backend has them.
    """

    joints: np.ndarray
    confidence: np.ndarray
    masks: list[np.ndarray]
    density: float
    block_density: list[float]
    heatmaps: np.ndarray | None = None


class Backend(abc.ABC):
    """A loaded model that maps a normalised (1, 3, S, S) float32 tensor to an InferenceResult.

    Every implementation is constructed as ``Cls(model_file_path, options=None, *,
    <its own keyword options>, **shared)``: ``options`` is a :class:`BackendOptions` (device,
    input size, mask threshold, threads, head gating, cache dir) and ``shared`` are changes to
    it by field name (``device="cpu"``), applied by :meth:`BackendOptions.build`.
    """

    name: str = ""
    info: ModelInfo
    #: the validated options this backend was made with
    backend_options: BackendOptions

    @abc.abstractmethod
    def infer(self, tensor: np.ndarray) -> InferenceResult:
        """Run one frame. ValueError if ``tensor`` is not (1, 3, S, S) float32 and finite."""

    def set_region(self, cells: np.ndarray | None) -> bool:
        """Where the next frames' person is expected: (S/16, S/16) 0/1 cells of the input (the
        previous frame's pose, ``pipeline.roi.region_cells``), None = no idea. A backend that
        executes gated blocks sparsely computes them only there until told otherwise; returns
        whether this backend uses it (False here: dense runtimes and ONNX graphs, whose masks
        come from inside the graph, ignore it)."""
        return False

    def prewake(self) -> None:
        """A frame has arrived and will reach :meth:`infer` after its preprocessing: a backend
        with threads that sleep between frames wakes them now (no-op here)."""
        return None

    def warmup(self, iterations: int = 2) -> None:
        """Run a few frames so first-call allocations/tuning do not land on a real frame."""
        if iterations < 0:
            raise ValueError(f"warmup iterations must be >= 0, got {iterations}")
        blank = np.zeros((1, 3, *self.info.input_hw), dtype=np.float32)
        for _ in range(iterations):
            self.infer(blank)

    @abc.abstractmethod
    def set_mask_threshold(self, probability: float) -> None:
        """Execution threshold of every mask unit as a probability in (0, 1); 0.5 = training."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release runtime resources; the backend must not be used afterwards."""

    def diagnostics(self) -> dict[str, object]:
        """Runtime choices worth showing on /diagnostics (e.g. sparse-cpu's path choice);
        read from another thread than ``infer``, so values must be cheap snapshots."""
        return {}

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_input(tensor: np.ndarray, input_size: int, input_width: int = 0) -> np.ndarray:
    """Validate a frame tensor (1, 3, S, W), W = ``input_width`` or S; returns it as a
    C-contiguous float32 array."""
    if not isinstance(tensor, np.ndarray):
        raise ValueError(f"input must be a numpy array, got {type(tensor).__name__}")
    expected = (1, 3, input_size, input_width or input_size)
    if tensor.shape != expected:
        raise ValueError(f"input shape {tensor.shape} != expected {expected} (1, 3, S, W)")
    if tensor.dtype != np.float32:
        raise ValueError(f"input dtype must be float32, got {tensor.dtype}")
    if not np.isfinite(tensor).all():
        raise ValueError("input contains NaN or Inf")
    return np.ascontiguousarray(tensor)


def threshold_logit(probability: float) -> float:
    """Probability -> logit (the mask unit compares its logit against this)."""
    p = check_probability(probability)
    return float(np.log(p / (1.0 - p)))


def joint_confidence(heatmaps: np.ndarray, radius: int | None = None) -> np.ndarray:
    """Peak mass of each joint's 2D heatmap softmax, in [0, 1].

    The maximum single-pixel probability would be tiny for any blob wider than a pixel (a
    σ = 2 px Gaussian peaks at 0.04), so confidence is the softmax mass inside a
    (2r+1)×(2r+1) window around the argmax, with r = max(1, round(max(h, w) / 32)) (2 px on a
    64×64 map; the longer side, so a strip's map has its square's window). A confident,
    well-localised joint approaches 1; a flat map approaches
    (2r+1)² / (h·w).

    Args:
        heatmaps: (J, h, w) logits.
        radius: window half-size in heatmap pixels; default as above.
    """
    hm = np.asarray(heatmaps, dtype=np.float32)
    if hm.ndim != 3:
        raise ValueError(f"heatmaps must be (J, h, w), got shape {hm.shape}")
    j, h, w = hm.shape
    r = confidence_radius(h, w) if radius is None else int(radius)
    # float32 and one exp: this runs on every frame of every backend (float64 took ~0.5 ms of
    # a ~7 ms network on the 17 x 64 x 64 maps); the window's share needs no normalised map
    flat = hm.reshape(j, h * w)
    peak = flat.argmax(axis=1)  # on the logits: exp rounds a near-flat map's to ties
    e = np.exp(flat - flat.max(axis=1, keepdims=True))
    total = e.sum(axis=1, dtype=np.float64)
    e = e.reshape(j, h, w)
    conf = np.empty(j, dtype=np.float32)
    for k in range(j):
        y, x = divmod(int(peak[k]), w)
        conf[k] = e[k, max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1].sum(
            dtype=np.float64) / total[k]
    return np.clip(conf, 0.0, 1.0)


def build_result(
    joints: np.ndarray,
    heatmaps: np.ndarray,
    masks: list[np.ndarray],
    geometry: NetworkGeometry,
    counts: Sequence[tuple[int, int]] | None = None,
    confidence: np.ndarray | None = None,
) -> InferenceResult:
    """Assemble an InferenceResult from one frame's raw outputs (batch dimension removed).

    Args:
        joints: (J, 3) float.
        heatmaps: (J, h, w) logits.
        masks: per gated block, any array squeezable to (h_b, w_b), nonzero = active.
        geometry: the network's block geometry (for density).
        counts: per gated block, (n_active, n_dilated) as the runtime counted them, when it
            did (the compiled sparse kernel): density from these instead of the masks.
        confidence: (J,) :func:`joint_confidence` of ``heatmaps`` where the runtime computed
            it with the readout (the compiled window head), else computed here.
    """
    hard = [
        np.ascontiguousarray((np.asarray(m) != 0).astype(np.uint8).reshape(_hw(m))) for m in masks
    ]
    density, block_density = (geometry.density(hard) if counts is None
                              else geometry.density_from_counts(counts))
    return InferenceResult(
        joints=np.asarray(joints, dtype=np.float32).reshape(-1, 3),
        confidence=(joint_confidence(heatmaps) if confidence is None
                    else np.asarray(confidence, dtype=np.float32).reshape(-1)),
        masks=hard,
        density=float(density),
        block_density=block_density,
        heatmaps=np.asarray(heatmaps, dtype=np.float32),
    )


def _hw(mask: np.ndarray) -> tuple[int, int]:
    shape = tuple(d for d in np.shape(mask)[-2:])
    return (int(shape[0]), int(shape[1]))


def cuda_gpu_present() -> tuple[bool, str]:
    """Whether a CUDA GPU is usable, and how we know (for the auto-selection log)."""
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            return True, f"torch sees CUDA device {torch.cuda.get_device_name(0)!r}"
    for dev in ("/dev/nvidia0", "/dev/nvhost-ctrl-gpu", "/dev/nvgpu/igpu0/ctrl"):
        if os.path.exists(dev):
            return True, f"{dev} exists"
    return False, "no CUDA device (torch.cuda unavailable, no /dev/nvidia0 or Jetson GPU node)"


# name -> (module, class). Every class takes (model_file_path, BackendOptions, **its own options).
_IMPLEMENTATIONS: dict[str, tuple[str, str]] = {
    "torch": ("sparse_pose_ros.backends.torch_backend", "TorchBackend"),
    "onnxruntime": ("sparse_pose_ros.backends.onnxruntime_backend", "OnnxRuntimeBackend"),
    "openvino": ("sparse_pose_ros.backends.openvino_backend", "OpenVinoBackend"),
    "tensorrt": ("sparse_pose_ros.backends.tensorrt_backend", "TensorRTBackend"),
    "sparse-cpu": ("sparse_pose_ros.backends.sparse_cpu_backend", "SparseCpuBackend"),
}
_RUNTIME_PACKAGES: dict[str, str] = {
    "torch": "torch",
    "onnxruntime": "onnxruntime",
    "openvino": "openvino",
    "tensorrt": "tensorrt",
    "sparse-cpu": "torch",
}


def _instantiate(
    name: str, model_file_path: str, options: BackendOptions, specific: dict[str, Any]
) -> Backend:
    module_name, class_name = _IMPLEMENTATIONS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(f"backend {name!r} cannot be imported: {exc}") from exc
    cls = getattr(module, class_name)
    return cls(model_file_path, options, **specific)


def accepted_options(name: str, specific: dict[str, Any]) -> dict[str, Any]:
    """The runtime-specific options ``name``'s class takes, for ``auto``: an option meant for
    one candidate (OpenVINO's ``precision``) must not make another fail to construct. An
    unimportable module passes everything on; instantiating it reports the import error."""
    module_name, class_name = _IMPLEMENTATIONS[name]
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except ImportError:
        return specific
    params = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in specific.items() if k in params}


def resolve_device(device: str) -> str:
    """ "auto" -> "cuda" when a CUDA GPU is present, else "cpu"; others checked and returned."""
    if device == "auto":
        return "cuda" if cuda_gpu_present()[0] else "cpu"
    return check_device(device)


def _gated_checkpoint(path: str | None) -> bool:
    """Whether ``path`` is a .safetensors checkpoint of a gated network (metadata only)."""
    if path is None or Path(path).suffix != ".safetensors":
        return False
    try:
        from ..model.checkpoint import read_metadata

        return bool(read_metadata(path)["config"].get("gated", False))
    except Exception:  # unreadable: the backends themselves report it properly
        return False


def auto_candidates(
    device: str = "auto", model_file_path: str | None = None
) -> list[tuple[str, str]]:
    """Backends ``auto`` will try, in order, each with the reason it is a candidate.

    TensorRT is skipped when ``device`` is "cpu" (an explicit request to stay off the GPU).
    On the CPU a gated .safetensors checkpoint goes to ``sparse-cpu`` first (compiled
    gather-scatter backbone + compiled neck/head; the fastest CPU path measured in
    results/sparse_cpu.json, docs/sparse.md); a dense model or an .onnx file goes to
    openvino (f32: onnxruntime's numbers in 0.65-0.84x its time with camera-paced frames,
    results/dense_runtimes_cpu.json), then onnxruntime. Off the CPU openvino is not tried
    (its GPU plugin is Intel graphics, not CUDA).
    """
    out: list[tuple[str, str]] = []
    has_trt = importlib.util.find_spec("tensorrt") is not None
    gpu, gpu_why = cuda_gpu_present()
    if has_trt and gpu and device != "cpu":
        out.append(("tensorrt", f"tensorrt importable and {gpu_why}"))
    elif has_trt and gpu:
        LOG.info("auto: tensorrt skipped because device='cpu' was requested")
    else:
        why = "tensorrt not importable" if not has_trt else gpu_why
        LOG.info("auto: tensorrt skipped: %s", why)
    on_cpu = device == "cpu" or (device == "auto" and not gpu)
    if on_cpu and _gated_checkpoint(model_file_path):
        out.append(("sparse-cpu", "gated checkpoint on the CPU: the compiled gather-scatter "
                                  "path skips the masked-out work (docs/sparse.md)"))  # fmt: skip
    if on_cpu and importlib.util.find_spec("openvino") is not None:
        out.append(("openvino", "openvino importable, on the CPU: the dense network at f32 "
                                "in 0.65-0.84x onnxruntime's time with frames 90 ms apart, as "
                                "a camera sends them (results/dense_runtimes_cpu.json)"))
    if importlib.util.find_spec("onnxruntime") is not None:
        out.append(("onnxruntime", "onnxruntime importable"))
    else:
        LOG.info("auto: onnxruntime skipped: not importable")
    if importlib.util.find_spec("torch") is not None:
        out.append(("torch", "torch importable (last resort)"))
    return out


def create_backend(
    name: str,
    model_file_path: str | os.PathLike[str],
    device: str | None = None,
    options: BackendOptions | None = None,
    **kwargs: Any,
) -> Backend:
    """Build a backend by name.

    Args:
        name: "auto", "torch", "onnxruntime", "openvino", "tensorrt" or "sparse-cpu". "auto"
            tries tensorrt (importable, a CUDA GPU present and ``device`` not "cpu"), then, on
            the CPU with a gated .safetensors checkpoint, sparse-cpu, then on the CPU openvino,
            then onnxruntime, then torch;
            a candidate that fails to load is logged with its reason and the next one is tried.
        model_file_path: .safetensors checkpoint (every backend; onnxruntime and tensorrt export
            it on first use into a cache) or .onnx (onnxruntime, tensorrt).
        device: "auto" (CUDA when present, else CPU), "cpu", "cuda" or "cuda:N"; None = that
            of ``options`` ("auto" by default).
        options: the options every backend takes (:class:`BackendOptions`; default: its
            defaults).
        kwargs: changes to ``options`` by field name (``input_size``, ``num_threads``,
            ``mask_threshold``, ``head_gating``, ``cache_dir``), and the chosen backend's own
            keyword options (e.g. onnxruntime's ``graph``, sparse-cpu's ``adaptive``,
            tensorrt's ``engine_file_path``), passed through unchanged.

    Raises:
        ValueError: unknown name, or an invalid option (before any model is read).
        BackendError: the model cannot be loaded by the requested (or any, for auto) backend.
    """
    if name not in BACKEND_NAMES:
        raise ValueError(f"backend must be one of {BACKEND_NAMES}, got {name!r}")
    shared, specific = BackendOptions.split(kwargs)
    if device is not None:
        shared["device"] = device
    opts = BackendOptions.build(options, **shared)  # validated once, before any model is read
    path = str(model_file_path)
    if not Path(path).exists():
        raise BackendError(f"model file not found: {path}")
    if name != "auto":
        return _instantiate(name, path, opts, specific)
    failures: list[str] = []
    for candidate, reason in auto_candidates(opts.device, path):
        try:
            backend = _instantiate(candidate, path, opts, accepted_options(candidate, specific))
        except (BackendError, ImportError, OSError) as exc:
            LOG.warning("auto: %s could not load %s: %s", candidate, path, exc)
            failures.append(f"{candidate}: {exc}")
            continue
        LOG.info("auto: picked %s for %s because %s", candidate, path, reason)
        return backend
    detail = "; ".join(failures or ["none available"])
    raise BackendError(f"no backend could load {path}: {detail}")
