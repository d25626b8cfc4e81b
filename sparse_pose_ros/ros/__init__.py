"""ROS 2 layer, the only package that imports rclpy: nodes, message conversion, replay, recorder."""
