"""End to end: ./run label on three frames of vtest.avi with the real BlazePose teacher.

Skipped (with the reason) without the peer venv (tools/peer/setup_venv.sh) or opencv-doc.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sparse_pose_ros.data import label_cache as lc
from sparse_pose_ros.teachers.peer import peer_available
from sparse_pose_ros.teachers.real_frames import VTEST_PATH
from sparse_pose_ros.training.label import main

AVAILABLE, WHY = peer_available()


@pytest.mark.skipif(not AVAILABLE, reason=WHY)
@pytest.mark.skipif(not VTEST_PATH.is_file(), reason=f"{VTEST_PATH} missing (Debian opencv-doc)")
@pytest.mark.timeout(120)
def test_label_three_vtest_frames(tmp_path: Path) -> None:
    out, summary = tmp_path / "labels", tmp_path / "summary.json"
    # static mode: BlazePose's detector finds a pedestrian in frames 494-498 on its own
    args = ["--sources", "opencv_vtest", "--first", "494", "--step", "2", "--max-frames", "3",
            "--teacher-mode", "static", "--out", str(out),
            "--summary", str(summary), "--no-download", "--source-cache", str(tmp_path / "src")]
    assert main(args) == 0
    ls = lc.load_label_set(out / "opencv_vtest")
    assert ls.frame_ids == ["opencv_vtest_f00494", "opencv_vtest_f00496", "opencv_vtest_f00498"]
    assert [f["index"] for f in ls.manifest["frames"]] == [494, 496, 498]
    bp = ls.manifest["teachers"]["blazepose"]
    assert bp["versions"]["mediapipe_version"] == "0.10.21"
    assert bp["versions"]["enable_segmentation"] is True and bp["versions"]["mode"] == "static"
    assert ls.manifest["source"]["licence"] == "BSD-3-Clause"
    det = ls.blazepose["detected"]
    assert det.sum() >= 2, "BlazePose (static) finds a pedestrian in frames 494-498"
    for fid, d in zip(ls.frame_ids, det, strict=True):
        m = ls.mask(fid)
        assert (m is not None) == bool(d)
        if m is not None:
            assert m.shape == (576 // 4, 768 // 4) and m.dtype == np.uint8 and m.max() > 127
    px = ls.blazepose["h36m_px"][det]
    assert np.all((px > -100) & (px < 900))
    images = dict(lc.iter_images(ls))
    assert sorted(images) == [0, 1, 2] and images[0].shape == (576, 768, 3)
    s = json.loads(summary.read_text())
    assert s["sources"]["opencv_vtest"]["frames"] == 3 and s["missing"] == {}
    # another source labelled later: the corpus summary still reports vtest (from the cache)
    assert main(["--sources", "python_stills", "--out", str(out), "--summary", str(summary),
                 "--no-download"]) == 0
    s = json.loads(summary.read_text())
    assert s["sources"]["opencv_vtest"]["not_selected"] is True
    assert s["sources"]["python_stills"]["blazepose_detected"] == 3  # three portraits
    # same settings again: served from the cache, not relabelled
    assert main(args) == 0
    assert json.loads(summary.read_text())["sources"]["opencv_vtest"]["cached"] is True
    # the people teacher's second pass: the first person painted over, BlazePose finds
    # someone else or nobody, never the first person again
    from sparse_pose_ros.data import people_teacher as pt

    second, info, seconds = pt.second_pass(ls)
    assert second["h36m_px"].shape == (3, 17, 2) and info["mediapipe_version"] == "0.10.21"
    assert not second["detected"][~det].any()  # no first person: nothing to mask, not run
    for k in np.flatnonzero(second["detected"]):
        gap = np.linalg.norm(second["h36m_px"][k] - ls.blazepose["h36m_px"][k], axis=-1)
        assert np.median(gap) > 20.0, "the masked-out pedestrian was found again"
