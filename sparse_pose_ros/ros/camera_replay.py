"""camera_replay: publish a video, an image folder, bundled photos or synthetic renders as a camera.

Publishes ``image`` (sensor_msgs/Image) and a matching ``camera_info`` with the same header at
``rate_hz``, stamped with the publish time (so image -> pose latency can be measured downstream).
Media without calibration get a pinhole CameraInfo with ``hfov_deg`` horizontal field of view.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from ..pipeline.lift import Intrinsics
from ..pipeline.sources import Frame, SourceError, describe, open_source
from . import convert, middleware

ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16")


def _convert(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """RGB uint8 -> the array layout of ``encoding``."""
    if encoding == "rgb8":
        return rgb
    if encoding == "bgr8":
        return np.ascontiguousarray(rgb[:, :, ::-1])
    if encoding == "rgba8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)
    if encoding == "bgra8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return grey if encoding == "mono8" else grey.astype(np.uint16) * 257


class CameraReplay(Node):
    """Timer-driven publisher over a frame source (see module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("camera_replay", **kwargs)
        d = ParameterDescriptor
        self.declare_parameter("source", "bundled", d(
            description="Video file, image file or folder, 'bundled' (vtest.avi if opencv-doc "
                        "is installed, else photos shipped with scikit-image/matplotlib) or "
                        "'synthetic' (rendered mannequin with exact intrinsics).",
            read_only=True))
        self.declare_parameter("rate_hz", 10.0, d(
            description="Publish rate.", read_only=True,
            floating_point_range=[FloatingPointRange(from_value=0.1, to_value=240.0, step=0.0)]))
        self.declare_parameter("loop", True, d(description="Restart the source at its end."))
        self.declare_parameter("frame_id", "camera_optical_frame", d(
            description="frame_id of the published headers (an optical frame: z forward)."))
        self.declare_parameter("width", 0, d(
            description="Resize frames to this width keeping aspect (0 = native).",
            read_only=True, integer_range=[IntegerRange(from_value=0, to_value=8192, step=1)]))
        self.declare_parameter("encoding", "rgb8", d(
            description="Published encoding: " + ", ".join(ENCODINGS), read_only=True))
        self.declare_parameter("hfov_deg", 60.0, d(
            description="Horizontal field of view of the CameraInfo for uncalibrated media.",
            floating_point_range=[FloatingPointRange(from_value=1.0, to_value=179.0, step=0.0)]))
        self.declare_parameter("max_frames", 0, d(
            description="Stop publishing after this many frames (0 = no limit).",
            integer_range=[IntegerRange(from_value=0, to_value=2**31 - 1, step=1)]))
        self.declare_parameter("seed", 0, d(description="Seed of the synthetic source."))
        self.declare_parameter("wait_for_subscribers", 0, d(
            description="Start the clip only once this many subscribers match the image topic "
                        "(0 = at once, like a camera). ./run demo waits for pose_node and the "
                        "recorder so that frames published before discovery do not count as "
                        "lost.",
            read_only=True, integer_range=[IntegerRange(from_value=0, to_value=100, step=1)]))
        self.declare_parameter("stats_file", "", d(
            description="Write {published, source, done} JSON here when the source or max_frames "
                        "is exhausted and at shutdown (used by ./run demo)."))

        self._encoding = self._p("encoding")
        if self._encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {self._encoding!r}")
        spec = self._p("source")
        self._make = open_source(spec, self._p("width"), self._p("seed"))
        self._frames: Iterator[Frame] = self._make()
        if spec == "synthetic":  # render the clip up front so the publish rate is exact
            self._frames = iter(list(self._frames))
        self._published = 0
        self._done = False
        self._source_name = describe(spec)
        self._image_pub = self.create_publisher(Image, "image", qos_profile_sensor_data)
        self._info_pub = self.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
        self._timer = self.create_timer(1.0 / self._p("rate_hz"), self._tick)
        self.get_logger().info(f"replaying {self._source_name} at {self._p('rate_hz')} Hz")

    def _p(self, name: str) -> Any:
        return self.get_parameter(name).value

    def _next(self) -> Frame | None:
        try:
            return next(self._frames)
        except StopIteration:
            if not self._p("loop"):
                return None
            self._frames = self._make()
            return next(self._frames, None)

    def _tick(self) -> None:
        if self._published == 0 and (self._image_pub.get_subscription_count()
                                     < self._p("wait_for_subscribers")):
            return
        limit = self._p("max_frames")
        if limit and self._published >= limit:
            if not self._done:
                self._done = True
                self._timer.cancel()
                self.write_stats()
                self.get_logger().info(f"published max_frames={limit}; stopped")
            return
        frame = self._next()
        if frame is None:
            self._done = True
            self._timer.cancel()
            self.write_stats()
            self.get_logger().info(f"source finished after {self._published} frames")
            return
        rgb, intr = frame
        h, w = rgb.shape[:2]
        if intr is None:
            intr = Intrinsics.nominal(w, h, self._p("hfov_deg"))
        header = Header(frame_id=self._p("frame_id"), stamp=self.get_clock().now().to_msg())
        self._info_pub.publish(convert.intrinsics_to_camera_info(intr, header))
        self._image_pub.publish(
            convert.array_to_image(_convert(rgb, self._encoding), self._encoding, header)
        )
        self._published += 1

    @property
    def published(self) -> int:
        return self._published

    def write_stats(self) -> None:
        path = self._p("stats_file")
        if path:
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(target.suffix + ".tmp")
            tmp.write_text(json.dumps(
                {"published": self._published, "source": self._source_name,
                 "done": self._done}, indent=2))
            tmp.replace(target)  # atomic: a poller never reads half a file


def main(args: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] [%(name)s]: %(message)s")
    # Before rclpy.init: the DDS participant reads the transport profile once, at creation.
    logging.getLogger("camera_replay").info("%s", middleware.apply_default_profile())
    try:
        with rclpy.init(args=args):
            try:
                node = CameraReplay()
            except (SourceError, ValueError) as exc:
                logging.getLogger("camera_replay").error("%s", exc)
                raise SystemExit(2) from exc
            try:
                rclpy.spin(node)
            finally:
                node.write_stats()
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


if __name__ == "__main__":
    main()
