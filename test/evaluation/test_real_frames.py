"""The real-frame set: stable ids, RGB uint8 pixels, vtest when opencv-doc is installed."""

from __future__ import annotations

import numpy as np
import pytest

from sparse_pose_ros.teachers.real_frames import (
    STILL_IDS,
    VTEST_PATH,
    load_real_frames,
    load_still,
    video_frame_id,
    vtest_available,
    vtest_indices,
)


def test_stills_are_rgb_uint8_with_stable_ids() -> None:
    frames = load_real_frames(include_video=False)
    assert [f.id for f in frames] == list(STILL_IDS)
    for f in frames:
        assert f.image.dtype == np.uint8 and f.image.ndim == 3 and f.image.shape[2] == 3
        assert f.image.flags["C_CONTIGUOUS"]
        assert f.index is None and f.sequence == f.id
    assert frames[0].image.shape == (512, 512, 3)
    cam = frames[1].image  # greyscale source, replicated to RGB
    assert np.array_equal(cam[..., 0], cam[..., 2])
    assert frames[2].image.shape == (600, 512, 3)
    again = load_still("grace_hopper")
    assert np.array_equal(again.image, frames[2].image)


def test_unknown_still_and_bad_indices() -> None:
    with pytest.raises(ValueError, match="unknown still"):
        load_still("lena")
    with pytest.raises(ValueError):
        vtest_indices(0, None, 795)
    assert vtest_indices(20, None, 795)[-1] == 780
    assert vtest_indices(20, 3, 795) == [0, 20, 40]
    assert video_frame_id("vtest", 40) == "vtest_f00040"


@pytest.mark.skipif(not vtest_available(), reason=f"{VTEST_PATH} missing: apt install opencv-doc")
def test_vtest_frames() -> None:
    frames = load_real_frames(vtest_step=400, include_stills=False)
    assert [f.id for f in frames] == ["vtest_f00000", "vtest_f00400"]
    for f in frames:
        assert f.image.shape == (576, 768, 3) and f.image.dtype == np.uint8
        assert f.sequence == "vtest"
    assert not np.array_equal(frames[0].image, frames[1].image)
