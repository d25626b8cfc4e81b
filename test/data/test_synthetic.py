"""Rendered frames carry consistent labels; generation is deterministic by seed."""

from __future__ import annotations

import numpy as np
import pytest

from sparse_pose_ros import skeleton
from sparse_pose_ros.data import poses
from sparse_pose_ros.data.camera import project
from sparse_pose_ros.data.synthetic import FAMILY_IDS, SyntheticGenerator, choose_family


def test_frame_shapes_and_dtypes(train_frames):
    f = train_frames[0]
    assert f.image.shape == (256, 256, 3) and f.image.dtype == np.uint8
    assert f.mask.shape == (256, 256) and f.mask.dtype == np.uint8
    assert f.joints_2d.shape == (17, 2) and f.joints_3d.shape == (17, 3)
    assert f.visible.shape == (17,) and f.K.shape == (3, 3)


def test_3d_joints_project_onto_2d_joints(train_frames):
    for f in train_frames:
        uv = project(f.joints_3d.astype(np.float64), f.K)
        assert np.abs(uv - f.joints_2d).max() < 0.5
        assert (f.joints_3d[:, 2] > 0).all()  # mm, in front of the camera


def test_person_size_in_frame(train_frames):
    for f in train_frames:
        x0, y0, x1, y1 = f.bbox
        assert 0.15 * 256 < max(y1 - y0, x1 - x0) <= 256


def test_silhouette_contains_visible_joints(train_frames):
    hits, total = 0, 0
    for f in train_frames:
        assert f.mask.sum() > 200
        inside = f.visible.astype(bool)
        px = np.rint(f.joints_2d[inside]).astype(int)
        # Joint centres of thin limbs can sit on the silhouette border: allow 2 px.
        padded = np.pad(f.mask, 2)
        for x, y in px:
            hits += padded[y : y + 5, x : x + 5].any()
            total += 1
    assert total > 0 and hits / total > 0.9


def test_rendered_silhouette_matches_projected_mesh(train_generator):
    """The renderer's camera must match K exactly (pyrender's pixel-edge convention)."""
    from sparse_pose_ros.data.body import Body
    from sparse_pose_ros.data.render import Lighting, Surface

    body = Body("convex", lod=1)
    posed = body.pose(np.zeros((21, 3)))
    verts = (posed.vertices - posed.joints[0]) * np.array([-1.0, -1.0, -1.0])  # face camera
    verts[:, 2] += 3.0
    K = np.array([[300.0, 0.0, 120.3], [0.0, 300.0, 131.7], [0.0, 0.0, 1.0]])
    light = Lighting(np.array([0.0, 0.3, 1.0]), 3.0, np.ones(3), np.array([1.0, 0.0, 1.0]), 1.0,
                     0.3)
    _, depth = train_generator.renderer.render(verts, body.faces, K,
                                               Surface(np.ones(3) * 0.7, 0.5, 0.0), light)
    ys, xs = np.nonzero(depth > 0)
    uv = project(verts, K)
    # Rasterised pixel centres lie within half a pixel inside the projected outline.
    assert abs(xs.min() - uv[:, 0].min()) < 1.0 and abs(xs.max() - uv[:, 0].max()) < 1.0
    assert abs(ys.min() - uv[:, 1].min()) < 1.0 and abs(ys.max() - uv[:, 1].max()) < 1.0


def test_same_seed_same_frames(train_generator):
    other = SyntheticGenerator("train", seed=123)
    try:
        for index in (3, 1):  # order must not matter
            a, b = train_generator.frame(index), other.frame(index)
            for key in ("image", "mask", "joints_2d", "joints_3d", "visible", "K"):
                np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    finally:
        other.close()


def test_different_seed_or_split_differs(train_generator, train_frames):
    other = SyntheticGenerator("test", seed=123)  # same seed, other split
    try:
        assert not np.array_equal(other.frame(0).joints_3d, train_frames[0].joints_3d)
    finally:
        other.close()
    assert not np.array_equal(train_generator.frame(1).joints_3d, train_frames[0].joints_3d)


def test_test_split_holds_out_family_and_backgrounds():
    from sparse_pose_ros.data import backgrounds

    assert not set(poses.HELD_OUT_FAMILIES) & set(poses.TRAIN_FAMILIES)
    assert not set(backgrounds.TRAIN_PHOTOS) & set(backgrounds.TEST_PHOTOS)
    assert not set(backgrounds.TRAIN_PROCEDURAL) & set(backgrounds.TEST_PROCEDURAL)
    rng = np.random.default_rng(0)
    train = [choose_family(rng, "train", 0.3) for _ in range(400)]
    assert set(train) == set(poses.TRAIN_FAMILIES)
    test = [choose_family(rng, "test", 0.3) for _ in range(400)]
    share = np.mean([f in poses.HELD_OUT_FAMILIES for f in test])
    assert 0.2 < share < 0.4


def test_family_ids_cover_all_families():
    assert sorted(FAMILY_IDS.values()) == list(range(len(poses.ALL_FAMILIES)))


def test_bad_split_is_rejected():
    with pytest.raises(ValueError, match="split"):
        SyntheticGenerator("validation", seed=0)


def test_head_joints_come_from_head_vertices():
    from sparse_pose_ros.data.body import Body

    for style in ("wooden", "convex"):
        body = Body(style)
        rest = body.pose(np.zeros((21, 3)))
        names = skeleton.JOINT_NAMES
        head_top = rest.joints[names.index("head_top")]
        nose = rest.joints[names.index("neck_nose")]
        thorax = rest.joints[names.index("thorax")]
        assert head_top[1] == pytest.approx(rest.vertices[:, 1].max(), abs=0.02)  # top of body
        assert nose[2] > thorax[2] + 0.05  # on the face, in front (+Z)
        # Subject's left is +X in the mannequin frame.
        assert rest.joints[names.index("left_hip"), 0] > rest.joints[names.index("right_hip"), 0]
