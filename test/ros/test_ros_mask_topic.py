"""pose/mask is made only for a subscriber, and after /pose3d: in process with real rclpy, the
node's publishing step on a result whose mask picture counts how often it is made."""

from __future__ import annotations

import time

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from sparse_pose_ros import skeleton
from sparse_pose_ros.pipeline.estimator import PoseResult
from sparse_pose_ros.ros.pose_node import OUTPUT_QOS, PoseNode


def _result(made: list[int]) -> PoseResult:
    j = skeleton.NUM_JOINTS

    def picture() -> np.ndarray:
        made.append(1)
        return np.full((6, 8), 255, np.uint8)

    return PoseResult(joints_px=np.zeros((j, 2), np.float32),
                      joints_m=np.ones((j, 3), np.float32), confidence=np.ones(j, np.float32),
                      person_found=True, mask_source=picture, density=1.0, block_density=[],
                      root_depth_m=1.0, fit_residual_m=0.0, intrinsics_source="nominal_fov")


def test_the_mask_is_made_and_published_only_while_someone_subscribes(tiny_model):
    context = rclpy.Context()
    rclpy.init(context=context)
    node = PoseNode(context=context, parameter_overrides=[
        Parameter("model_file_path", value=str(tiny_model)), Parameter("backend", value="torch")])
    listener = rclpy.create_node("mask_listener", context=context)
    try:
        made: list[int] = []
        rgb = np.zeros((6, 8, 3), np.uint8)
        node._publish(Header(frame_id="camera"), rgb, _result(made))
        assert made == []  # nobody listens: no picture
        got: list[Image] = []
        listener.create_subscription(Image, "pose/mask", got.append, OUTPUT_QOS)
        deadline = time.monotonic() + 10.0
        while node._mask_pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert node._mask_pub.get_subscription_count() == 1
        node._publish(Header(frame_id="camera"), rgb, _result(made))
        assert made == [1]
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(listener)
        deadline = time.monotonic() + 10.0
        while not got and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        assert got and (got[0].height, got[0].width, got[0].encoding) == (6, 8, "mono8")
    finally:
        listener.destroy_node()
        node.destroy_node()
        rclpy.shutdown(context=context)
