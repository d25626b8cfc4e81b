"""``sparse-pose-export`` / ``python -m sparse_pose_ros.export``: checkpoint -> ONNX file(s).

Example::

    python -m sparse_pose_ros.export --checkpoint models/pose_gated.safetensors --out exported \\
        --graph both --input-size 256

writes ``exported/pose_gated_portable_256.onnx`` (ONNX Runtime, any CPU) and
``exported/pose_gated_plugin_256.onnx`` (TensorRT with the sparse_pose_ros plugin library).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ..model.checkpoint import CheckpointError
from .onnx_export import DEFAULT_OPSET, export_checkpoint

GRAPH_CHOICES = {
    "portable": ("portable",),
    "portable_sparse": ("portable_sparse",),
    "plugin": ("plugin",),
    "both": ("portable", "plugin"),
    "all": ("portable", "portable_sparse", "plugin"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sparse-pose-export",
        description="Export a sparse_pose_ros .safetensors checkpoint to ONNX (fixed input "
        "size, batch 1). 'portable' = standard ONNX ops, gated blocks masked dense; "
        "'portable_sparse' = standard ONNX ops, gated blocks gather-scatter; 'plugin' = one "
        "SparseInvertedResidual custom node per gated block for TensorRT with our plugin.",
    )
    p.add_argument("--checkpoint", required=True, help="path of the .safetensors checkpoint")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--graph", choices=sorted(GRAPH_CHOICES), default="both", help="graph kind(s)")
    p.add_argument(
        "--input-size", type=int, default=None, help="square input side (default: checkpoint's)"
    )
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default 17)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        paths = export_checkpoint(
            args.checkpoint,
            args.out,
            graphs=GRAPH_CHOICES[args.graph],
            input_size=args.input_size,
            opset=args.opset,
        )
    except (CheckpointError, ValueError, OSError) as exc:
        print(f"sparse-pose-export: error: {exc}", file=sys.stderr)
        return 2
    for graph, path in paths.items():
        print(f"{graph}: {path}")
    return 0
