"""The sparse block CUDA kernels as a torch extension, compiled on first use on a CUDA machine.

Why on demand and not at install time: the package is an ament_python package that must install
on machines without a GPU or CUDA toolkit (CI, this project's build machine); the kernels are the
same ``.cu`` files the TensorRT plugin compiles (``sparse/kernels/``), so the torch path needs
no separate build system. The compiled module is cached by torch under :func:`build_directory`,
so only the first call on a machine pays the compile time (about a minute).
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

from .kernels import KERNEL_DIR, KERNEL_SOURCE, TORCH_BINDING_SOURCE, reference
from .kernels.weights import SparseBlockWeights

LOG = logging.getLogger(__name__)

EXTENSION_NAME = "sparse_pose_ros_sparse_kernels"


class CudaExtensionUnavailable(RuntimeError):
    """The extension cannot be built or loaded here (message says why)."""


def unavailable_reason() -> str | None:
    """Why the extension cannot be built on this machine, or None when it can."""
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build (torch.version.cuda is None)"
    if not torch.cuda.is_available():
        return "torch sees no CUDA device (torch.cuda.is_available() is False)"
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME is None:
        return "no CUDA toolkit found for compiling (set CUDA_HOME to the directory with bin/nvcc)"
    return None


def build_directory() -> Path:
    """Per torch/CUDA version cache folder ($SPARSE_POSE_ROS_CACHE or ~/.cache/sparse_pose_ros)."""
    root = os.environ.get("SPARSE_POSE_ROS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "sparse_pose_ros"
    )
    tag = f"torch{torch.__version__.split('+')[0]}-cu{torch.version.cuda}"
    return Path(root) / "torch_extensions" / tag


@functools.lru_cache(maxsize=1)
def load_extension(verbose: bool = False) -> ModuleType:
    """Compile (first time) and import the extension.

    Raises:
        CudaExtensionUnavailable: no CUDA device / CUDA toolkit, or the build failed.
    """
    reason = unavailable_reason()
    if reason is not None:
        raise CudaExtensionUnavailable(reason)
    from torch.utils.cpp_extension import load

    directory = build_directory()
    directory.mkdir(parents=True, exist_ok=True)
    LOG.info(
        "building/loading %s in %s (first build takes about a minute)", EXTENSION_NAME, directory
    )
    try:
        return load(
            name=EXTENSION_NAME,
            sources=[str(TORCH_BINDING_SOURCE), str(KERNEL_SOURCE)],
            extra_include_paths=[str(KERNEL_DIR)],
            extra_cflags=["-O3", "-std=c++17"],
            extra_cuda_cflags=["-O3", "-std=c++17"],
            build_directory=str(directory),
            verbose=verbose,
        )
    except (RuntimeError, OSError) as exc:
        raise CudaExtensionUnavailable(f"building {EXTENSION_NAME} failed: {exc}") from exc


def sparse_inverted_residual(x: Tensor, mask: Tensor, weights: SparseBlockWeights) -> Tensor:
    """Run one block with the CUDA kernels (x: (B, C, H, W) CUDA float32/float16).

    ``mask`` is the block's hard mask (B, 1, Ho, Wo); it is cast to the dtype of ``x``.
    """
    ext = load_extension()

    def dev(a: object) -> Tensor:
        return torch.as_tensor(a, dtype=torch.float32, device=x.device)

    return ext.sparse_inverted_residual(
        x,
        mask.to(device=x.device, dtype=x.dtype),
        dev(weights.w_expand),
        dev(weights.b_expand),
        dev(weights.w_dw),
        dev(weights.b_dw),
        dev(weights.w_proj),
        dev(weights.b_proj),
        int(weights.stride),
        bool(weights.has_expand),
        bool(weights.residual),
        int(weights.pad_before),  # 0 for a TF 'SAME' stride-2 depthwise on an even input
    )


def index_lists(mask: Tensor, in_hw: tuple[int, int], stride: int,
                pad_before: int = 1) -> reference.IndexLists:
    """The kernels' index lists for ``mask`` copied to the host (one sync; tests/debugging).
    ``pad_before``: 1 (symmetric) or 0 (TF 'SAME' stride 2 on an even input)."""
    ext = load_extension()
    active, dilated, row_map, counts = ext.index_lists(mask, int(in_hw[0]), int(in_hw[1]), stride,
                                                       int(pad_before))
    n_active, n_dilated = (int(v) for v in counts.cpu().tolist())
    return reference.IndexLists(
        active_idx=active.cpu().numpy(),
        active_count=n_active,
        dilated_idx=dilated.cpu().numpy(),
        dilated_count=n_dilated,
        row_map=row_map.cpu().numpy(),
    )
