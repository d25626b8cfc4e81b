"""Label cache round trip, completeness (manifest last) and the teacher record conversion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sparse_pose_ros.data import label_cache as lc
from sparse_pose_ros.data.blazepose_teacher import records_to_arrays
from sparse_pose_ros.data.real_sources import SOURCES_BY_ID
from sparse_pose_ros.training.label import (
    check_synchronised,
    frame_indices,
    summarise_triangulation,
)


def _records() -> list[dict]:
    rng = np.random.default_rng(0)
    lm = rng.uniform(0, 1, (33, 4))
    return [
        {"id": "v_f00000", "detected": True, "landmarks": lm.tolist(),
         "world_landmarks": rng.normal(0, 0.3, (33, 3)).tolist(),
         "h36m_px": rng.uniform(0, 500, (17, 2)).tolist(),
         "h36m_visibility": rng.uniform(0, 1, 17).tolist(),
         "h36m_world_m": rng.normal(0, 0.3, (17, 3)).tolist()},
        {"id": "v_f00002", "detected": False, "landmarks": None, "world_landmarks": None},
        {"id": "v_f00004", "detected": True, "landmarks": lm.tolist(), "world_landmarks": None,
         "h36m_px": np.zeros((17, 2)).tolist(), "h36m_visibility": np.ones(17).tolist()},
    ]


def _manifest(ids: list[str]) -> dict:
    return {"source": SOURCES_BY_ID["opencv_vtest"].record(), "step": 2,
            "frames": [{"id": i, "index": 2 * k, "detected": {"blazepose": k != 1}}
                       for k, i in enumerate(ids)],
            "teachers": {"blazepose": {"file": lc.BLAZEPOSE_FILE}}}


def test_records_to_arrays_nan_where_nobody() -> None:
    a = records_to_arrays(_records())
    assert a["detected"].tolist() == [True, False, True]
    assert a["landmarks"].shape == (3, 33, 4) and a["landmarks"].dtype == np.float32
    assert np.isnan(a["landmarks"][1]).all() and np.isfinite(a["landmarks"][0]).all()
    assert np.isnan(a["world_landmarks"][2]).all()  # detected but no world landmarks
    assert list(a["frame_ids"]) == ["v_f00000", "v_f00002", "v_f00004"]


def test_round_trip(tmp_path: Path) -> None:
    bp = records_to_arrays(_records())
    ids = list(bp["frame_ids"])
    masks = {"v_f00000": np.full((4, 5), 200, np.uint8), "v_f00004": np.zeros((4, 5), np.uint8)}
    tri = {"frame_index": np.arange(2), "joints_world_m": np.ones((2, 17, 3), np.float32)}
    lc.write_label_set(tmp_path / "opencv_vtest", _manifest(ids), bp, masks, tri)
    ls = lc.load_label_set(tmp_path / "opencv_vtest")
    assert ls.frame_ids == ids and ls.split == "train"
    assert ls.manifest["format"] == lc.LABEL_FORMAT
    for k, v in bp.items():
        np.testing.assert_array_equal(ls.blazepose[k], v)
    np.testing.assert_array_equal(ls.mask("v_f00000"), masks["v_f00000"])
    assert ls.mask("v_f00002") is None
    assert ls.triangulated is not None and ls.triangulated["joints_world_m"].shape == (2, 17, 3)
    assert list(lc.load_corpus(tmp_path)) == ["opencv_vtest"]


def test_incomplete_or_inconsistent_sets_are_refused(tmp_path: Path) -> None:
    bp = records_to_arrays(_records())
    ids = list(bp["frame_ids"])
    with pytest.raises(ValueError, match="frame_ids differ"):
        lc.write_label_set(tmp_path / "a", _manifest(ids[::-1]), bp)
    with pytest.raises(ValueError, match="masks for frames not in the manifest"):
        lc.write_label_set(tmp_path / "b", _manifest(ids), bp, {"zzz": np.zeros((2, 2))})
    assert not (tmp_path / "b" / lc.MANIFEST).exists()  # manifest only after the arrays
    short = {k: v[:2] for k, v in bp.items()}
    with pytest.raises(ValueError, match="expected"):
        lc.write_label_set(tmp_path / "c", _manifest(ids), short)
    lc.write_label_set(tmp_path / "d", _manifest(ids), bp)
    (tmp_path / "d" / lc.MANIFEST).write_text(json.dumps({"format": "other/0"}))
    with pytest.raises(ValueError, match="format"):
        lc.load_label_set(tmp_path / "d")
    with pytest.raises(FileNotFoundError, match="run ./run label"):
        lc.load_label_set(tmp_path / "b")
    assert lc.load_corpus(tmp_path / "b") == {}  # a folder without manifest: not a set


def test_frame_selection_and_synchronisation() -> None:
    assert frame_indices(10, 3, None) == [0, 3, 6, 9]
    assert frame_indices(10, 3, 2) == [0, 3]
    assert frame_indices(10, 3, None, first=4) == [4, 7]
    with pytest.raises(ValueError):
        frame_indices(10, 0, None)
    same = {"frames": 100, "fps": 60.0}
    check_synchronised([same, same], ("cam01", "cam02"))
    with pytest.raises(ValueError, match="not frame-synchronised"):
        check_synchronised([same, {"frames": 99, "fps": 60.0}], ("cam01", "cam02"))


def test_triangulation_summary_counts_only_valid_labelled_joints() -> None:
    t, v, j = 3, 4, 17
    res = np.full((t, j), np.nan, np.float32)
    res[0] = 5.0
    res[1, :10] = 15.0
    res[2] = 99.0  # invalid frame: must not enter the statistics
    used = np.zeros((t, v, j), bool)
    used[0] = True
    used[1, :3, :10] = True
    tri = {"valid": np.array([True, True, False]), "residual_px": res, "views_used": used,
           "view_consistent": np.array([[1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 0, 0]], bool)}
    s = summarise_triangulation(tri)
    assert s["frames_valid"] == 2 and s["joints_labelled"] == 27 and s["joints_possible"] == 34
    assert s["views_used_histogram"] == {"2": 0, "3": 10, "4": 17}
    assert s["residual_px_all"]["median"] == 5.0 and s["residual_px_all"]["n"] == 27
    assert s["residual_px_per_joint"]["head_top"]["n"] == 1
    assert s["frames_by_consistent_views"] == {"0": 0, "1": 1, "2": 0, "3": 1, "4": 1}


def test_teacher_check_is_zero_for_a_teacher_equal_to_the_triangulation() -> None:
    from sparse_pose_ros.training.label import teacher_vs_triangulated

    rng = np.random.default_rng(3)
    t = 4
    world = rng.normal(0, 0.4, (t, 17, 3))
    cam = np.stack([world + [0, 0, 3.0], world[..., [1, 0, 2]] + [0, 0, 4.0]], axis=1)
    tri = {"valid": np.array([True, True, True, False]), "joints_world_m": world,
           "joints_cam_m": cam, "frame_index": np.arange(t), "views": np.array(["a", "b"]),
           "view_consistent": np.array([[1, 1], [1, 1], [1, 0], [1, 1]], bool)}
    frames = [{"view": name, "index": i} for name in ("a", "b") for i in range(t)]
    # view a's teacher = its camera-frame labels hip-centred; view b's has x and y swapped
    rows = [cam[i, 0] - cam[i, 0, :1] for i in range(t)] + [
        world[i] - world[i, :1] for i in range(t)]
    bp = {"detected": np.ones(2 * t, bool), "h36m_world_m": np.stack(rows)}
    bp["detected"][1] = False  # view a, frame 1: nobody, left out
    out = teacher_vs_triangulated(tri, frames, bp)
    assert out["frames_all_joints"] == 3
    assert out["per_view_mm"]["a"] == {"frames": 2, "mpjpe": 0.0, "pa_mpjpe": 0.0}
    # view b, frame 2 saw someone else (not consistent): left out too
    assert out["per_view_mm"]["b"]["frames"] == 2 and out["per_view_mm"]["b"]["mpjpe"] > 10
    assert out["per_view_mm"]["b"]["pa_mpjpe"] > 1  # mirrored axes: no rotation aligns them
    seg = out["segment_length_mm"]["left_shoulder-left_elbow"]
    assert seg["mean_mm"] > 0 and seg["std_mm"] > 0
