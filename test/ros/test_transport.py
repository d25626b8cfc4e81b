"""Camera-sized frames between processes on this machine (issue #18): with the shipped Fast DDS
profile >= 99 % arrive at 640x480 and 1920x1080, 30 Hz; the profile reaches pose_node's own DDS
participant when it is started alone; and the image QoS matches the publishers cameras use.

Each transfer runs a publisher and a subscriber process (``benchmarks.transport``) on a private
domain with localhost discovery, 3 s of frames each, bounded by a timeout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from sparse_pose_ros.benchmarks.transport import fastdds_segment_sizes, run_transport
from sparse_pose_ros.ros.middleware import PROFILE_ENV, profile_path

#: The shipped profile's shared-memory segment (config/fastdds_large_shm.xml).
SEGMENT_BYTES = 32 * 1024 * 1024


@pytest.mark.parametrize(("width", "height"), [(640, 480), (1920, 1080)])
def test_camera_sized_frames_arrive_with_the_shipped_profile(width, height):
    """One retry: on two shared cores a busy neighbour can delay a subscriber enough to lose 2
    of 90 frames once (seen at 1080p while a compile ran); a missing profile loses ~98 % of them
    and fails both tries."""
    tries = []
    for _ in range(2):
        r = run_transport(width, height, 30.0, 3.0, profile_path(), timeout_s=60)
        assert r["published"] == 90
        tries.append(r["received_fraction"])
        if tries[-1] >= 0.99:
            break
    assert tries[-1] >= 0.99, (tries, r)


def test_fast_dds_defaults_lose_them():
    """The control that makes the test above mean something: the same transfer with Fast DDS'
    own defaults loses most 640x480 frames on this Fast DDS (3.2). Should a future Fast DDS
    deliver them, this fails and the profile may no longer be needed. One retry, as above: on
    a quiet machine the defaults once delivered 62 % of them (a CI run of 2026-12-07), still
    far from the profile's >= 99 %."""
    tries = []
    for _ in range(2):
        r = run_transport(640, 480, 30.0, 2.0, None, timeout_s=60)
        tries.append(r["received_fraction"])
        if tries[-1] < 0.5:
            break
    assert tries[-1] < 0.5, (tries, r)


def _segments_of_started_pose_node(tmp_path, env: dict[str, str]) -> tuple[list[int], str]:
    """Start pose_node alone (console-script path, no model so it starts fast) and read the
    Fast DDS data segments its process has mapped once its participant exists."""
    log = tmp_path / "pose_node.log"
    cmd = [sys.executable, "-m", "sparse_pose_ros.ros.pose_node", "--ros-args",
           "-p", f"model_file_path:={tmp_path / 'none.safetensors'}"]
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if "Fast DDS" in log.read_text(errors="replace"):  # logged after rclpy.init
                time.sleep(0.5)
                return fastdds_segment_sizes(proc.pid), log.read_text(errors="replace")
            time.sleep(0.1)
        raise AssertionError(f"pose_node did not start:\n{log.read_text(errors='replace')}")
    finally:
        proc.terminate()
        proc.wait(20)


def _alone_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in (PROFILE_ENV, "FASTRTPS_DEFAULT_PROFILES_FILE")}
    env["ROS_DOMAIN_ID"] = str(200 + os.getpid() % 30)  # no peers: only its own segment
    env.update(extra)
    return env


def test_pose_node_started_alone_applies_the_profile_to_its_participant(tmp_path):
    sizes, out = _segments_of_started_pose_node(tmp_path, _alone_env())
    assert str(profile_path()) in out
    assert sizes and max(sizes) >= SEGMENT_BYTES, (sizes, out)


def test_an_empty_profile_variable_opts_out(tmp_path):
    sizes, out = _segments_of_started_pose_node(tmp_path, _alone_env(**{PROFILE_ENV: ""}))
    assert "is empty" in out and "XMLPARSER" not in out, out
    assert sizes and max(sizes) < SEGMENT_BYTES, (sizes, out)


def test_image_qos_matches_reliable_and_best_effort_camera_publishers():
    """Best effort depth 1 (pose_node) receives from a reliable publisher of depth 1 or 10 (the
    ROS 2 default many drivers keep) and from a best-effort sensor-data publisher."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from sparse_pose_ros.ros.qos import IMAGE_QOS

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("qos_probe", context=context)
        from rclpy.executors import SingleThreadedExecutor

        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        for reliability, depth in ((ReliabilityPolicy.RELIABLE, 1),
                                   (ReliabilityPolicy.RELIABLE, 10),
                                   (ReliabilityPolicy.BEST_EFFORT, 5)):
            topic = f"qos_probe_{reliability.name.lower()}_{depth}"
            got: list = []
            sub = node.create_subscription(Image, topic, got.append, IMAGE_QOS)
            pub = node.create_publisher(Image, topic, QoSProfile(depth=depth,
                                                                 reliability=reliability))
            deadline = time.monotonic() + 10
            while not got and time.monotonic() < deadline:
                pub.publish(Image(width=4, height=2, encoding="mono8", step=4, data=bytes(8)))
                executor.spin_once(timeout_sec=0.05)
            assert got, f"no frame from a {reliability.name} depth-{depth} publisher"
            node.destroy_subscription(sub)
            node.destroy_publisher(pub)
    finally:
        rclpy.shutdown(context=context)
