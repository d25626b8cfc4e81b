"""Shared fixtures for the ROS tests: real rclpy, real DDS on loopback, no mocks.

Reliability on a loaded 2-core machine: a private ROS_DOMAIN_ID per test session (set before
any rclpy.init), a unique namespace per node under test, the LARGE_DATA Fast DDS transport, tiny
images and a tiny network, discovery waits with generous but bounded timeouts.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")

rclpy = pytest.importorskip("rclpy", reason="rclpy not installed (./run installs the ROS 2 wheels)")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised, tiny gated checkpoint: tests never depend on trained weights."""
    import torch

    from sparse_pose_ros.model.checkpoint import save_checkpoint
    from sparse_pose_ros.model.network import NetworkConfig, PoseNetwork

    torch.manual_seed(0)
    net = PoseNetwork(NetworkConfig(input_size=64, width_mult=0.35, head_channels=16,
                                    depth_bins=8))
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_checkpoint(path, net, {"untrained": True, "purpose": "ROS tests"})
    return path


@pytest.fixture(scope="module")
def namespace() -> str:
    return "/t" + uuid.uuid4().hex[:10]


class Proc:
    """A node in its own process, stopped with SIGINT (clean rclpy shutdown) at teardown."""

    def __init__(self, module: str, namespace: str, params: dict[str, object], log: Path):
        cmd = [sys.executable, "-m", f"sparse_pose_ros.ros.{module}", "--ros-args",
               "-r", f"__ns:={namespace}"]
        for k, v in params.items():
            value = str(v).lower() if isinstance(v, bool) else str(v)
            cmd += ["-p", f"{k}:={value}"]
        self.log = log
        self.popen = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT,
                                      env=dict(os.environ))

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


@pytest.fixture(scope="module")
def start_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Proc]]:
    """Factory of node processes, all stopped when the test module ends."""
    procs: list[Proc] = []
    logs = tmp_path_factory.mktemp("logs")

    def start(module: str, namespace: str, **params: object) -> Proc:
        p = Proc(module, namespace, params, logs / f"{module}_{len(procs)}.log")
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop()


def spin_until(node: object, predicate: Callable[[], bool], timeout: float,
               step: Callable[[], None] | None = None) -> bool:
    """Spin ``node`` until ``predicate()`` or ``timeout`` s; ``step`` runs between spins."""
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            if step is not None:
                step()
            executor.spin_once(timeout_sec=0.05)
        return predicate()
    finally:
        executor.remove_node(node)


class Listener:
    """An in-process rclpy node recording everything pose_node publishes under ``namespace``."""

    def __init__(self, namespace: str) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseArray
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image
        from visualization_msgs.msg import MarkerArray

        from sparse_pose_ros.ros.pose_node import DIAG_PREFIX, OUTPUT_QOS

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("listener", namespace=namespace, context=self.context)
        self.diag_name = f"{DIAG_PREFIX}{namespace}/pose_node"
        self.poses: list = []
        self.markers: list = []
        self.masks: list = []
        self.images: list = []
        self.diagnostics: list = []
        n = self.node
        n.create_subscription(PoseArray, "pose3d", self.poses.append, OUTPUT_QOS)
        n.create_subscription(MarkerArray, "pose3d/markers", self.markers.append, OUTPUT_QOS)
        n.create_subscription(Image, "pose/mask", self.masks.append, OUTPUT_QOS)
        n.create_subscription(Image, "image", self.images.append, qos_profile_sensor_data)
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.image_pub = n.create_publisher(Image, "image", qos_profile_sensor_data)
        self.info_pub = n.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)

    def _on_diag(self, msg: object) -> None:
        for status in msg.status:  # type: ignore[attr-defined]
            if status.name == self.diag_name:
                self.diagnostics.append(status)

    def diag(self) -> dict[str, str]:
        """Key/values of the newest status of *our* pose_node ({} before the first one)."""
        if not self.diagnostics:
            return {}
        return {kv.key: kv.value for kv in self.diagnostics[-1].values}

    def counter(self, key: str) -> int:
        return int(float(self.diag().get(key, "0")))

    def spin_until(self, predicate: Callable[[], bool], timeout: float,
                   step: Callable[[], None] | None = None) -> bool:
        return spin_until(self.node, predicate, timeout, step)

    def close(self) -> None:
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture(scope="module")
def listener(namespace: str) -> Iterator[Listener]:
    lst = Listener(namespace)
    yield lst
    lst.close()


def wait_ready(listener: Listener, proc: Proc, timeout: float = 90.0) -> None:
    """Wait until pose_node reports its model loaded (imports + model load take seconds)."""
    ok = listener.spin_until(
        lambda: listener.diag().get("model_state") == "ready" or not proc.alive(), timeout
    )
    assert proc.alive(), proc.output()
    assert ok, f"pose_node not ready after {timeout} s:\n{proc.output()}"


@pytest.fixture(scope="session")
def ready() -> Callable[..., None]:
    return wait_ready


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three small real photos (96 px wide) as an image folder for camera_replay."""
    import cv2
    import numpy as np
    from skimage import data

    folder = tmp_path_factory.mktemp("frames")
    for i, img in enumerate([data.astronaut(), np.repeat(data.camera()[:, :, None], 3, 2),
                             data.astronaut()[:, ::-1]]):
        small = cv2.resize(img, (96, 96 * img.shape[0] // img.shape[1]),
                           interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"{i:03d}.png"), small[:, :, ::-1])
    return folder
