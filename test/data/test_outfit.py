"""Outfits: region labels on both mannequin styles, plausible colours, and that painting a body
changes only its pixels (poses, cameras, masks and every other draw stay those of synth_v1)."""

from __future__ import annotations

import numpy as np
import pytest

from sparse_pose_ros.data.outfit import Region, sample_outfit


@pytest.fixture(scope="module", params=["wooden", "convex"])
def body(request):
    from sparse_pose_ros.data.body import Body

    return Body(request.param, lod=1)


def _rest(body):
    rest = body.model.rest_pose(dtype=np.float64)
    return body.model.vertices(rest), body.model.joint_transforms(rest)[:, :3, 3]


def test_every_region_is_on_the_body(body):
    assert body.regions.shape == (len(body.model.vertices(body.model.rest_pose())),)
    assert set(np.unique(body.regions)) == {int(r) for r in Region}


def test_face_is_front_hair_is_back_and_top(body):
    verts, joints = _rest(body)
    assert body.regions[body.nose_vertex] == Region.FACE
    assert body.regions[body.head_top_vertex] == Region.HAIR
    head_z = joints[15, 2]
    face_z = verts[body.regions == Region.FACE, 2] - head_z
    hair_z = verts[body.regions == Region.HAIR, 2] - head_z
    assert face_z.min() > -0.02 and np.median(face_z) > 0.03
    assert np.median(hair_z) < 0.0
    chest = verts[body.regions == Region.CHEST_FRONT]
    assert (chest[:, 2] > joints[9, 2]).all()  # the print is on the front only


def test_limb_regions_follow_their_bones(body):
    verts, joints = _rest(body)
    # The vertex 8 cm beyond each wrist belongs to the hand, mid-shin to the shin, the foot
    # joint to the foot.
    for wrist in (20, 21):
        tip = joints[wrist] + 0.08 * np.sign(joints[wrist, 0]) * np.array([1.0, 0, 0])
        assert body.regions[np.argmin(np.linalg.norm(verts - tip, axis=1))] == Region.HAND
    for knee, ankle in ((4, 7), (5, 8)):
        mid = 0.5 * (joints[knee] + joints[ankle])
        assert body.regions[np.argmin(np.linalg.norm(verts - mid, axis=1))] == Region.SHIN
    for foot in (10, 11):
        assert body.regions[np.argmin(np.linalg.norm(verts - joints[foot], axis=1))] == Region.FOOT


def test_outfit_colours_are_plausible_and_deterministic():
    first = sample_outfit(np.random.default_rng(3))
    again = sample_outfit(np.random.default_rng(3))
    np.testing.assert_array_equal(first.colours, again.colours)
    skins = []
    for seed in range(50):
        colours = sample_outfit(np.random.default_rng(seed)).colours
        assert colours.shape == (len(Region), 3)
        assert (colours >= 0).all() and (colours <= 1).all()
        np.testing.assert_array_equal(colours[Region.FACE], colours[Region.HAND])
        skins.append(colours[Region.FACE])
    assert np.ptp(np.array(skins), axis=0).max() > 0.3  # varied skin tones
    labels = np.array([Region.FACE, Region.HAIR, Region.FOOT])
    painted = first.vertex_colours(labels)
    assert painted.dtype == np.float32 and painted.shape == (3, 3)
    np.testing.assert_allclose(painted[1], first.colours[Region.HAIR], atol=1e-6)


def test_outfits_change_only_the_image(train_generator):
    from sparse_pose_ros.data.synthetic import SyntheticConfig, SyntheticGenerator

    assert not train_generator.config.outfits  # the default is synth_v1's plain bodies
    dressed_gen = SyntheticGenerator("train", seed=123, config=SyntheticConfig(outfits=True))
    try:
        for index in (0, 1):
            dressed, bare = dressed_gen.frame(index), train_generator.frame(index)
            np.testing.assert_array_equal(dressed.joints_3d, bare.joints_3d)
            np.testing.assert_array_equal(dressed.mask, bare.mask)
            np.testing.assert_array_equal(dressed.K, bare.K)
            person = dressed.mask.astype(bool)
            diff = np.abs(dressed.image.astype(int) - bare.image.astype(int)).sum(axis=2)
            assert diff[person].mean() > 10  # the body is painted differently...
            assert diff[~person].mean() < diff[person].mean() / 5  # ...the background is not
    finally:
        dressed_gen.close()


def test_vertex_colours_must_match_the_mesh():
    from sparse_pose_ros.data.render import BodyRenderer, Surface

    surface = Surface(colour=np.ones(3), roughness=0.5, metallic=0.0,
                      vertex_colours=np.ones((2, 3)))
    verts = np.array([[0, 0, 2.0], [0.1, 0, 2.0], [0, 0.1, 2.0]])
    with pytest.raises(ValueError, match="vertex_colours"):
        BodyRenderer._mesh(verts, np.array([[0, 1, 2]]), surface)
