"""A missing model file: clear error naming the path, node stays up with ERROR diagnostics, and
setting model_file_path through the parameter service brings it to life."""

from __future__ import annotations

import numpy as np
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from sensor_msgs.msg import Image

from sparse_pose_ros import skeleton


def test_missing_model_reports_error_then_recovers(
    tiny_model, tmp_path, namespace, listener, start_node
):
    missing = tmp_path / "nowhere" / "pose_sparse.safetensors"
    node = start_node("pose_node", namespace, model_file_path=missing, backend="torch",
                      confidence_threshold=0.0, diagnostics_period_sec=0.2)
    assert listener.spin_until(lambda: bool(listener.diagnostics) or not node.alive(), 60.0)
    assert node.alive(), node.output()
    status = listener.diagnostics[-1]
    assert status.level == b"\x02"  # ERROR
    assert str(missing) in status.message
    log = node.output()
    assert str(missing) in log and "./run train" in log and "MODEL_CARD.md" in log

    # Frames are dropped (no model), not crashing anything.
    img = Image(width=32, height=24, encoding="mono8", step=32, data=bytes(32 * 24))
    listener.image_pub.publish(img)

    client = AsyncParameterClient(listener.node, f"{namespace}/pose_node")
    assert client.wait_for_services(timeout_sec=20.0)
    future = client.set_parameters([Parameter("model_file_path", value=str(tiny_model))])
    assert listener.spin_until(future.done, 20.0)
    assert future.result().results[0].successful
    assert listener.spin_until(lambda: listener.diag().get("model_state") == "ready", 60.0), (
        node.output())

    sent = set()

    def send() -> None:
        msg = Image(width=32, height=24, encoding="mono8", step=32,
                    data=np.full(32 * 24, 128, np.uint8).tobytes())
        msg.header.stamp = listener.node.get_clock().now().to_msg()
        msg.header.frame_id = "cam"
        sent.add((msg.header.stamp.sec, msg.header.stamp.nanosec))
        listener.image_pub.publish(msg)

    assert listener.spin_until(
        lambda: any((p.header.stamp.sec, p.header.stamp.nanosec) in sent
                    and len(p.poses) == skeleton.NUM_JOINTS for p in listener.poses),
        20.0, step=send)
    assert node.alive()
