"""Image -> pose pipeline around a backend: letterbox/normalise, lift to metric 3D, estimator.

No ROS here: the node, the demo and the benchmarks all call the same code.
"""
