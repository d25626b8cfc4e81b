"""The CUDA calls the TensorRT backend needs, through ctypes: no PyTorch with CUDA required.

Why ctypes: a Jetson's TensorRT Python module often sits next to a CPU-only torch. The GPU is
identified through the CUDA driver API (``libcuda``: :func:`gpu_identity`, part of the engine
cache key) and I/O buffers live in memory from the CUDA runtime (``libcudart``:
:class:`CudaRuntime`). Errors are :class:`~sparse_pose_ros.runtime.model_info.BackendError`.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

from ..runtime.model_info import BackendError

_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76
_CUDA_MEMCPY_HOST_TO_DEVICE = 1
_CUDA_MEMCPY_DEVICE_TO_HOST = 2


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
