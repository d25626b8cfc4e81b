"""Demo post-processing: summary from raw records and the three pictures (ROS-free parts)."""

from __future__ import annotations

import numpy as np

from sparse_pose_ros import demo, skeleton
from sparse_pose_ros.pipeline.lift import Intrinsics


def test_pictures_with_and_without_a_person(tmp_path):
    image = np.full((60, 80, 3), 90, np.uint8)
    mask = np.zeros((60, 80), np.uint8)
    mask[10:50, 30:50] = 255
    k = np.array([[80.0, 0, 40], [0, 80.0, 30], [0, 0, 1]])
    np.savez_compressed(tmp_path / "frame.npz", image=image, mask=mask, k=k)
    assert [p.name for p in demo.write_pictures(tmp_path, "t")] == ["mask_overlay.png"]

    joints = np.random.default_rng(0).normal(0, 0.3, (skeleton.NUM_JOINTS, 3)) + [0, 0, 3]
    np.savez_compressed(tmp_path / "frame.npz", image=image, mask=mask, k=k, joints_m=joints)
    paths = demo.write_pictures(tmp_path, "t")
    assert [p.name for p in paths] == ["mask_overlay.png", "input_skeleton.png",
                                       "skeleton_3d.png"]
    import cv2

    drawn = cv2.imread(str(paths[1]))[:, :, ::-1]
    px = Intrinsics(80, 80, 40, 30, 80, 60).project(joints[:1])[0].round().astype(int)
    if 0 <= px[0] < 80 and 0 <= px[1] < 60:
        assert (drawn[px[1], px[0]] != 90).any()  # the pelvis is drawn where it projects


def test_summary_reads_counts_and_latency(tmp_path, monkeypatch):
    raw = {
        "replay": {"published": 20, "source": "bundled photos"},
        "recording": {
            "counts": {"poses": 18, "unmatched_stamps": 0},
            "latencies_ms": [10.0, 20.0, 30.0],
            "diagnostics": {"backend": "torch", "device": "cpu", "frames_received": "19",
                            "frames_processed": "18",
                            "frames_dropped": "1", "frames_invalid": "0", "persons_found": "0",
                            "latency_p50_ms": "8.5", "latency_p95_ms": "12",
                            "estimate_p50_ms": "6.5", "queue_p50_ms": "0.3",
                            "mean_density": "0.4"},
            "diagnostics_message": "running",
            "transport_warnings": 3,
            "transport_warning_message": "images arrive at 15 Hz but camera_info at 30 Hz",
        },
    }
    s = demo.summarise(raw, tmp_path / "missing.safetensors", "bundled", 2.0)
    # 20 published, 19 reached pose_node (1 lost in transport), 18 processed, 1 skipped busy
    assert (s["frames_published"], s["frames_received"], s["frames_lost_in_transport"],
            s["frames_processed"], s["frames_skipped_busy"]) == (20, 19, 1, 18, 1)
    assert s["transport_warnings"] == 3 and "15 Hz" in s["transport_warning_message"]
    assert s["latency_image_to_pose3d_ms"]["p50"] == 20.0
    assert s["mean_density"] == 0.4 and s["backend"] == "torch"
    assert s["node_latency_ms"]["stages_p50"] == {"estimate": 6.5, "queue": 0.3}
    assert s["model_trained"] is False  # unreadable checkpoint: no training record


def test_failure_reason_quotes_the_error_lines(tmp_path):
    log = tmp_path / "camera_replay.log"
    log.write_text("[INFO] starting\n[ERROR] [camera_replay]: no such video: /x.mp4\n")
    assert "no such video: /x.mp4" in demo.failure_reason(log)
    log.write_text("line one\nline two\n")
    assert demo.failure_reason(log) == "line one | line two"
    assert "no log" in demo.failure_reason(tmp_path / "missing.log")


def test_default_source_is_the_real_clip_then_photos_then_synthetic(tmp_path, monkeypatch, caplog):
    """vtest.avi (several people) when it decodes; else the photos, with the reason logged;
    else the renders."""
    import cv2

    from sparse_pose_ros.pipeline import sources

    clip = tmp_path / "vtest.avi"
    vw = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for _ in range(2):
        vw.write(np.full((48, 64, 3), 120, np.uint8))
    vw.release()
    monkeypatch.setattr(sources, "VTEST_AVI", clip)
    assert demo.default_source() == str(clip)
    assert sources.is_video(demo.default_source())  # so the node tracks the person

    caplog.set_level("WARNING", logger="sparse_pose_ros.demo")
    monkeypatch.setattr(sources, "VTEST_AVI", tmp_path / "missing.avi")
    photo = ("photo", np.zeros((8, 8, 3), np.uint8))
    monkeypatch.setattr(sources, "bundled_photos", lambda: [photo])
    assert demo.default_source() == "bundled"
    assert "missing.avi missing (Debian package opencv-doc" in caplog.text

    monkeypatch.setattr(sources, "bundled_photos", lambda: [])
    assert demo.default_source() == "synthetic"

    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"not a video")
    monkeypatch.setattr(sources, "VTEST_AVI", broken)
    assert demo.default_source() == "synthetic"  # 'bundled' would play the same broken file
    assert "broken.avi does not decode" in caplog.text


def test_node_parameters_parse_and_reach_the_node(tmp_path, monkeypatch):
    """--param NAME:=VALUE (ROS's -p syntax) goes onto pose_node's command line unchanged (the
    node validates it); a malformed one is refused before anything starts."""
    import pytest

    assert demo.parse_node_params(["input_size:=224", " num_threads := 1"]) == {
        "input_size": "224", "num_threads": "1"}
    for bad in ("input_size=224", ":=3", "input_size:="):
        with pytest.raises(ValueError, match="NAME:=VALUE"):
            demo.parse_node_params([bad])
    started: list[tuple[str, dict]] = []

    def fake_start(module, params, log, env):
        started.append((module, params))
        raise RuntimeError("not starting processes in a unit test")

    monkeypatch.setattr(demo, "_start", fake_start)
    monkeypatch.setattr(demo, "ros_env", lambda: {})
    with pytest.raises(RuntimeError, match="unit test"):
        demo.run_pipeline(tmp_path, tmp_path / "m.safetensors", "synthetic", 1.0, 10.0, 320,
                          "auto", node_params={"input_size": "224"})
    assert started[0][0] == "pose_node" and started[0][1]["input_size"] == "224"
    assert started[0][1]["backend"] == "auto"
    with pytest.raises(SystemExit):
        demo.main(["--param", "input_size"])
