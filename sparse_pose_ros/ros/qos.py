"""QoS of pose_node's topics, in a module of its own so light tools (the transport benchmark)
can subscribe exactly like the node without importing the inference stack.

Image subscription vs camera drivers' publishers: drivers publish either best effort
(``qos_profile_sensor_data``) or reliable (the ROS 2 default QoS, often with a history depth of
1-10). Best effort matches both: a best-effort reader is compatible with a reliable
writer, which then delivers to it without retransmissions (checked in
test/ros/test_transport.py). A reliable reader would not match a best-effort camera at all,
which is why the node never asks for reliability on its input.
"""

from __future__ import annotations

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

#: Best effort, and a history of 3 rather than 1: the node keeps only the newest frame itself
#: (``PoseNode._on_image``), but a DDS history of 1 silently overwrote frames whenever the
#: executor thread was late taking them (the inference thread holds the GIL): measured 254 of
#: 360 small frames at 30 Hz reached the callback with depth 1 on a 2-core machine, 360 of 360
#: with depth 3 — and only frames that reach the node can be counted as dropped.
IMAGE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=3,
    reliability=qos_profile_sensor_data.reliability,
    durability=qos_profile_sensor_data.durability,
)
OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                        reliability=ReliabilityPolicy.RELIABLE)
