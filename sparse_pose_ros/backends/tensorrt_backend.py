"""TensorRT backend: the plugin ONNX graph built into a cached engine with our IPluginV3.

Flow: checkpoint (.safetensors) -> plugin-graph ONNX (exported once into the cache) -> engine
built with ``libsparse_pose_ros_plugins.so`` loaded into TensorRT's plugin registry -> plan
cached under a key of GPU + compute capability + TensorRT version + precision + plugin hash +
ONNX hash + workspace (:mod:`sparse_pose_ros.backends.engine_cache`). A stale, corrupt or foreign
plan is logged and rebuilt; ``force_engine_update`` rebuilds unconditionally.

Three modules: this one (engine build + the backend), :mod:`.cuda_runtime` (GPU identity and
device memory through ctypes, so nothing here needs PyTorch with CUDA) and
:mod:`.tensorrt_plugins` (finding and registering the plugin library). Their public names are
importable from here too.

Isaac ROS parameter names are used as keyword options: ``engine_file_path``,
``custom_plugin_lib``, ``force_engine_update``, ``enable_fp16``.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..export.export_cache import checkpoint_training, ensure_onnx_export, warn_if_baked
from .base import (
    Backend,
    BackendError,
    BackendOptions,
    InferenceResult,
    build_result,
    check_input,
    check_probability,
    resolve_device,
    threshold_logit,
)
from .cuda_runtime import CudaRuntime, gpu_identity
from .engine_cache import (
    EngineBuildError,
    EngineKey,
    default_cache_dir,
    load_or_build,
    plan_path_for,
    sha256_file,
)
from .tensorrt_plugins import (
    PLUGIN_LIBRARY_ENV,
    PLUGIN_LIBRARY_NAME,
    find_plugin_library,
    load_plugin_library,
    plugin_library_candidates,
)

__all__ = ["DEFAULT_WORKSPACE_MB", "NO_PLUGIN", "PLUGIN_LIBRARY_ENV", "PLUGIN_LIBRARY_NAME",
           "TENSORRT_MISSING", "BuildSettings", "CudaRuntime", "TensorRTBackend",
           "build_serialized_engine", "engine_deserializer", "engine_key", "find_plugin_library",
           "gpu_identity", "import_tensorrt", "load_plugin_library", "plugin_library_candidates"]

LOG = logging.getLogger(__name__)

TENSORRT_MISSING = "TensorRT (python module `tensorrt`) is not installed on this machine"
DEFAULT_WORKSPACE_MB = 1024
NO_PLUGIN = "none"


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or BackendError with :data:`TENSORRT_MISSING`."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendError(f"{TENSORRT_MISSING}: {exc}") from exc
    return trt


# --- engine build -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildSettings:
    """What the builder is asked for (also part of the cache key)."""

    enable_fp16: bool = False
    workspace_bytes: int = DEFAULT_WORKSPACE_MB << 20

    def __post_init__(self) -> None:
        if self.workspace_bytes <= 0:
            raise ValueError(f"workspace must be positive, got {self.workspace_bytes} bytes")

    @property
    def precision(self) -> str:
        return "fp16" if self.enable_fp16 else "fp32"


def engine_key(
    trt_version: str,
    gpu: tuple[str, str],
    onnx_path: Path,
    plugin_path: Path | None,
    settings: BuildSettings,
) -> EngineKey:
    """Cache key of an engine built from ``onnx_path`` with ``settings`` on ``gpu``."""
    return EngineKey(
        gpu_name=gpu[0],
        compute_capability=gpu[1],
        tensorrt_version=str(trt_version),
        precision=settings.precision,
        plugin_sha256=sha256_file(plugin_path) if plugin_path is not None else NO_PLUGIN,
        onnx_sha256=sha256_file(onnx_path),
        workspace_bytes=int(settings.workspace_bytes),
    )


def build_serialized_engine(
    trt: Any, logger: Any, onnx_path: Path, settings: BuildSettings
) -> bytes:
    """Parse ``onnx_path`` (plugins must already be registered) and build a serialized plan.

    Raises:
        EngineBuildError: with every parser error, or when the builder returns nothing.
    """
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT cannot parse {onnx_path}: " + " | ".join(errors))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(settings.workspace_bytes))
    if settings.enable_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"TensorRT failed to build an engine from {onnx_path} (see its log)")
    return bytes(plan)


def engine_deserializer(runtime: Any) -> Callable[[bytes], Any]:
    """Plan bytes -> ICudaEngine, or None when TensorRT rejects the plan (``runtime`` must have
    the plugin library registered already, as plans reference plugins by name)."""

    def deserialize(plan: bytes) -> Any:
        return runtime.deserialize_cuda_engine(plan)

    return deserialize


# --- the backend ----------------------------------------------------------------------------


@dataclass
class _Binding:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    device: ctypes.c_void_p
    host: np.ndarray


class TensorRTBackend(Backend):
    """A plugin-graph engine executed by TensorRT on one GPU.

    Args:
        model_file_path: plugin-graph .onnx (``python -m sparse_pose_ros.export --graph plugin``)
            or a .safetensors checkpoint (exported into the cache on first use).
        options: :class:`~sparse_pose_ros.runtime.options.BackendOptions`; ``shared`` keyword
            arguments change its fields. Here: ``device`` "auto", "cuda" or "cuda:N" ("cpu" is
            rejected); ``input_size`` the export size for a checkpoint, which must match the
            file for an .onnx; ``cache_dir`` the cache root for ONNX exports and plans (default
            ``engine_cache.default_cache_dir``); ``head_gating`` for a checkpoint (see the
            onnxruntime backend); ``num_threads`` is not used (the engine runs on the GPU).
        engine_file_path: where to keep the plan (default: the cache, named by its key). A plan
            without sidecar found there (e.g. from trtexec) is used if it deserializes.
        custom_plugin_lib: path of ``libsparse_pose_ros_plugins.so`` (default: see
            :func:`plugin_library_candidates`). Only needed when the graph is gated.
        force_engine_update: rebuild the engine even if a valid cached one exists.
        enable_fp16: allow fp16 kernels (the plugin accumulates in fp32 either way).
        workspace_mb: builder workspace limit in MiB.
    """

    name = "tensorrt"

    def __init__(
        self,
        model_file_path: str,
        options: BackendOptions | None = None,
        *,
        engine_file_path: str | os.PathLike[str] | None = None,
        custom_plugin_lib: str | os.PathLike[str] | None = None,
        force_engine_update: bool = False,
        enable_fp16: bool = False,
        workspace_mb: int = DEFAULT_WORKSPACE_MB,
        **shared: Any,
    ) -> None:
        from ..export.metadata import read_metadata as read_onnx_metadata

        opts = BackendOptions.build(options, **shared)
        if opts.input_width is not None and opts.input_width != opts.input_size:
            raise BackendError("tensorrt runs square inputs only (its plugin graph); "
                               "input_width is for the torch, onnxruntime and openvino backends")
        input_size = opts.input_size
        path = str(model_file_path)
        if int(workspace_mb) <= 0:
            raise ValueError(f"workspace_mb must be positive, got {workspace_mb}")
        trt = import_tensorrt()
        dev = resolve_device(opts.device)
        if dev == "cpu":
            raise BackendError("the TensorRT backend needs a CUDA GPU (device resolved to 'cpu')")
        device_index = int(dev.split(":")[1]) if ":" in dev else 0
        cache_root = Path(opts.cache_dir) if opts.cache_dir is not None else default_cache_dir()
        suffix = Path(path).suffix
        if suffix == ".safetensors":
            onnx_path = ensure_onnx_export(path, input_size, cache_root, "plugin",
                                           opts.head_gating)  # fmt: skip
        elif suffix == ".onnx":
            onnx_path = Path(path)
            warn_if_baked(path, opts.head_gating, self.name)
        else:
            raise BackendError(f"tensorrt needs a .onnx or .safetensors file, got {path}")
        meta = read_onnx_metadata(onnx_path)
        if meta.graph != "plugin":
            LOG.warning(
                "tensorrt: %s is a %r graph; it runs, but without the sparse plugin",
                onnx_path,
                meta.graph,
            )
        if input_size is not None and int(input_size) != meta.info.input_size:
            raise BackendError(
                f"{onnx_path} was exported at {meta.info.input_size} px, not {input_size}"
            )
        plugin_path = (
            find_plugin_library(custom_plugin_lib) if meta.info.gated or custom_plugin_lib else None
        )
        if plugin_path is not None:
            load_plugin_library(trt, plugin_path)

        settings = BuildSettings(
            enable_fp16=bool(enable_fp16), workspace_bytes=int(workspace_mb) << 20
        )
        #: what the engine was built for, "fp32" or "fp16" (the node's /diagnostics `precision`)
        self.precision = settings.precision
        gpu = gpu_identity(device_index)
        key = engine_key(trt.__version__, gpu, onnx_path, plugin_path, settings)
        plan_path = (
            Path(engine_file_path)
            if engine_file_path
            else plan_path_for(key, onnx_path.stem, cache_root / "engines")
        )
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._cuda = CudaRuntime(device_index)
        try:
            cached = load_or_build(
                key,
                plan_path,
                build=lambda: build_serialized_engine(trt, self._logger, onnx_path, settings),
                deserialize=engine_deserializer(self._runtime),
                force_rebuild=bool(force_engine_update),
                accept_plan_without_sidecar=engine_file_path is not None,
            )
        except EngineBuildError as exc:
            self._cuda.close()
            raise BackendError(str(exc)) from exc
        self.engine = cached.engine
        self.engine_path = cached.plan_path
        self.engine_built = cached.built
        self.context = self.engine.create_execution_context()
        self._bindings: dict[str, _Binding] = {}
        if self.context is None:
            self._cuda.close()
            raise BackendError(f"TensorRT could not create an execution context for {plan_path}")
        self.backend_options = opts
        self.meta = meta
        self.info = meta.info if suffix == ".onnx" else replace(
            meta.info, source=path, training=checkpoint_training(path))
        self.geometry = meta.geometry
        self.onnx_path = onnx_path
        try:
            self._bindings = self._allocate(trt)
        except BackendError:
            self.close()
            raise
        self._threshold = np.zeros(1, dtype=np.float32)
        self.set_mask_threshold(opts.mask_threshold)
        LOG.info(
            "tensorrt backend: %s on %s (sm %s), TensorRT %s, %s, engine %s (%s)",
            onnx_path,
            gpu[0],
            gpu[1],
            trt.__version__,
            settings.precision,
            self.engine_path,
            cached.reason,
        )

    def _allocate(self, trt: Any) -> dict[str, _Binding]:
        """One device + host buffer per I/O tensor (shapes are fixed per export). Buffers land
        in ``self._bindings`` as they are made, so :meth:`close` frees them on any failure."""
        size = self.info.input_size
        bindings = self._bindings
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            shape = tuple(int(d) for d in self.engine.get_tensor_shape(name))
            if is_input and any(d < 0 for d in shape):
                fixed = (1, 3, size, size) if name == self.meta.input_name else (1,)
                self.context.set_input_shape(name, fixed)
                shape = fixed
            if not is_input:
                shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            host = np.empty(shape, dtype=dtype)
            device_ptr = self._cuda.malloc(host.nbytes)
            self.context.set_tensor_address(name, int(device_ptr.value or 0))
            bindings[name] = _Binding(name, shape, dtype, device_ptr, host)
        expected = {self.meta.input_name, "heatmaps", "joints", *self.meta.mask_outputs}
        if self.meta.threshold_input:
            expected.add(self.meta.threshold_input)
        missing = expected - set(bindings)
        if missing:
            raise BackendError(f"engine for {self.onnx_path} lacks tensors {sorted(missing)}")
        return bindings

    def set_mask_threshold(self, probability: float) -> None:
        p = check_probability(probability)
        self._threshold = np.array([threshold_logit(p)], dtype=np.float32)
        self.mask_threshold = p

    def infer(self, tensor: np.ndarray) -> InferenceResult:
        x = check_input(tensor, self.info.input_size)
        feeds = {self.meta.input_name: x}
        if self.meta.threshold_input:
            feeds[self.meta.threshold_input] = self._threshold
        for name, value in feeds.items():
            binding = self._bindings[name]
            host = np.ascontiguousarray(value, dtype=binding.dtype).reshape(binding.shape)
            binding.host[...] = host
            self._cuda.upload(binding.device, binding.host)
        if not self.context.execute_async_v3(self._cuda.stream.value or 0):
            raise BackendError(f"TensorRT execution failed for {self.engine_path} (see its log)")
        outputs = ["heatmaps", "joints", *self.meta.mask_outputs]
        for name in outputs:
            self._cuda.download(self._bindings[name].host, self._bindings[name].device)
        self._cuda.synchronize()  # the one host sync per frame
        heatmaps, joints, *masks = (self._bindings[n].host.astype(np.float32) for n in outputs)
        return build_result(
            joints[0], heatmaps[0], [m.reshape(m.shape[-2:]) for m in masks], self.geometry
        )

    def close(self) -> None:
        bindings, self._bindings = getattr(self, "_bindings", {}), {}
        for binding in bindings.values():
            self._cuda.free(binding.device)
        self.context = None
        self.engine = None
        self._cuda.close()

    @property
    def options(self) -> dict[str, Any]:
        return {
            "engine_file_path": str(self.engine_path),
            "mask_threshold": self.mask_threshold,
            "engine_built": self.engine_built,
        }
