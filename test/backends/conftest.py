"""Small random-weight checkpoints shared by the backend tests (no trained weights needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sparse_pose_ros.export.random_model import random_network
from sparse_pose_ros.model.checkpoint import save_checkpoint


@pytest.fixture(scope="session")
def gated_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "gated.safetensors"
    save_checkpoint(path, random_network(gated=True, input_size=64, seed=1))
    return path


@pytest.fixture(scope="session")
def head_gated_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The gated network with head gating on (same weights as ``gated_checkpoint``)."""
    path = tmp_path_factory.mktemp("ckpt") / "head_gated.safetensors"
    net = random_network(gated=True, input_size=64, seed=1)
    net.set_head_gating(True)
    save_checkpoint(path, net)
    return path


@pytest.fixture(scope="session")
def dense_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "dense.safetensors"
    save_checkpoint(path, random_network(gated=False, input_size=64, seed=2))
    return path


@pytest.fixture()
def frame64() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.standard_normal((1, 3, 64, 64)).astype(np.float32)
