"""ONNX export of PoseNetwork checkpoints (plugin graph for TensorRT, portable graph for ORT).

Entry points: :func:`.onnx_export.export_network` / :func:`.onnx_export.export_checkpoint`,
the CLI ``python -m sparse_pose_ros.export`` (:mod:`.cli`), the plugin node contract in
:mod:`.plugin_op` and the metadata written/read in :mod:`.metadata`.
"""
