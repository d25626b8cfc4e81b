"""TensorRT backend: the plugin ONNX graph built into a cached engine with our IPluginV3.

Flow: checkpoint (.safetensors) -> plugin-graph ONNX (exported once into the cache) -> engine
built with ``libsparse_pose_ros_plugins.so`` loaded into TensorRT's plugin registry -> plan
cached under a key of GPU + compute capability + TensorRT version + precision + plugin hash +
ONNX hash + workspace (:mod:`sparse_pose_ros.backends.engine_cache`). A stale, corrupt or foreign
plan is logged and rebuilt; ``force_engine_update`` rebuilds unconditionally.

Nothing here needs PyTorch with CUDA: the GPU is identified through the CUDA driver API
(``libcuda``) and I/O buffers live in memory from the CUDA runtime (``libcudart``), both via
ctypes, because a Jetson's TensorRT Python module often sits next to a CPU-only torch.

Isaac ROS parameter names are used as keyword options: ``engine_file_path``,
``custom_plugin_lib``, ``force_engine_update``, ``enable_fp16``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..export.export_cache import ensure_onnx_export, warn_if_baked
from .base import (
    Backend,
    BackendError,
    InferenceResult,
    build_result,
    check_input,
    check_probability,
    resolve_device,
    threshold_logit,
)
from .engine_cache import (
    EngineBuildError,
    EngineKey,
    default_cache_dir,
    load_or_build,
    plan_path_for,
    sha256_file,
)

LOG = logging.getLogger(__name__)

TENSORRT_MISSING = "TensorRT (python module `tensorrt`) is not installed on this machine"
PLUGIN_LIBRARY_NAME = "libsparse_pose_ros_plugins.so"
PLUGIN_LIBRARY_ENV = "SPARSE_POSE_ROS_PLUGIN_LIB"
DEFAULT_WORKSPACE_MB = 1024
NO_PLUGIN = "none"

_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76
_CUDA_MEMCPY_HOST_TO_DEVICE = 1
_CUDA_MEMCPY_DEVICE_TO_HOST = 2


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or BackendError with :data:`TENSORRT_MISSING`."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendError(f"{TENSORRT_MISSING}: {exc}") from exc
    return trt


# --- GPU identity and device memory (ctypes, no torch) --------------------------------------


def _load_library(names: tuple[str, ...], what: str) -> ctypes.CDLL:
    errors = []
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError as exc:
            errors.append(f"{name}: {exc}")
    found = ctypes.util.find_library(what)
    if found:
        try:
            return ctypes.CDLL(found)
        except OSError as exc:
            errors.append(f"{found}: {exc}")
    raise BackendError(f"cannot load the CUDA {what} library ({'; '.join(errors)})")


def gpu_identity(device_index: int = 0) -> tuple[str, str]:
    """(device name, "major.minor") of a GPU from the CUDA driver API.

    Raises:
        BackendError: no driver library, or the driver reports an error (e.g. no GPU).
    """
    lib = _load_library(("libcuda.so.1", "libcuda.so"), "cuda")

    def call(status: int, what: str) -> None:
        if status != 0:
            raise BackendError(f"CUDA driver call {what} failed with CUresult {status}")

    call(lib.cuInit(0), "cuInit")
    device = ctypes.c_int()
    call(lib.cuDeviceGet(ctypes.byref(device), int(device_index)), "cuDeviceGet")
    name = ctypes.create_string_buffer(256)
    call(lib.cuDeviceGetName(name, len(name), device), "cuDeviceGetName")
    major, minor = ctypes.c_int(), ctypes.c_int()
    call(
        lib.cuDeviceGetAttribute(
            ctypes.byref(major), _CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device
        ),
        "cuDeviceGetAttribute(major)",
    )
    call(
        lib.cuDeviceGetAttribute(
            ctypes.byref(minor), _CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device
        ),
        "cuDeviceGetAttribute(minor)",
    )
    return name.value.decode(errors="replace").strip(), f"{major.value}.{minor.value}"


class CudaRuntime:
    """The handful of CUDA runtime calls the backend needs (malloc, async copies, a stream)."""

    def __init__(self, device_index: int) -> None:
        self._lib = _load_library(
            ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"), "cudart"
        )
        self._lib.cudaGetErrorString.restype = ctypes.c_char_p
        self._check(self._lib.cudaSetDevice(int(device_index)), "cudaSetDevice")
        stream = ctypes.c_void_p()
        self._check(self._lib.cudaStreamCreate(ctypes.byref(stream)), "cudaStreamCreate")
        self.stream = stream

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            text = self._lib.cudaGetErrorString(status).decode(errors="replace")
            raise BackendError(f"{what} failed: {text} ({status})")

    def malloc(self, nbytes: int) -> ctypes.c_void_p:
        ptr = ctypes.c_void_p()
        self._check(
            self._lib.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(max(1, nbytes))), "cudaMalloc"
        )
        return ptr

    def free(self, ptr: ctypes.c_void_p) -> None:
        self._check(self._lib.cudaFree(ptr), "cudaFree")

    def upload(self, dst: ctypes.c_void_p, src: np.ndarray) -> None:
        self._check(
            self._lib.cudaMemcpyAsync(
                dst,
                src.ctypes.data_as(ctypes.c_void_p),
                ctypes.c_size_t(src.nbytes),
                _CUDA_MEMCPY_HOST_TO_DEVICE,
                self.stream,
            ),
            "cudaMemcpyAsync(H2D)",
        )

    def download(self, dst: np.ndarray, src: ctypes.c_void_p) -> None:
        self._check(
            self._lib.cudaMemcpyAsync(
                dst.ctypes.data_as(ctypes.c_void_p),
                src,
                ctypes.c_size_t(dst.nbytes),
                _CUDA_MEMCPY_DEVICE_TO_HOST,
                self.stream,
            ),
            "cudaMemcpyAsync(D2H)",
        )

    def synchronize(self) -> None:
        self._check(self._lib.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def close(self) -> None:
        if self.stream:
            self._check(self._lib.cudaStreamDestroy(self.stream), "cudaStreamDestroy")
            self.stream = ctypes.c_void_p()


# --- plugin library -------------------------------------------------------------------------


def plugin_library_candidates() -> list[Path]:
    """Where ``custom_plugin_lib`` is looked for when not given, in order.

    $SPARSE_POSE_ROS_PLUGIN_LIB; the colcon/ament install prefix (``<prefix>/lib``, where
    ``cmake --install`` puts it); the in-tree build folder ``build/plugin`` of a checkout.
    """
    out: list[Path] = []
    if os.environ.get(PLUGIN_LIBRARY_ENV):
        out.append(Path(os.environ[PLUGIN_LIBRARY_ENV]))
    package_dir = Path(__file__).resolve().parents[1]
    # <prefix>/lib/python3.X/site-packages/sparse_pose_ros -> <prefix>/lib
    out.append(package_dir.parents[2] / PLUGIN_LIBRARY_NAME)
    out.append(package_dir.parent / "build" / "plugin" / PLUGIN_LIBRARY_NAME)
    return out


def find_plugin_library(explicit: str | os.PathLike[str] | None) -> Path:
    """The plugin library to load (explicit path wins).

    Raises:
        BackendError: the explicit file is missing, or none of the candidates exists (the
            message says how to build it).
    """
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise BackendError(f"custom_plugin_lib {path} does not exist")
        return path
    candidates = plugin_library_candidates()
    for path in candidates:
        if path.is_file():
            return path
    raise BackendError(
        f"{PLUGIN_LIBRARY_NAME} not found (looked in {', '.join(map(str, candidates))}); build it "
        "with `cmake -S plugin -B build/plugin -DTENSORRT_ROOT=<TensorRT> && cmake --build "
        "build/plugin` or set custom_plugin_lib"
    )


_LOADED_PLUGINS: dict[str, Any] = {}


def load_plugin_library(trt: Any, path: Path) -> None:
    """Register the plugin creators of ``path`` with TensorRT's registry, once per process."""
    key = str(path.resolve())
    if key in _LOADED_PLUGINS:
        return
    handle = trt.get_plugin_registry().load_library(key)
    if handle is None:
        raise BackendError(
            f"TensorRT could not load plugin library {path} (see the TensorRT log; a creator "
            "with the same name/version/namespace may already be registered)"
        )
    _LOADED_PLUGINS[key] = handle
    LOG.info("tensorrt: plugin library %s loaded", path)


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


