"""sparse_pose_ros: monocular 3D human pose with spatially sparse (masked) execution.

The library under this package works without ROS; only ``sparse_pose_ros.ros`` imports rclpy.
"""

__version__ = "0.1.0"
