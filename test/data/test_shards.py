"""Shard round trip, the Dataset item format, and resumable generation."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from sparse_pose_ros.data.generate import generate
from sparse_pose_ros.data.shards import ShardDataset, shard_path, write_shard


def test_round_trip_keeps_labels_exact_and_images_close(tmp_path, train_frames):
    write_shard(tmp_path / "train-00000.npz", train_frames[:4], {"split": "train"})
    write_shard(tmp_path / "train-00001.npz", train_frames[4:], {"split": "train"})
    data = ShardDataset(tmp_path)
    assert len(data) == len(train_frames)
    for i, frame in enumerate(train_frames):
        sample = data.sample(i)
        np.testing.assert_array_equal(sample["mask"], frame.mask)  # PNG: lossless
        for key in ("joints_2d", "joints_3d", "visible", "in_frame", "K"):
            np.testing.assert_array_equal(sample[key], getattr(frame, key))
        mse = np.mean((sample["image"].astype(float) - frame.image) ** 2)
        assert 10 * np.log10(255.0**2 / mse) > 25.0  # JPEG q95 of a frame with sensor noise
        assert sample["index"] == frame.meta["index"]


def test_item_format(tmp_path, train_frames):
    write_shard(tmp_path / "train-00000.npz", train_frames[:2], {"split": "train"})
    item = ShardDataset(tmp_path)[1]
    expected = {
        "image": ((3, 256, 256), torch.float32),
        "mask": ((1, 256, 256), torch.float32),
        "joints_2d": ((17, 2), torch.float32),
        "joints_3d": ((17, 3), torch.float32),
        "visible": ((17,), torch.float32),
        "in_frame": ((17,), torch.float32),
        "K": ((3, 3), torch.float32),
        "mask_valid": ((), torch.float32),
        "family": ((), torch.int64),
        "index": ((), torch.int64),
    }
    assert {k: (tuple(v.shape), v.dtype) for k, v in item.items()} == expected
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
    batch = torch.utils.data.default_collate([item, item])
    assert batch["image"].shape == (2, 3, 256, 256)


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no shards"):
        ShardDataset(tmp_path)


def test_generation_resumes_and_is_worker_count_independent(tmp_path):
    out = tmp_path / "gen"
    stats = generate(out, "test", count=5, workers=1, seed=7, shard_size=2, show_progress=False)
    assert stats["rendered"] == 5
    reference = ShardDataset(out).labels["joints_3d"][:2].copy()
    kept = shard_path(out, "test", 0)
    kept_mtime = os.stat(kept).st_mtime_ns
    os.remove(shard_path(out, "test", 1))  # lost shard
    shard_path(out, "test", 2).write_bytes(b"truncated")  # interrupted write
    with pytest.raises(ValueError, match="unreadable shard"):
        ShardDataset(out)

    stats = generate(out, "test", count=5, workers=2, seed=7, shard_size=2, show_progress=False)
    assert stats["rendered"] == 3  # shard 1 (2 frames) + shard 2 (1 frame)
    assert os.stat(kept).st_mtime_ns == kept_mtime
    data = ShardDataset(out)
    assert len(data) == 5
    assert data.labels["index"].tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(data.labels["joints_3d"][:2], reference)

    # Frames rendered by worker processes equal the same frames rendered in this process.
    from sparse_pose_ros.data.synthetic import SyntheticGenerator

    gen = SyntheticGenerator("test", seed=7)
    try:
        np.testing.assert_array_equal(gen.frame(3).joints_3d, data.labels["joints_3d"][3])
        np.testing.assert_array_equal(gen.frame(3).mask, data.sample(3)["mask"])
    finally:
        gen.close()

    stats = generate(out, "test", count=5, workers=1, seed=7, shard_size=2, show_progress=False)
    assert stats["rendered"] == 0


def test_plain_and_dressed_shards_are_not_mixed_on_resume(tmp_path):
    """A plain-body (synth_v1) run resumes over shards written before outfits were recorded, but
    never accepts dressed shards, and vice versa."""
    from sparse_pose_ros.data.generate import _expected_info, _is_complete
    from sparse_pose_ros.data.shards import read_info

    out = tmp_path / "gen"
    generate(out, "test", count=2, workers=1, seed=7, shard_size=2, show_progress=False)
    path = shard_path(out, "test", 0)
    frames = range(0, 2)
    assert read_info(path)["outfits"] is False
    assert _is_complete(path, _expected_info("test", 7, frames, outfits=False))
    assert not _is_complete(path, _expected_info("test", 7, frames, outfits=True))
    assert generate(out, "test", count=2, workers=1, seed=7, shard_size=2, show_progress=False,
                    outfits=True)["rendered"] == 2  # a dressed run re-renders
    assert read_info(path)["outfits"] is True
    assert not _is_complete(path, _expected_info("test", 7, frames, outfits=False))
