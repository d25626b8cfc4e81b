"""Pure-PyTorch model: mask units, gated blocks, HEMlets heads, losses, FLOPs. No ROS here."""
