"""Integration: the real BlazePose runner in .venv-peer, and the compare_peer CLI end to end.

Skipped (with the reason) where the peer venv has not been made: tools/peer/setup_venv.sh.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from sparse_pose_ros.skeleton import JOINT_NAMES
from sparse_pose_ros.teachers.peer import PeerError, peer_available, run_peer
from sparse_pose_ros.teachers.real_frames import RealFrame, load_still

AVAILABLE, WHY = peer_available()
pytestmark = [
    pytest.mark.skipif(not AVAILABLE, reason=WHY),
    pytest.mark.timeout(300),
]
J = {n: i for i, n in enumerate(JOINT_NAMES)}


def test_runner_finds_grace_hopper_in_both_modes() -> None:
    frames = [load_still("grace_hopper")]
    res = run_peer(frames, modes=("static", "video"), warmup=1, repeats=2)
    assert res.info["mediapipe_version"] == "0.10.21"
    assert res.info["model_complexity"] == 1
    for mode in ("static", "video"):
        f = res.frames[mode]["grace_hopper"]
        assert f.detected and f.joints_px is not None and f.visibility is not None
        px = f.joints_px
        # upright portrait facing the camera: head above shoulders, subject's left on image right
        assert px[J["head_top"], 1] < px[J["neck_nose"], 1] < px[J["thorax"], 1]
        assert px[J["left_shoulder"], 0] > px[J["right_shoulder"], 0]
        assert f.visibility[J["neck_nose"]] > 0.9
        assert 150 < px[J["neck_nose"], 0] < 350  # nose near the image's centre column (512 wide)
        assert f.joints_world_m is not None and np.all(np.abs(f.joints_world_m) < 2.0)
    assert len(res.frames["static"]["grace_hopper"].latency_ms) == 2
    assert res.latency["static"]["n"] == 2
    assert res.latency["static"]["person"]["n"] == 2
    assert res.latency["static"]["no_person"]["n"] == 0


def test_runner_reports_no_person_on_blank_image() -> None:
    blank = RealFrame("blank", np.full((240, 320, 3), 127, np.uint8), "test", "blank")
    res = run_peer([blank], modes=("static",), warmup=0)
    assert not res.frames["static"]["blank"].detected
    assert res.latency["static"]["no_person"]["n"] == 1


def test_runner_error_is_reported() -> None:
    frames = [load_still("camera")]
    with pytest.raises(PeerError, match="runner failed"):
        run_peer(frames, modes=("sideways",))


def test_compare_peer_cli_smoke(tmp_path: Path) -> None:
    """Random-init tiny model: checks the plumbing only (its agreement numbers mean nothing)."""
    pytest.importorskip("sparse_pose_ros.pipeline.estimator")
    from sparse_pose_ros.evaluation.compare_peer import main
    from sparse_pose_ros.model.checkpoint import save_checkpoint
    from sparse_pose_ros.model.network import NetworkConfig, PoseNetwork

    ckpt = tmp_path / "random.safetensors"
    save_checkpoint(ckpt, PoseNetwork(NetworkConfig(input_size=128, width_mult=0.35)))
    out = tmp_path / "cmp.json"
    rc = main([
        "--checkpoint", str(ckpt), "--out", str(out), "--png-dir", str(tmp_path / "png"),
        "--no-video", "--repeats", "1", "--max-pngs", "2", "--backend", "torch",
    ])
    assert rc == 0
    rep = json.loads(out.read_text())
    assert {f["id"] for f in rep["frames"]} == {"astronaut", "camera", "grace_hopper"}
    assert rep["latency_ms"]["ours"]["n"] == 3
    assert rep["latency_ms"]["peer"]["static"]["n"] == 3
    for mode in ("video", "static"):
        agg = rep["agreement"][mode]["all_17"]
        assert agg["frames"] >= 2  # BlazePose finds the astronaut and Grace Hopper
        assert 0.0 <= agg["pck@0.1"] <= agg["pck@0.2"] <= 1.0
    assert len(rep["pngs"]) == 2 and all(Path(p).is_file() for p in rep["pngs"])
    assert main(["--out", str(out)]) == 2  # no checkpoint, not --peer-only


def test_auto_estimator_is_the_nodes_choice_for_a_gated_checkpoint(tmp_path: Path) -> None:
    """compare_peer times what the node runs: ``auto`` on a gated checkpoint is sparse-cpu
    (it once walked the candidates without the model and timed onnxruntime instead)."""
    from sparse_pose_ros.evaluation.compare_peer import build_estimator
    from sparse_pose_ros.export.random_model import random_network
    from sparse_pose_ros.model.checkpoint import save_checkpoint
    from sparse_pose_ros.sparse.cpu_kernel import load_cpu_kernel

    if load_cpu_kernel() is None:
        pytest.skip("the sparse CPU kernel cannot be built here (no compiler)")
    ckpt = tmp_path / "gated.safetensors"
    save_checkpoint(ckpt, random_network(gated=True, input_size=64, seed=1))
    est = build_estimator(ckpt, "auto", 1, {})
    assert est.backend.name == "sparse-cpu" and est.backend.threads == 1


def test_demo_times_the_peer_on_the_frames_it_played(tmp_path: Path) -> None:
    """``./run demo --peer``: BlazePose's video mode on the demo's own frames (the source at
    the demo's width, fed to the runner as one PNG sequence), its p50 split by whether it found
    someone; a still source is refused (video mode needs a video)."""
    import cv2

    from sparse_pose_ros import demo

    video = tmp_path / "clip.avi"
    still = np.asarray(load_still("grace_hopper").image)
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (256, 320))
    for _ in range(6):
        writer.write(cv2.resize(still, (256, 320))[:, :, ::-1].copy())
    writer.release()
    t0 = time.perf_counter()
    r = demo.peer_on_clip(str(video), 128, 4, tmp_path / "out", rate_hz=2.0)
    # paced as the demo's camera (frames 0.5 s apart: >= 1.5 s for four), then back to back
    assert time.perf_counter() - t0 >= 1.5 and r["pace_hz"] == 2.0
    assert r["latency_ms_back_to_back"]["n"] >= 1 and r["latency_ms_back_to_back"]["p50"] > 0
    assert r["frames"] == 4 and r["frame_size"] == "128x160"
    assert len(list((tmp_path / "out" / "peer_frames").glob("f_*.png"))) == 4
    assert r["latency_ms"]["n"] >= 1 and r["latency_ms"]["p50"] > 0
    assert r["persons_found"] >= 1 and r["latency_ms_person"]["n"] >= 1
    assert r["versions"]["mediapipe_version"] == "0.10.21"
    with pytest.raises(ValueError, match="not a video"):
        demo.peer_on_clip(str(tmp_path / "out" / "peer_frames"), 128, 4, tmp_path / "o2")
