"""DLT + robust view rejection on synthetic cameras, and the Qualisys calibration parser."""

from __future__ import annotations

import numpy as np
import pytest

from sparse_pose_ros.data.triangulate import (
    Camera,
    cameras_from_triangulated,
    distort,
    dlt,
    parse_qca,
    triangulate_frame,
    triangulate_people,
    triangulate_robust,
    undistort,
)


def _look_at(centre: np.ndarray, target: np.ndarray, name: str, dist=(0.0, 0.0, 0.0, 0.0)
             ) -> Camera:
    """OpenCV camera at ``centre`` looking at ``target`` with world z up."""
    z = target - centre
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    K = np.array([[1600.0, 0, 540], [0, 1600.0, 960], [0, 0, 1]])
    return Camera(name, K, np.asarray(dist, float), R, -R @ centre, (1088, 1920))


def _rig(dist=(0.0, 0.0, 0.0, 0.0)) -> list[Camera]:
    target = np.array([0.0, 0.0, 1.0])
    centres = [(3, 0, 2), (0, 3, 1.8), (-3, 0.5, 2.1), (0.2, -3, 1.9)]
    return [_look_at(np.array(c, float), target, f"cam{i + 1:02d}", dist)
            for i, c in enumerate(centres)]


def test_distortion_round_trip() -> None:
    d = np.array([-0.05, 0.14, 0.001, -0.0007])
    xy = np.random.default_rng(0).uniform(-0.5, 0.5, (50, 2))
    np.testing.assert_allclose(undistort(distort(xy, d), d), xy, atol=1e-9)


def test_dlt_exact_without_noise() -> None:
    cams = _rig(dist=(-0.05, 0.1, 0.0005, 0.0003))
    X = np.array([0.3, -0.2, 1.4])
    px = np.stack([c.project(X) for c in cams])
    norm = np.stack([c.normalise(p) for c, p in zip(cams, px, strict=True)])
    got = dlt(norm, np.stack([c.P for c in cams]))
    assert np.linalg.norm(got - X) < 1e-6


def test_robust_rejects_outlier_view_and_recovers_point() -> None:
    cams = _rig()
    X = np.array([-0.1, 0.25, 1.2])
    px = np.stack([c.project(X) for c in cams])
    px[2] += [120.0, -80.0]  # view 3 saw something else
    plain = dlt(np.stack([c.normalise(p) for c, p in zip(cams, px, strict=True)]),
                np.stack([c.P for c in cams]))
    assert np.linalg.norm(plain - X) > 0.01  # the outlier does spoil a plain DLT
    r = triangulate_robust(cams, px, np.ones(4), threshold_px=10.0)
    assert r.used.tolist() == [True, True, False, True]
    assert np.linalg.norm(r.point - X) < 1e-3
    assert r.residual < 1e-3 and r.errors[2] > 10.0


def test_robust_gives_nan_when_two_views_disagree() -> None:
    cams = _rig()[:2]
    X = np.array([0.0, 0.0, 1.0])
    px = np.stack([c.project(X) for c in cams])
    px[1, 1] += 200.0  # off the epipolar line: two views cannot agree
    r = triangulate_robust(cams, px, np.ones(2), threshold_px=10.0)
    assert np.all(np.isnan(r.point)) and not r.used.any()


def test_frame_drops_the_view_that_saw_another_person() -> None:
    cams = _rig()
    rng = np.random.default_rng(1)
    body = rng.uniform([-0.3, -0.3, 0.1], [0.3, 0.3, 1.8], (17, 3))
    other = body + [0.9, -0.6, 0.0]
    px = np.stack([c.project(body) for c in cams])
    px[1] = cams[1].project(other)
    px += rng.normal(0, 1.0, px.shape)
    vis = np.full((4, 17), 0.9)
    res = triangulate_frame(cams, px, vis, min_consistent_views=3)
    assert res.valid and res.view_consistent.tolist() == [True, False, True, True]
    assert not res.views_used[1].any()
    assert np.nanmax(np.linalg.norm(res.joints_world - body, axis=1)) < 0.01
    np.testing.assert_allclose(res.joints_cam[0], cams[0].to_camera(res.joints_world))
    # the same frame where two views saw the other person: no consistent majority of 3
    px[3] = cams[3].project(other)
    assert not triangulate_frame(cams, px, vis, min_consistent_views=3).valid


