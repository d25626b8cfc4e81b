"""Frame sources of camera_replay: video, folder, single image, bundled photos, bad specs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sparse_pose_ros.pipeline.sources import (
    VTEST_AVI,
    SourceError,
    bundled_photos,
    is_video,
    open_source,
)


def test_folder_and_single_image(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((20, 30, 3), i * 40, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    frames = list(open_source(str(tmp_path))())
    assert len(frames) == 3 and frames[2][0].shape == (20, 30, 3) and frames[0][1] is None
    single = list(open_source(str(tmp_path / "1.png"), width=60)())
    assert len(single) == 1 and single[0][0].shape == (40, 60, 3)


def test_video_file(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for _ in range(5):
        writer.write(np.full((24, 32, 3), (0, 0, 200), np.uint8))
    writer.release()
    make = open_source(str(path))
    frames = list(make())
    assert len(frames) == 5
    assert frames[0][0][12, 16, 0] > 150  # BGR red in the file -> R channel in RGB
    assert len(list(make())) == 5  # a fresh iterator per pass (loop)
    # tracking applies to videos only: not to stills, folders or renders
    assert is_video(str(path)) and not is_video(str(tmp_path)) and not is_video("synthetic")
    assert is_video("bundled") == VTEST_AVI.is_file()


def test_bundled_photos_are_real_pictures():
    photos = bundled_photos()
    assert photos, "scikit-image/matplotlib sample photos should be installed by requirements"
    for _, rgb in photos:
        assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8


def test_bad_specs(tmp_path):
    with pytest.raises(SourceError, match="not a video"):
        open_source(str(tmp_path / "missing.xyz"))
    with pytest.raises(SourceError, match="no images"):
        next(open_source(str(tmp_path))())
