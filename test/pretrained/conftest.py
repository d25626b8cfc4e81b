"""Where the tests find MoveNet's graph models: the cache that ``./run``'s bootstrap fills with
the pinned npm tarball (``pretrained.npm_package``), extracted on first use. No download here:
without the tarball the tests that need it skip and say how to get it."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparse_pose_ros.pretrained import npm_package


@pytest.fixture(scope="session")
def movenet_models_dir() -> Path:
    try:
        return npm_package.extract_model("movenet-lightning", download=False).parent
    except npm_package.PretrainedError as exc:
        pytest.skip(f"MoveNet package not in the cache ({exc}); run ./run import-weights or "
                    "./run's bootstrap first")


@pytest.fixture(scope="session")
def thunder_json(movenet_models_dir: Path) -> Path:
    return npm_package.extract_model("movenet-thunder", download=False)
