"""CUDA kernels of the sparse inverted-residual block and the contract of the op that wraps them.

The ``.cu``/``.cuh``/``.h`` files in this folder are compiled unchanged into the torch CUDA
extension (:mod:`sparse_pose_ros.sparse.cuda_ext`) and into the TensorRT plugin (``plugin/``).
The constants below are the op's contract shared by the ONNX exporter, the plugin (which spells
the same values in ``sparseInvertedResidualPlugin.h``) and the tests: change both together.
"""

from __future__ import annotations

from pathlib import Path

KERNEL_DIR = Path(__file__).resolve().parent
#: Header with the host API, the device kernels, and the launcher translation unit.
KERNEL_HEADER = KERNEL_DIR / "sparse_block.h"
KERNEL_DEVICE_HEADER = KERNEL_DIR / "sparse_block_kernels.cuh"
KERNEL_SOURCE = KERNEL_DIR / "sparse_block.cu"
TORCH_BINDING_SOURCE = KERNEL_DIR / "torch_binding.cpp"

# --- the custom op (ONNX node <-> TensorRT plugin creator) ---------------------------------
PLUGIN_NAME = "SparseInvertedResidual"  # ONNX op type and plugin name
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "sparse_pose_ros"
ONNX_DOMAIN = "sparse_pose_ros"

# Input tensor positions (kX_IDX ... in the plugin).
INPUT_X = 0  # (B, C, H, W) float/half
INPUT_MASK = 1  # (B, 1, Ho, Wo) float/half, 0/1
INPUT_W_EXPAND = 2  # (Ce, C) float32, or a 1-element placeholder when has_expand = 0
INPUT_B_EXPAND = 3  # (Ce,)
INPUT_W_DW = 4  # (Ce, 9)
INPUT_B_DW = 5  # (Ce,)
INPUT_W_PROJ = 6  # (Co, Ce)
INPUT_B_PROJ = 7  # (Co,)
NUM_INPUTS = 8
OUTPUT_Y = 0  # (B, Co, Ho, Wo), dtype of X

# Plugin fields / ONNX attributes (int32 each).
FIELD_STRIDE = "stride"
FIELD_HAS_EXPAND = "has_expand"
FIELD_RESIDUAL = "residual"
#: Zero rows/cols the depthwise pads before the input (both axes): 1 = PyTorch padding=1, 0 = TF
#: 'SAME' of a stride-2 conv on an even input. Optional in the plugin, where absent means 1, so
#: ONNX files and engines from before the field keep their (symmetric) meaning.
FIELD_PAD_BEFORE = "pad_before"
PAD_BEFORE_DEFAULT = 1
FIELD_NAMES = (FIELD_STRIDE, FIELD_HAS_EXPAND, FIELD_RESIDUAL, FIELD_PAD_BEFORE)

__all__ = [
    "FIELD_HAS_EXPAND",
    "FIELD_NAMES",
    "FIELD_PAD_BEFORE",
    "FIELD_RESIDUAL",
    "FIELD_STRIDE",
    "INPUT_B_DW",
    "INPUT_B_EXPAND",
    "INPUT_B_PROJ",
    "INPUT_MASK",
    "INPUT_W_DW",
    "INPUT_W_EXPAND",
    "INPUT_W_PROJ",
    "INPUT_X",
    "KERNEL_DEVICE_HEADER",
    "KERNEL_DIR",
    "KERNEL_HEADER",
    "KERNEL_SOURCE",
    "NUM_INPUTS",
    "ONNX_DOMAIN",
    "OUTPUT_Y",
    "PAD_BEFORE_DEFAULT",
    "PLUGIN_NAME",
    "PLUGIN_NAMESPACE",
    "PLUGIN_VERSION",
    "TORCH_BINDING_SOURCE",
]
