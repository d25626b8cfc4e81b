"""Benchmark CLIs (``python -m sparse_pose_ros.benchmarks <name> ...``)."""
