"""pose_recorder: listens to a running pose pipeline and records what a user would see.

Used by ``./run demo`` as a separate process (real DDS between all three). It measures the
end-to-end latency image stamp -> /pose3d arrival (replay and recorder share this machine's
clock), checks that outputs carry the stamp/frame of an image it saw, keeps the newest frame with a
person (image, mask, joints, intrinsics) for the demo pictures, and the last /diagnostics.

Outputs in ``out_dir`` at shutdown: ``recording.json`` and ``frame.npz`` (the newest frame with a
person, else the newest frame, which then has no ``joints_m``). ``ready_file`` is
touched once pose_node reports ``model_state: ready``, so the demo can start the camera then.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from visualization_msgs.msg import MarkerArray

from ..image_codec import ImageDecodeError
from . import convert, middleware
from .pose_node import DIAG_PREFIX, OUTPUT_QOS

KEEP_FRAMES = 60


def _key(msg: Any) -> tuple[int, int, str]:
    s = msg.header.stamp
    return (s.sec, s.nanosec, msg.header.frame_id)


class PoseRecorder(Node):
    """See the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("pose_recorder", **kwargs)
        self.declare_parameter("out_dir", "out/demo", ParameterDescriptor(
            description="Where recording.json and frame.npz are written at shutdown."))
        self.declare_parameter("ready_file", "", ParameterDescriptor(
            description="Touched when pose_node reports its model ready (empty = none)."))
        self._images: OrderedDict[tuple[int, int, str], np.ndarray] = OrderedDict()
        self._infos: OrderedDict[tuple[int, int, str], CameraInfo] = OrderedDict()
        self._pending_pose: dict[tuple[int, int, str], np.ndarray] = {}
        self.latencies_ms: list[float] = []
        self.counts = {"images": 0, "poses": 0, "poses_with_person": 0, "markers": 0,
                       "masks": 0, "diagnostics": 0, "unmatched_stamps": 0}
        self.diagnostics: dict[str, str] = {}
        self.diagnostics_level = -1
        self.diagnostics_message = ""
        #: statuses that reported images missing before pose_node, and the first such message
        #: (the last status, after the camera stopped, may no longer show it)
        self.transport_warnings = 0
        self.transport_warning_message = ""
        self.best: dict[str, Any] | None = None  # newest frame with a person
        self.latest: dict[str, Any] | None = None  # newest frame (for the mask picture)
        self._ready_written = False
        sensor = qos_profile_sensor_data
        self.create_subscription(Image, "image", self._on_image, sensor)
        self.create_subscription(CameraInfo, "camera_info", self._on_info, sensor)
        self.create_subscription(PoseArray, "pose3d", self._on_pose, OUTPUT_QOS)
        self.create_subscription(MarkerArray, "pose3d/markers", self._on_markers, OUTPUT_QOS)
        self.create_subscription(Image, "pose/mask", self._on_mask, OUTPUT_QOS)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    @staticmethod
    def _remember(store: OrderedDict, key: Any, value: Any) -> None:
        store[key] = value
        while len(store) > KEEP_FRAMES:
            store.popitem(last=False)

    def _on_image(self, msg: Image) -> None:
        self.counts["images"] += 1
        try:
            self._remember(self._images, _key(msg), convert.image_to_rgb8(msg))
        except ImageDecodeError as exc:
            self.get_logger().warning(f"recorder cannot decode an image: {exc}")

    def _on_info(self, msg: CameraInfo) -> None:
        self._remember(self._infos, _key(msg), msg)

    def _on_pose(self, msg: PoseArray) -> None:
        now = time.time()
        self.counts["poses"] += 1
        self.latencies_ms.append((now - convert.stamp_seconds(msg.header.stamp)) * 1e3)
        key = _key(msg)
        if key not in self._images:
            self.counts["unmatched_stamps"] += 1
        if msg.poses:
            self.counts["poses_with_person"] += 1
            self._pending_pose = {key: convert.pose_array_to_numpy(msg)}

    def _on_markers(self, msg: MarkerArray) -> None:
        self.counts["markers"] += 1

    def _on_mask(self, msg: Image) -> None:
        self.counts["masks"] += 1
        key = _key(msg)
        if key not in self._images or key not in self._infos or msg.encoding != "mono8":
            return
        try:
            mask = convert.image_to_rgb8(msg)[:, :, 0]
        except ImageDecodeError:
            return
        frame = {
            "image": self._images[key],
            "mask": mask,
            "k": np.asarray(self._infos[key].k, np.float64).reshape(3, 3),
            "stamp": convert.stamp_seconds(msg.header.stamp),
            "frame_id": msg.header.frame_id,
        }
        joints = self._pending_pose.get(key)
        if joints is not None:
            self.best = {**frame, "joints_m": joints}
        self.latest = frame

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if not status.name.startswith(DIAG_PREFIX):
                continue
            self.counts["diagnostics"] += 1
            self.diagnostics = {kv.key: kv.value for kv in status.values}
            self.diagnostics_level = int.from_bytes(status.level, "little")
            self.diagnostics_message = status.message
            if self.diagnostics.get("transport") == "images missing":
                self.transport_warnings += 1
                self.transport_warning_message = (self.transport_warning_message
                                                  or status.message)
            ready_file = self.get_parameter("ready_file").value
            if ready_file and not self._ready_written and self.diagnostics.get(
                "model_state"
            ) == "ready":
                Path(ready_file).write_text("ready\n")
                self._ready_written = True

    def write(self) -> Path:
        out = Path(self.get_parameter("out_dir").value)
        out.mkdir(parents=True, exist_ok=True)
        record = {
            "counts": self.counts,
            "latencies_ms": [round(v, 3) for v in self.latencies_ms],
            "diagnostics": self.diagnostics,
            "diagnostics_level": self.diagnostics_level,
            "diagnostics_message": self.diagnostics_message,
            "transport_warnings": self.transport_warnings,
            "transport_warning_message": self.transport_warning_message,
            "frame": None,
        }
        frame = self.best or self.latest
        if frame is not None:
            arrays = {k: v for k, v in frame.items() if isinstance(v, np.ndarray)}
            np.savez_compressed(out / "frame.npz", **arrays)
            record["frame"] = {"stamp": frame["stamp"], "frame_id": frame["frame_id"],
                               "person": "joints_m" in frame}
        (out / "recording.json").write_text(json.dumps(record, indent=2))
        return out


def main(args: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] [%(name)s]: %(message)s")
    # Before rclpy.init: the DDS participant reads the transport profile once, at creation.
    logging.getLogger("pose_recorder").info("%s", middleware.apply_default_profile())
    try:
        with rclpy.init(args=args):
            node = PoseRecorder()
            try:
                rclpy.spin(node)
            finally:
                node.write()
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


if __name__ == "__main__":
    main()
