"""Training and evaluation CLIs: configs, loop, DDP, metrics. Imports torch, never ROS."""
