"""Datasets and loaders for training and evaluation, from the ``data`` section of a config.

Synthetic data: ``<root>/<train_split>`` and ``<root>/<test_split>`` hold the rendered shards
(``python -m sparse_pose_ros.data.generate``). Human3.6M: the preprocessed layout read by
``sparse_pose_ros.data.h36m``. Both yield ``ShardDataset``-format items; this module adds the
augmentation (training only), the resize to the network input and the batching.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Subset

from ..data.augment import Augmenter
from ..data.h36m import H36MDataset
from ..data.shards import ShardDataset
from .batches import Collator
from .config import DataConfig, TrainConfig
from .distributed import DistInfo
from .transforms import Pipeline

LOG = logging.getLogger(__name__)


def make_augmenter(data: DataConfig, seed: int) -> Augmenter | None:
    """The data package's augmenter configured from the config (None if everything is off)."""
    if not (data.flip or data.scale or data.rotation_deg or data.shift or data.colour
            or data.person_crop):
        return None
    return Augmenter(
        flip_prob=data.flip,
        max_rotation_deg=data.rotation_deg,
        scale_range=(1.0 - data.scale, 1.0 + data.scale),
        max_shift_frac=data.shift,
        colour_strength=data.colour,
        seed=seed,
        person_crop_prob=data.person_crop,
    )


def _reseed_worker(worker_id: int) -> None:
    """Give every DataLoader worker its own augmentation stream (forked copies share one)."""
    info = torch.utils.data.get_worker_info()
    if info is None:
        return
    pipeline = getattr(_base_dataset(info.dataset), "transform", None)
    augment = getattr(pipeline, "augment", None)
    if augment is not None:
        augment.reseed(int(info.seed % 2**32))


def open_split(dataset: str, root: str | Path, split: str, transform: Any) -> Any:
    """One split of the synthetic shards or of Human3.6M, with ``transform`` on every sample."""
    root = Path(root)
    if dataset == "synthetic":
        folder = root / split
        if not folder.is_dir():
            raise ValueError(
                f"no synthetic split at {folder}; render it with "
                f"python -m sparse_pose_ros.data.generate --out {folder} --split {split} ..."
            )
        return ShardDataset(folder, transform=transform)
    if dataset == "h36m":
        try:
            return H36MDataset(root, split=split, transform=transform)
        except FileNotFoundError as exc:
            raise ValueError(str(exc)) from exc
    raise ValueError(f"unknown dataset {dataset!r} (synthetic or h36m)")


def _base_dataset(dataset: Any) -> Any:
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset


def set_epoch(loader: DataLoader, epoch: int, seed: int) -> None:
    """Make epoch ``epoch``'s sample order and augmentation a function of (seed, epoch) only.

    That is what lets an interrupted run resumed at an epoch boundary continue exactly as the
    uninterrupted run would (DistributedSampler has ``set_epoch``; the single-process sampler's
    generator and the in-process augmenter are reseeded here; worker processes reseed from the
    loader's base seed, itself drawn from the restored torch RNG).
    """
    sampler = loader.sampler
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    elif isinstance(sampler, RandomSampler) and sampler.generator is not None:
        sampler.generator.manual_seed(seed * 100_003 + epoch)
    pipeline = getattr(_base_dataset(loader.dataset), "transform", None)
    augment = getattr(pipeline, "augment", None)
    if augment is not None:
        augment.reseed(seed * 100_003 + epoch)


def _cap(dataset: Any, limit: int) -> Any:
    if limit and len(dataset) > limit:
        return Subset(dataset, range(limit))
    return dataset


def describe(dataset: Any) -> int:
    return int(len(dataset))


def build_loaders(
    cfg: TrainConfig, dist: DistInfo
) -> tuple[DataLoader, DataLoader, dict[str, Any]]:
    """Training and held-out loaders plus a JSON-able description of the data (for the meta)."""
    data, net = cfg.data, cfg.model
    seed = cfg.run.seed + 1000 * dist.rank
    augment = make_augmenter(data, seed)
    train_set = open_split(
        data.dataset, data.root, data.train_split, Pipeline(net.input_size, augment)
    )
    test_set = open_split(data.dataset, data.root, data.test_split, Pipeline(net.input_size, None))
    train_set = _cap(train_set, data.max_train_frames)
    test_set = _cap(test_set, data.max_test_frames)
    collate = Collator(net.input_size, net.depth_range_mm, net.input_mean, net.input_std)
    if dist.enabled:
        sampler: Any = DistributedSampler(
            train_set,
            num_replicas=dist.world_size,
            rank=dist.rank,
            shuffle=True,
            seed=cfg.run.seed,
            drop_last=True,
        )
    else:
        gen = torch.Generator()
        gen.manual_seed(cfg.run.seed)
        sampler = RandomSampler(train_set, generator=gen)
    common = {
        "num_workers": data.workers,
        "collate_fn": collate,
        "pin_memory": torch.cuda.is_available(),
        "persistent_workers": data.workers > 0,
        "worker_init_fn": _reseed_worker if data.workers > 0 else None,
    }
    train_loader = DataLoader(
        train_set, batch_size=cfg.optim.batch_size, sampler=sampler, drop_last=True, **common
    )
    test_loader = DataLoader(test_set, batch_size=cfg.eval.batch_size, shuffle=False, **common)
    desc = {
        "dataset": data.dataset,
        "root": str(data.root),
        "train_split": data.train_split,
        "test_split": data.test_split,
        "train_frames": describe(train_set),
        "test_frames": describe(test_set),
        "augmentation": {
            "flip": data.flip,
            "scale": data.scale,
            "rotation_deg": data.rotation_deg,
            "shift": data.shift,
            "colour": data.colour,
            "person_crop": data.person_crop,
        },
    }
    return train_loader, test_loader, desc
