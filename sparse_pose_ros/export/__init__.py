"""ONNX export of PoseNetwork checkpoints (plugin graph for TensorRT, portable graph for ORT)."""
