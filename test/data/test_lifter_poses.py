"""Real 3D skeletons for the lifter: which sources are read, and rigid pinhole virtual views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sparse_pose_ros import skeleton
from sparse_pose_ros.data.label_cache import LabelSet
from sparse_pose_ros.data.lifter_poses import ViewRanges, real_poses, virtual_views

J = skeleton.NUM_JOINTS
ROOT = skeleton.ROOT


def _label_set(sid: str, split: str, world: np.ndarray, detected: np.ndarray,
               triangulated: dict[str, np.ndarray] | None = None) -> LabelSet:
    manifest = {"source": {"id": sid, "split": split}, "frames": []}
    return LabelSet(Path(sid), manifest, {"h36m_world_m": world, "detected": detected},
                    triangulated)


def _poses(n: int, seed: int, offset: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.3, (n, J, 3)) + offset


def test_real_poses_reads_training_sources_only_and_drops_incomplete_skeletons() -> None:
    world = _poses(5, 0, offset=1.0)
    world[1, 3] = np.nan  # a joint BlazePose did not give
    detected = np.array([True, True, True, False, True])
    cam = _poses(3 * 2, 1).reshape(3, 2, J, 3)
    cam[2, 0, 0] = np.nan
    tri = {"joints_cam_m": cam, "valid": np.array([True, False, True])}
    corpus = {
        "a": _label_set("a", "train", world, detected, tri),
        "held": _label_set("held", "heldout", _poses(4, 2), np.ones(4, bool), tri),
    }
    poses, counts = real_poses(corpus)
    # BlazePose: 5 rows - 1 missing joint - 1 not detected; triangulated: 2 valid frames x 2
    # views - 1 view with a missing joint; nothing from the held-out source
    assert counts == {"a:triangulated": 3, "a:blazepose_world": 3}
    assert poses.shape == (6, J, 3) and np.isfinite(poses).all()
    np.testing.assert_allclose(poses[:, ROOT], 0.0)  # root-relative
    expected = world[[0, 2, 4]] - world[[0, 2, 4]][:, ROOT:ROOT + 1]
    np.testing.assert_allclose(poses[3:], expected)
    only_tri, counts = real_poses(corpus, blazepose_world=False)
    assert counts == {"a:triangulated": 3} and len(only_tri) == 3
    empty, counts = real_poses({"held": corpus["held"]})
    assert empty.shape == (0, J, 3) and counts == {}


def test_virtual_views_are_rigid_pinhole_views() -> None:
    """A joint 1 m from the root stays 1 m from it in every view (turned, tilted, moved)."""
    pose = np.zeros((1, J, 3))
    pose[0, 1] = (1.0, 0.0, 0.0)
    pose[0, 10] = (0.0, -0.8, 0.0)  # head above the pelvis (y down)
    rng = np.random.default_rng(0)
    ranges = ViewRanges(off_axis=0.0, distance_m=(5.0, 5.0))
    xy, z = virtual_views(pose, 200, rng, ranges)
    assert xy.shape == (200, J, 2) and z.shape == (200, J)
    np.testing.assert_allclose(z[:, ROOT], 0.0)
    np.testing.assert_allclose(xy[:, ROOT], 0.0, atol=1e-9)  # on the optical axis
    # back-project with the known root distance: bone lengths are kept
    for j, length in ((1, 1.0), (10, 0.8)):
        depth = 5.0 + z[:, j]
        pts = np.concatenate([xy[:, j] * depth[:, None] / ranges.focal_px, z[:, j:j + 1]], 1)
        np.testing.assert_allclose(np.linalg.norm(pts, axis=1), length, rtol=1e-9)
    # every facing is drawn: the side joint comes nearer and farther
    assert z[:, 1].min() < -0.9 and z[:, 1].max() > 0.9


@pytest.mark.parametrize(("elevation", "nearer"), [(30.0, True), (-10.0, False)])
def test_camera_elevation_tilts_the_head_towards_or_away(elevation: float, nearer: bool) -> None:
    pose = np.zeros((1, J, 3))
    pose[0, 10] = (0.0, -0.8, 0.0)
    ranges = ViewRanges(elevation_deg=(elevation, elevation), off_axis=0.0)
    _, z = virtual_views(pose, 20, np.random.default_rng(1), ranges)
    # a camera above the person (looking down) sees the head nearer than the pelvis
    assert (z[:, 10] < 0).all() if nearer else (z[:, 10] > 0).all()
    np.testing.assert_allclose(np.abs(z[:, 10]), 0.8 * np.sin(np.deg2rad(abs(elevation))),
                               rtol=1e-9)


def test_virtual_views_of_nothing() -> None:
    xy, z = virtual_views(np.zeros((0, J, 3)), 5, np.random.default_rng(0))
    assert xy.shape == (0, J, 2) and z.shape == (0, J)


def test_median_bone_lengths_measures_each_bone_and_skips_incomplete_skeletons() -> None:
    from sparse_pose_ros.data.lifter_poses import median_bone_lengths

    rng = np.random.default_rng(0)
    poses = rng.normal(size=(5, skeleton.NUM_JOINTS, 3))
    bones = np.asarray(skeleton.BONES)
    each = np.linalg.norm(poses[:, bones[:, 1]] - poses[:, bones[:, 0]], axis=-1)
    broken = poses[:1].copy()
    broken[0, 3] = np.nan
    got = median_bone_lengths(np.concatenate([poses, broken, broken]))
    np.testing.assert_allclose(got, np.median(each, axis=0))
    with pytest.raises(ValueError, match="no complete skeleton"):
        median_bone_lengths(broken)



def _views_label_set(people: np.ndarray | None) -> LabelSet:
    """Two views × two frames of a calibrated trial; frame 1 is invalid in the triangulation."""
    k = np.array([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]])
    cam = _poses(2 * 2, 3, offset=0.0).reshape(2, 2, J, 3)
    cam[..., 2] += 4.0  # in front of both cameras
    tri = {"frame_index": np.arange(2), "valid": np.array([True, False]),
           "joints_cam_m": cam, "views": np.array(["c1", "c2"]), "K": np.stack([k, 2 * k])}
    frames = [{"id": f"{v}_{i}", "view": v, "index": i} for v in ("c1", "c2") for i in range(2)]
    manifest = {"source": {"id": "t", "split": "train"}, "frames": frames,
                "teachers": {"people": {}} if people is not None else {}}
    return LabelSet(Path("t"), manifest, {}, tri, _people=(
        {"people_cam_m": people} if people is not None else None))


def test_view_skeletons_pairs_each_frame_with_its_views_skeletons_and_k() -> None:
    from sparse_pose_ros.data.lifter_poses import view_skeletons

    ls = _views_label_set(None)
    got = view_skeletons(ls)
    # the one-person triangulation: valid frame 0 in both views, rows 0 (c1) and 2 (c2)
    assert [row for row, _, _ in got] == [0, 2]
    np.testing.assert_allclose(got[0][1][0], ls.triangulated["joints_cam_m"][0, 0])
    np.testing.assert_allclose(got[1][1][0], ls.triangulated["joints_cam_m"][0, 1])
    np.testing.assert_allclose(got[1][2], ls.triangulated["K"][1])  # view c2's K
    # every person of the trial, per row, where the people teacher labelled it; a person
    # with a missing joint or behind the camera is dropped
    people = np.abs(_poses(4 * 2, 4).reshape(4, 2, J, 3)) + 1.0
    people[1, 0, 5] = np.nan
    people[3, 1, 2, 2] = -1.0
    got = view_skeletons(_views_label_set(people))
    assert [(row, len(s)) for row, s, _ in got] == [(0, 2), (1, 1), (2, 2), (3, 1)]
    np.testing.assert_allclose(got[1][1][0], people[1, 1])
    # a source without calibrated views has none
    plain = LabelSet(Path("p"), {"source": {"id": "p", "split": "train"}, "frames": []}, {})
    assert view_skeletons(plain) == []
