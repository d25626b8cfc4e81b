"""The one-flag data source switch and the contact-sheet / statistics CLI."""

from __future__ import annotations

import json

import cv2
import pytest
from h36m_fixture import write_h36m_fixture

from sparse_pose_ros.data.datasets import open_dataset
from sparse_pose_ros.data.h36m import H36MDataset
from sparse_pose_ros.data.inspect_shards import main as inspect_main
from sparse_pose_ros.data.shards import ShardDataset, write_shard


def test_open_dataset_switches_source(tmp_path, train_frames):
    (tmp_path / "synth" / "train").mkdir(parents=True)
    write_shard(tmp_path / "synth" / "train" / "train-00000.npz", train_frames[:2], {})
    synth = open_dataset("synthetic", tmp_path / "synth", "train")
    assert isinstance(synth, ShardDataset) and len(synth) == 2
    write_h36m_fixture(tmp_path / "h36m", subjects=(9, 11), frames=(0,))
    real = open_dataset("h36m", tmp_path / "h36m", "test")
    assert isinstance(real, H36MDataset) and len(real) == 2
    assert synth[0].keys() == real[0].keys()
    with pytest.raises(ValueError, match="unknown data source"):
        open_dataset("coco", tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        open_dataset("synthetic", tmp_path / "synth", "val")


def test_inspect_writes_sheet_and_stats(tmp_path, train_frames, capsys):
    write_shard(tmp_path / "train-00000.npz", train_frames, {})
    sheet, stats = tmp_path / "sheet.png", tmp_path / "stats.json"
    assert inspect_main(["--data", str(tmp_path), "--sheet", str(sheet), "--stats", str(stats),
                         "--count", "4", "--columns", "2"]) == 0
    image = cv2.imread(str(sheet))
    assert image.shape == (2 * 256, 2 * 256, 3)
    report = json.loads(stats.read_text())
    assert report["frames"] == len(train_frames)
    assert abs(sum(report["family_share"].values()) - 1.0) < 0.01
    assert set(report["visible_share_per_joint"]) >= {"pelvis", "head_top"}
    capsys.readouterr()
