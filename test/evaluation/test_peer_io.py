"""Parsing the runner's JSON and drawing side-by-side PNGs (no peer venv needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sparse_pose_ros import skeleton
from sparse_pose_ros.teachers import peer as peer_mod
from sparse_pose_ros.teachers.peer import (
    PeerError,
    draw_skeleton,
    parse_runner_output,
    peer_available,
    save_png,
    side_by_side,
)


def _runner_json(detected: bool = True) -> dict:
    j = skeleton.NUM_JOINTS
    rec = {
        "id": "img",
        "sequence": "img",
        "index": None,
        "width": 64,
        "height": 48,
        "pixel_mean": 10.0,
        "latency_ms": [12.5],
        "detected": detected,
    }
    if detected:
        rec |= {
            "landmarks": np.zeros((33, 4)).tolist(),
            "world_landmarks": np.zeros((33, 3)).tolist(),
            "h36m_px": np.arange(2 * j, dtype=float).reshape(j, 2).tolist(),
            "h36m_visibility": np.ones(j).tolist(),
            "h36m_world_m": np.zeros((j, 3)).tolist(),
        }
    summary = {"p50": 12.5, "p95": 12.5, "mean": 12.5, "n": 1}
    return {
        "peer": {"mediapipe_version": "0.10.21"},
        "h36m_joint_names": list(skeleton.JOINT_NAMES),
        "modes": {"static": {"frames": [rec], "latency_summary": summary}},
    }


def test_parse_runner_output() -> None:
    res = parse_runner_output(_runner_json())
    f = res.frames["static"]["img"]
    assert f.detected and f.joints_px is not None and f.joints_px.shape == (17, 2)
    assert f.joints_px[1, 0] == 2.0
    assert res.latency["static"]["p50"] == 12.5
    none = parse_runner_output(_runner_json(detected=False)).frames["static"]["img"]
    assert not none.detected and none.joints_px is None


def test_parse_rejects_other_joint_order_and_shapes() -> None:
    data = _runner_json()
    data["h36m_joint_names"] = list(reversed(skeleton.JOINT_NAMES))
    with pytest.raises(PeerError, match="joint order"):
        parse_runner_output(data)
    data = _runner_json()
    data["modes"]["static"]["frames"][0]["h36m_px"] = [[0.0, 0.0]] * 3
    with pytest.raises(PeerError, match="shape"):
        parse_runner_output(data)


def test_peer_unavailable_says_how_to_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(peer_mod.PEER_PYTHON_ENV, str(tmp_path / "nope" / "python"))
    ok, why = peer_available()
    assert not ok and "setup_venv.sh" in why
    with pytest.raises(PeerError, match="setup_venv.sh"):
        peer_mod.run_peer([])


def _vertical_pose(w: int, h: int) -> np.ndarray:
    pts = np.zeros((skeleton.NUM_JOINTS, 2))
    pts[:, 0] = w / 2
    pts[:, 1] = np.linspace(0.2 * h, 0.8 * h, skeleton.NUM_JOINTS)
    pts[skeleton.JOINT_NAMES.index("left_wrist")] = (0.1 * w, 0.5 * h)
    return pts


def test_draw_skeleton_uses_side_colours() -> None:
    img = np.zeros((100, 120, 3), np.uint8)
    pts = _vertical_pose(120, 100)
    out = draw_skeleton(img, pts)
    assert out.shape == img.shape and not np.shares_memory(out, img)
    assert img.max() == 0  # input untouched
    x, y = (int(v) for v in pts[skeleton.JOINT_NAMES.index("left_wrist")])
    colour = np.round(np.array(skeleton.SIDE_COLOURS["left"]) * 255)
    np.testing.assert_allclose(out[y, x], colour, atol=40)
    with pytest.raises(ValueError):
        draw_skeleton(img, pts[:5])
    with pytest.raises(ValueError):
        draw_skeleton(img.astype(np.float32), pts)


def test_side_by_side_and_png(tmp_path: Path) -> None:
    img = np.full((300, 400, 3), 90, np.uint8)
    pts = _vertical_pose(400, 300)
    full = side_by_side(img, pts, pts, np.ones(17), "ours", "peer")
    assert full.shape[1] == 2 * 400 + 8 and full.shape[0] > 300
    small = side_by_side(img, pts, None, None, "ours", "peer", max_side=200)
    assert small.shape[1] == 2 * 200 + 8
    # no peer person: right panel has no skeleton pixels
    right = small[-150:, 208:]
    assert np.all(right == 90)
    path = tmp_path / "sub" / "x.png"
    save_png(path, small)
    assert path.stat().st_size > 0
