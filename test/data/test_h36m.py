"""Human3.6M loader on a tiny generated fixture in the preprocessed layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from h36m_fixture import write_h36m_fixture

from sparse_pose_ros.data.camera import project
from sparse_pose_ros.data.h36m import H36MDataset


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("h36m")
    truth = write_h36m_fixture(root)
    return root, truth


def test_protocol1_split_and_stride(fixture_root):
    root, _ = fixture_root
    train = H36MDataset(root, "train")  # S1,5,6,7,8, every 5th frame: 0, 5, 10
    test = H36MDataset(root, "test")  # S9,11, every 64th frame: 0, 64
    assert len(train) == 5 * 3 and len(test) == 2 * 2
    assert len(H36MDataset(root, "test", frame_stride=1)) == 2 * 4


def test_labels_match_camera_and_crop(fixture_root):
    root, truth = fixture_root
    data = H36MDataset(root, "test", frame_stride=1)
    for i in range(len(data)):
        s = data.sample(i)
        assert s["image"].shape == (256, 256, 3)
        # 2D labels are the projection of the 3D labels with the crop-adjusted K.
        assert np.abs(project(s["joints_3d"].astype(np.float64), s["K"]) - s["joints_2d"]).max() \
            < 1e-2
        # The person box fills the crop (1.25 x the longer box side).
        extent = np.ptp(s["joints_2d"], axis=0).max()
        assert 256 / 1.25 - 2 < extent < 256 / 1.25 + 2
        # The red marker drawn at the pelvis lands where the pelvis label says.
        red = (s["image"][..., 0] > 200) & (s["image"][..., 1] < 80)
        ys, xs = np.nonzero(red)
        assert len(xs) > 0
        assert np.hypot(xs.mean() - s["joints_2d"][0, 0], ys.mean() - s["joints_2d"][0, 1]) < 1.5
    truths = {tuple(np.round(v[0], 3)) for v in truth.values()}
    assert tuple(np.round(data.sample(0)["joints_3d"][0].astype(np.float64), 3)) in truths


def test_items_share_the_synthetic_format(fixture_root):
    root, _ = fixture_root
    item = H36MDataset(root, "train")[0]
    assert item["image"].shape == (3, 256, 256) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (1, 256, 256) and float(item["mask_valid"]) == 0.0
    assert item["joints_3d"].shape == (17, 3) and item["K"].shape == (3, 3)
    assert torch.equal(item["visible"], item["in_frame"])


def test_missing_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="annotation file missing"):
        H36MDataset(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        H36MDataset(tmp_path, "val")
