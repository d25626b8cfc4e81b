"""Every person of a multi-person multiview trial: the mask painted over, the people
triangulated from two passes into per-row arrays, the cache reading them back, and the lifter's
real skeletons taking them instead of the one-person triangulation. BlazePose itself (the
second pass) needs the peer venv and is exercised by ``./run label``; here its output is given."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from sparse_pose_ros import skeleton
from sparse_pose_ros.data import label_cache as lc
from sparse_pose_ros.data import people_teacher as pt
from sparse_pose_ros.data.lifter_poses import real_poses

sys.path.insert(0, str(Path(__file__).parent))
from test_triangulate import _rig  # noqa: E402

J = skeleton.NUM_JOINTS


def test_mask_out_paints_the_grown_person_and_nothing_else() -> None:
    rgb = np.full((40, 60, 3), 200, np.uint8)
    mask = np.zeros((10, 15), np.uint8)  # a quarter-size mask, as the cache stores them
    mask[4:6, 6:8] = 255
    out = pt.mask_out(rgb, mask, dilate_px=5)
    painted = (out == pt.MASK_FILL).all(axis=2)
    assert painted[16:24, 24:32].all()  # the person (4x upscaled) ...
    assert painted[14, 28] and not painted[5, 5]  # ... grown by a few pixels, not beyond
    assert (rgb == 200).all()  # a copy
    assert (pt.mask_out(rgb, None) == rgb).all()


def _trial(tmp_path: Path) -> tuple[lc.LabelSet, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """A 2-frame, 4-view trial: in frame 0 view 2 picked person b first, in frame 1 the second
    pass found nobody anywhere (one person)."""
    cams = _rig()
    rng = np.random.default_rng(3)
    a = rng.uniform([-0.3, -0.3, 0.1], [0.3, 0.3, 1.8], (J, 3))
    b = a + [0.9, -0.6, 0.0]
    frames, first_px, second_px = [], [], []
    for i in range(2):
        for v, c in enumerate(cams):
            frames.append({"id": f"t_{c.name}_f{i}", "member": c.name, "view": c.name,
                           "index": i, "width": 1088, "height": 1920})  # fmt: skip
            p, q = (b, a) if (i == 0 and v == 1) else (a, b)
            first_px.append(c.project(p))
            second_px.append(c.project(q) if i == 0 else np.full((J, 2), np.nan))
    n = len(frames)
    bp = {"h36m_px": np.array(first_px, np.float32), "detected": np.ones(n, bool),
          "h36m_visibility": np.full((n, J), 0.9, np.float32)}  # fmt: skip
    second = {"h36m_px": np.array(second_px, np.float32),
              "detected": np.array([f["index"] == 0 for f in frames]),
              "h36m_visibility": np.full((n, J), 0.9, np.float32)}  # fmt: skip
    tri = {"views": np.array([c.name for c in cams]), "K": np.stack([c.K for c in cams]),
           "dist": np.stack([c.dist for c in cams]), "R": np.stack([c.R for c in cams]),
           "t": np.stack([c.t for c in cams]), "size": np.array([c.size for c in cams]),
           "joints_cam_m": np.full((2, 4, J, 3), np.nan), "valid": np.zeros(2, bool)}
    manifest = {"source": {"id": "t", "split": "train"}, "frames": frames, "teachers": {}}
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / lc.MANIFEST).write_text(json.dumps(manifest))
    return lc.LabelSet(folder, manifest, bp, tri), second, a, b


def test_people_are_triangulated_into_every_views_rows(tmp_path: Path) -> None:
    ls, second, a, b = _trial(tmp_path)
    arrays, summary = pt.triangulate_all(ls, second, min_consistent_views=3)
    assert summary["frames_by_people"] == {"0": 0, "1": 1, "2": 1} and summary["people"] == 3
    assert summary["residual_px_median"] == pytest.approx(0.0, abs=1e-3)
    cams = _rig()
    for row, f in enumerate(ls.manifest["frames"]):
        v = [c.name for c in cams].index(f["view"])
        got = arrays["people_cam_m"][row]
        truth = [cams[v].to_camera(a), cams[v].to_camera(b)]
        n = 2 if f["index"] == 0 else 1
        assert np.isfinite(got[:n]).all() and not np.isfinite(got[n:]).any()
        for p in range(n):  # each found person is a or b, in this view's camera frame
            assert min(np.abs(got[p] - t).max() for t in truth) < 1e-3
    # frame 0, view 2: its first detection was b, so whoever is a took detection 1 there
    rows0 = [r for r, f in enumerate(ls.manifest["frames"]) if f["index"] == 0]
    det = arrays["people_detection"][rows0]
    assert sorted(det[1].tolist()) == [0, 1] and sorted(det[0].tolist()) == [0, 1]
    ls.triangulated = None
    with pytest.raises(ValueError, match="not multiview"):
        pt.triangulate_all(ls, second)


def test_cache_reads_people_and_the_lifter_prefers_them(tmp_path: Path) -> None:
    ls, second, a, b = _trial(tmp_path)
    arrays, summary = pt.triangulate_all(ls, second, min_consistent_views=3)
    arrays.update(frame_ids=np.array(ls.frame_ids), detected=second["detected"])
    record = {"file": lc.PEOPLE_FILE, "settings": pt.settings(3)}
    manifest = lc.add_teacher(ls.folder, "people", arrays, record, summary)
    back = lc.LabelSet(ls.folder, manifest, ls.blazepose, ls.triangulated)
    np.testing.assert_array_equal(back.people["people_cam_m"], arrays["people_cam_m"])
    poses, counts = real_poses({"t": back}, blazepose_world=False)
    assert counts == {"t:triangulated_people": 3 * 4}  # 3 people x 4 views
    np.testing.assert_allclose(poses[:, skeleton.ROOT], 0.0)
    (ls.folder / lc.PEOPLE_FILE).unlink()  # a damaged cache says how to repair it
    with pytest.raises(ValueError, match="--teachers people --force"):
        _ = lc.LabelSet(ls.folder, manifest, ls.blazepose, ls.triangulated).people
    assert lc.LabelSet(ls.folder, {**manifest, "teachers": {}}, ls.blazepose).people is None


def test_label_cli_stage_caches_people_and_force_relabels(tmp_path: Path, monkeypatch) -> None:
    """``training.label.label_people``: labels once, serves the cache while the settings are
    the same, labels again with ``force`` or other settings (the teacher itself is faked: it
    needs BlazePose)."""
    from sparse_pose_ros.training import label

    ls, second, _, _ = _trial(tmp_path)
    n = len(ls.frame_ids)
    bp = {k: np.zeros((n, *shape), np.float32) for k, shape in lc.BLAZEPOSE_ARRAYS.items()}
    bp.update(detected=np.ones(n, bool), frame_ids=np.array(ls.frame_ids))
    lc.write_label_set(ls.folder, {**ls.manifest, "summary": {}}, bp, None, ls.triangulated)
    calls: list[int] = []

    def fake(ls_arg: lc.LabelSet, mcv: int):
        calls.append(mcv)
        arrays, summary = pt.triangulate_all(ls, second, mcv)  # the trial's true detections
        arrays.update(frame_ids=np.array(ls_arg.frame_ids), detected=second["detected"])
        return arrays, {"file": lc.PEOPLE_FILE, "settings": pt.settings(mcv)}, summary

    monkeypatch.setattr(pt, "label_people", fake)
    first = label.label_people(ls.folder, 3, force=False)
    assert calls == [3] and first["people"]["people"] == 3 and "cached" not in first["people"]
    again = label.label_people(ls.folder, 3, force=False)
    assert calls == [3] and again["people"]["cached"] is True
    label.label_people(ls.folder, 3, force=True)
    label.label_people(ls.folder, 2, force=False)  # other settings: not the cached ones
    assert calls == [3, 3, 2]
    assert lc.load_label_set(ls.folder).people["people_cam_m"].shape == (n, pt.MAX_PEOPLE, J, 3)
