"""Run-time control of the compute spent per frame (no ROS here)."""
