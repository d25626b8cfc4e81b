"""Shared helpers for the gather-scatter tests: blocks with non-trivial BN statistics."""

from __future__ import annotations

import pytest
import torch
from sparse_test_utils import randomise_bn

from sparse_pose_ros.model.blocks import InvertedResidual
from sparse_pose_ros.sparse.cpu_kernel import load_cpu_kernel


def make_block(
    c_in: int, c_out: int, stride: int, t: float = 6, relu: bool = False, seed: int = 0,
    padding: str = "symmetric",
) -> InvertedResidual:
    """A gated block; ``padding="tf_same"`` gives MoveNet's TF 'SAME' depthwise at stride 2."""
    torch.manual_seed(seed)
    block = InvertedResidual(
        c_in, c_out, stride, t, gated=True, residual_activation="relu" if relu else None,
        padding=padding,
    ).eval()
    randomise_bn(block, seed)
    return block


@pytest.fixture()
def block_factory():
    """``make_block`` as a fixture (test folders are not packages, so no relative imports)."""
    return make_block


@pytest.fixture(params=["torch-exact", "torch-capacity", "cpp"])
def runner_kind(request: pytest.FixtureRequest) -> tuple[str, str]:
    kernel, _, sync = request.param.partition("-")
    if kernel == "cpp" and load_cpu_kernel() is None:
        pytest.skip("no C++ compiler: compiled CPU kernel cannot be built here")
    return kernel, sync or "exact"