def test_people_are_found_whichever_view_holds_which_detection() -> None:
    """Two people; each view's first detection is either of them (as BlazePose picks), one
    view saw only one of them, and the second pass of another found the first person again:
    both people come back, once each, from the right detections."""
    cams = _rig()
    rng = np.random.default_rng(2)
    a = rng.uniform([-0.3, -0.3, 0.1], [0.3, 0.3, 1.8], (17, 3))
    b = a + [0.9, -0.6, 0.0]
    first = np.stack([cams[0].project(a), cams[1].project(b), cams[2].project(a),
                      cams[3].project(b)])  # fmt: skip
    second = np.stack([cams[0].project(b), cams[1].project(a), np.full((17, 2), np.nan),
                       cams[3].project(b) + 0.5])  # view 4's second pass: b again  # fmt: skip
    px = np.stack([first, second]) + rng.normal(0, 1.0, (2, 4, 17, 2))
    vis = np.full((2, 4, 17), 0.9)
    vis[1, 2] = 0.0
    people = triangulate_people(cams, px, vis, min_consistent_views=3)
    assert len(people) == 2
    worlds = [r.joints_world for r, _ in people]
    err = [[np.nanmedian(np.linalg.norm(w - t, axis=1)) for t in (a, b)] for w in worlds]
    assert sorted(int(np.argmin(e)) for e in err) == [0, 1]  # one is a, the other b
    assert max(min(e) for e in err) < 0.01
    for (_, used), e in zip(people, err, strict=True):
        want = [0, 1, 0, -1] if np.argmin(e) == 0 else [1, 0, -1, 0]
        # b's view 4 may come from either pass (both are b); a never takes view 4
        assert used[:3].tolist() == want[:3] and (used[3] in (0, 1)) == (want[3] == 0)
    # one person in the frame, nobody found twice: one result
    one = triangulate_people(cams, np.stack([first * 0 + np.stack([c.project(a) for c in cams]),
                                             np.stack([c.project(a) for c in cams]) + 0.3]),
                             vis * 0 + 0.9, min_consistent_views=3)  # fmt: skip
    assert len(one) == 1
    with pytest.raises(ValueError, match="candidates"):
        triangulate_people(cams, px[:, :3], vis, min_consistent_views=3)


def test_cameras_from_triangulated_round_trip() -> None:
    cams = _rig(dist=(-0.05, 0.1, 0.0005, 0.0003))
    tri = {"views": np.array([c.name for c in cams]), "K": np.stack([c.K for c in cams]),
           "dist": np.stack([c.dist for c in cams]), "R": np.stack([c.R for c in cams]),
           "t": np.stack([c.t for c in cams]), "size": np.array([c.size for c in cams])}
    got = cameras_from_triangulated(tri)
    X = np.array([0.3, -0.2, 1.4])
    for c, g in zip(cams, got, strict=True):
        assert g.name == c.name and g.size == c.size
        np.testing.assert_allclose(g.project(X), c.project(X))


QCA = """<?xml version='1.0' encoding='ASCII'?>
<calibration type="regular">
  <cameras>
    <camera active="1" avg-residual="0.4" model="none" serial="cam02" viewrotation="0">
      <fov_video bottom="1919" left="0" right="1087" top="0"/>
      <transform r11="1" r12="0" r13="0" r21="0" r22="1" r23="0" r31="0" r32="0" r33="1"
                 x="0" y="0" z="3000"/>
      <intrinsic centerPointU="34816" centerPointV="61440" focalLengthU="102400"
                 focalLengthV="102400" radialDistortion1="-3.2" radialDistortion2="0"
                 radialDistortion3="0" tangentalDistortion1="0" tangentalDistortion2="0" skew="0"/>
    </camera>
    <camera active="1" avg-residual="0.4" model="none" serial="cam01" viewrotation="0">
      <fov_video bottom="1919" left="8" right="1087" top="0"/>
      <transform r11="1" r12="0" r13="0" r21="0" r22="1" r23="0" r31="0" r32="0" r33="1"
                 x="1000" y="0" z="3000"/>
      <intrinsic centerPointU="34816" centerPointV="61440" focalLengthU="102400"
                 focalLengthV="102400" radialDistortion1="0" radialDistortion2="0"
                 radialDistortion3="0" tangentalDistortion1="0" tangentalDistortion2="0" skew="0"/>
    </camera>
  </cameras>
</calibration>
"""


def test_parse_qca_units_order_and_axes() -> None:
    cams = parse_qca(QCA)
    assert [c.name for c in cams] == ["cam01", "cam02"]  # natural order, not file order
    c1, c2 = cams
    np.testing.assert_allclose(c2.K, [[1600, 0, 544], [0, 1600, 960], [0, 0, 1]])  # 1/64 px
    np.testing.assert_allclose(c1.K[0, 2], 544 - 8)  # principal point relative to fov_video
    assert c1.size == (1080, 1920) and c2.size == (1088, 1920)
    np.testing.assert_allclose(c2.dist, [-0.05, 0, 0, 0])  # Pose2Sim's /64
    np.testing.assert_allclose(c1.centre, [1.0, 0.0, 3.0])  # mm -> m
    # identity Qualisys orientation at z = 3 m looks down (-z) with image y = world -y
    below = c2.to_camera(np.array([[0.0, 0.5, 1.0]]))[0]
    assert below[2] == pytest.approx(2.0) and below[1] == pytest.approx(-0.5)
    np.testing.assert_allclose(c2.project(np.array([0.0, 0.0, 0.0])), [544, 960])


def test_parse_qca_rejects_other_files() -> None:
    with pytest.raises(ValueError, match="not XML"):
        parse_qca("[cam_1]\nname = 'x'\n")
    with pytest.raises(ValueError, match="no cameras"):
        parse_qca("<calibration><cameras/></calibration>")
    with pytest.raises(ValueError, match="missing calibration attribute"):
        parse_qca(QCA.replace('focalLengthU="102400"', ""))