# --- checkpoint -> plugin-graph ONNX --------------------------------------------------------


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
        device: "auto", "cuda" or "cuda:N" ("cpu" is rejected).
        input_size: export size for a checkpoint; must match the file for an .onnx.
        mask_threshold: initial mask probability threshold (default 0.5).
        engine_file_path: where to keep the plan (default: the cache, named by its key). A plan
            without sidecar found there (e.g. from trtexec) is used if it deserializes.
        custom_plugin_lib: path of ``libsparse_pose_ros_plugins.so`` (default: see
            :func:`plugin_library_candidates`). Only needed when the graph is gated.
        force_engine_update: rebuild the engine even if a valid cached one exists.
        enable_fp16: allow fp16 kernels (the plugin accumulates in fp32 either way).
        workspace_mb: builder workspace limit in MiB.
        cache_dir: cache root for ONNX exports and plans.
        head_gating: heads only inside the last mask's region for a checkpoint (see the
            onnxruntime backend); None keeps the checkpoint's setting.
    """

    name = "tensorrt"

    def __init__(
        self,
        model_file_path: str,
        device: str = "auto",
        input_size: int | None = None,
        mask_threshold: float = 0.5,
        engine_file_path: str | os.PathLike[str] | None = None,
        custom_plugin_lib: str | os.PathLike[str] | None = None,
        force_engine_update: bool = False,
        enable_fp16: bool = False,
        workspace_mb: int = DEFAULT_WORKSPACE_MB,
        cache_dir: str | os.PathLike[str] | None = None,
        num_threads: int | None = None,
        head_gating: bool | None = None,
    ) -> None:
        """``num_threads`` is accepted so that one option set fits every backend (the node's
        ``num_threads``); the engine runs on the GPU, so it is not used here."""
        from ..export.metadata import read_metadata as read_onnx_metadata

        path = str(model_file_path)
        if int(workspace_mb) <= 0:
            raise ValueError(f"workspace_mb must be positive, got {workspace_mb}")
        trt = import_tensorrt()
        dev = resolve_device(device)
        if dev == "cpu":
            raise BackendError("the TensorRT backend needs a CUDA GPU (device resolved to 'cpu')")
        device_index = int(dev.split(":")[1]) if ":" in dev else 0
        cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        suffix = Path(path).suffix
        if suffix == ".safetensors":
            onnx_path = ensure_onnx_export(path, input_size, cache_root, "plugin", head_gating)
        elif suffix == ".onnx":
            onnx_path = Path(path)
            warn_if_baked(path, head_gating, self.name)
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
        self.meta = meta
        self.info = meta.info if suffix == ".onnx" else replace(meta.info, source=path)
        self.geometry = meta.geometry
        self.onnx_path = onnx_path
        try:
            self._bindings = self._allocate(trt)
        except BackendError:
            self.close()
            raise
        self._threshold = np.zeros(1, dtype=np.float32)
        self.set_mask_threshold(mask_threshold)
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
