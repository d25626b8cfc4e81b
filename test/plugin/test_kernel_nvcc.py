"""``nvcc`` compiles the shared kernels for Jetson Orin (sm_87), Ada (sm_89) and Hopper (sm_90).

One compile per test session (a few seconds), warnings as errors. Skips when nvcc is absent.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from sparse_pose_ros.sparse.kernels import KERNEL_DIR, KERNEL_SOURCE

ARCHS = ("sm_87", "sm_89", "sm_90")
# Every __global__ kernel template instantiation the launchers use (name fragment -> count).
KERNELS = {
    "countTilesKernel": 4,  # {active, dilated} x {float, half}
    "compactTilesKernel": 4,
    "scanTileSumsKernel": 1,
    "gatherRowsKernel": 2,
    "rowsGemmKernel": 2,  # with / without ReLU6
    "maskedDepthwiseKernel": 1,
    "scatterAddKernel": 2,
}


def find_nvcc() -> str | None:
    """nvcc from PATH, $CUDA_HOME/bin or /usr/local/cuda/bin."""
    candidates = [shutil.which("nvcc")]
    if os.environ.get("CUDA_HOME"):
        candidates.append(os.path.join(os.environ["CUDA_HOME"], "bin", "nvcc"))
    candidates.append("/usr/local/cuda/bin/nvcc")
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


NVCC = find_nvcc()
pytestmark = pytest.mark.skipif(
    NVCC is None, reason="nvcc not found (PATH, $CUDA_HOME/bin, /usr/local/cuda/bin)"
)


@pytest.fixture(scope="session")
def nvcc_build(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("nvcc") / "sparse_block.o"
    cmd = [
        str(NVCC),
        "-std=c++17",
        "-O3",
        "-c",
        str(KERNEL_SOURCE),
        "-I",
        str(KERNEL_DIR),
        "-o",
        str(out),
        "--resource-usage",
        "-Werror",
        "all-warnings",
        "-Xcompiler",
        "-Wall,-Wextra,-Werror",
    ]
    for arch in ARCHS:
        cmd += ["-gencode", f"arch=compute_{arch[3:]},code={arch}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    return proc, out


def test_kernels_compile_without_warnings(
    nvcc_build: tuple[subprocess.CompletedProcess, Path],
) -> None:
    proc, out = nvcc_build
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert out.stat().st_size > 0


@pytest.mark.parametrize("arch", ARCHS)
def test_every_kernel_has_sass_for_arch(
    nvcc_build: tuple[subprocess.CompletedProcess, Path], arch: str
) -> None:
    proc, _ = nvcc_build
    assert proc.returncode == 0, proc.stderr[-4000:]
    entries = re.findall(r"Compiling entry function '([^']+)' for '([^']+)'", proc.stderr)
    names = [name for name, a in entries if a == arch]
    for kernel, count in KERNELS.items():
        found = sum(kernel in name for name in names)
        assert found == count, f"{kernel}: {found} instantiations for {arch}, expected {count}"
