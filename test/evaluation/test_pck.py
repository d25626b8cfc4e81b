"""PCK agreement between two 2D joint sets, normalised by the peer's box."""

from __future__ import annotations

import numpy as np
import pytest

from sparse_pose_ros.skeleton import JOINT_NAMES, NUM_JOINTS
from sparse_pose_ros.teachers.peer import joint_selection, pck_agreement, pooled_pck


def _peer() -> np.ndarray:
    """17 joints spread over a 100 x 200 px box (longest side 200)."""
    rng = np.random.default_rng(3)
    pts = rng.uniform(0, 1, (NUM_JOINTS, 2)) * (100, 200) + (50, 20)
    pts[0], pts[1] = (50, 20), (150, 220)  # pin the box corners
    return pts


def test_identical_joints_agree_fully() -> None:
    peer = _peer()
    r = pck_agreement(peer.copy(), peer)
    assert r.pck == {0.1: 1.0, 0.2: 1.0}
    assert r.bbox_size == pytest.approx(200.0)
    assert r.n_counted == NUM_JOINTS


def test_shift_between_thresholds() -> None:
    peer = _peer()
    ours = peer + (0.0, 0.15 * 200)  # 0.15 of the box: misses @0.1, hits @0.2
    r = pck_agreement(ours, peer)
    assert r.pck[0.1] == 0.0
    assert r.pck[0.2] == 1.0
    np.testing.assert_allclose(r.errors_norm, 0.15)


def test_partial_agreement_counts_joints() -> None:
    peer = _peer()
    ours = peer.copy()
    ours[:5] += 100.0  # 5 joints far off (0.7 of the box)
    r = pck_agreement(ours, peer)
    assert r.pck[0.2] == pytest.approx(12 / 17)


def test_invisible_peer_joints_neither_score_nor_size_the_box() -> None:
    peer = _peer()
    vis = np.ones(NUM_JOINTS)
    vis[1] = 0.1  # hide the (150, 220) corner
    ours = peer.copy()
    ours[1] += 1000.0  # way off, but invisible to the peer -> ignored
    r = pck_agreement(ours, peer, vis)
    assert not r.counted[1]
    assert np.isnan(r.errors_norm[1])
    assert r.pck[0.1] == 1.0
    visible = peer[vis >= 0.5]
    assert r.bbox_size == pytest.approx(np.max(visible.max(0) - visible.min(0)))
    assert r.bbox_size < 200.0


def test_joint_subset() -> None:
    peer = _peer()
    ours = peer.copy()
    ours[JOINT_NAMES.index("head_top")] += 500.0
    assert pck_agreement(ours, peer).pck[0.2] < 1.0
    subset = [n for n in JOINT_NAMES if n != "head_top"]
    assert pck_agreement(ours, peer, joints=subset).pck[0.2] == 1.0
    with pytest.raises(ValueError, match="unknown joint"):
        joint_selection(["elbow"])


@pytest.mark.parametrize(
    "ours, peer, vis",
    [
        (np.zeros((16, 2)), np.zeros((17, 2)), None),
        (np.zeros((17, 2)), np.zeros((17, 2)), None),  # collapsed box
        (np.zeros((17, 2)), np.arange(34.0).reshape(17, 2), np.zeros(17)),  # nothing visible
        (np.full((17, 2), np.nan), np.arange(34.0).reshape(17, 2), None),
    ],
)
def test_bad_input_raises(ours: np.ndarray, peer: np.ndarray, vis: np.ndarray | None) -> None:
    with pytest.raises(ValueError):
        pck_agreement(ours, peer, vis)


def test_pooled_pck_weights_joints_not_frames() -> None:
    peer = _peer()
    good = pck_agreement(peer.copy(), peer)  # 17/17
    vis = np.zeros(NUM_JOINTS)
    vis[:2] = 1.0
    bad = pck_agreement(peer + 1000.0, peer, vis)  # 0/2
    out = pooled_pck([good, bad], (0.1, 0.2))
    assert out["joints_counted"] == 19
    assert out["pck@0.1"] == pytest.approx(round(17 / 19, 4))
    assert out["frame_mean_pck@0.1"] == pytest.approx(0.5)
    assert out["per_joint_pck@0.1"][JOINT_NAMES[0]] == pytest.approx(0.5)
    assert out["per_joint_pck@0.1"][JOINT_NAMES[5]] == pytest.approx(1.0)
    assert pooled_pck([], (0.1,)) == {"frames": 0}
