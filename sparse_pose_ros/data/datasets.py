"""One entry point for training/eval code: pick the data source with a single flag.

    open_dataset("synthetic", "data_cache/synth_v1", "train", transform=Augmenter())
    open_dataset("h36m", "/datasets/Human36M", "test")

Both return map-style datasets with identical item keys, dtypes and units (see
``shards.ShardDataset``), so the training loop does not care which one it gets.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SOURCES: tuple[str, ...] = ("synthetic", "h36m")


def open_dataset(
    source: str,
    root: Path | str,
    split: str,
    transform: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
) -> Any:
    """Open ``split`` ("train" or "test") of ``source`` stored under ``root``.

    For "synthetic", ``root`` holds one folder per split (``root/train``, ``root/test``) of shards
    written by ``python -m sparse_pose_ros.data.generate``. For "h36m", ``root`` holds
    ``images/`` and ``annotations/`` (see ``data.h36m``); the protocol-1 subjects are used.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if source == "synthetic":
        from sparse_pose_ros.data.shards import ShardDataset

        return ShardDataset(Path(root) / split, transform=transform)
    if source == "h36m":
        from sparse_pose_ros.data.h36m import H36MDataset

        return H36MDataset(root, split, transform=transform)
    raise ValueError(f"unknown data source {source!r}; choose one of {SOURCES}")
