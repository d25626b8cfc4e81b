"""Shared fixtures for the data tests: one renderer per session (a GL context is costly)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def train_generator():
    from sparse_pose_ros.data.synthetic import SyntheticGenerator

    generator = SyntheticGenerator("train", seed=123)
    yield generator
    generator.close()


@pytest.fixture(scope="session")
def train_frames(train_generator):
    """A handful of rendered training frames (indices 0..5)."""
    return [train_generator.frame(i) for i in range(6)]
