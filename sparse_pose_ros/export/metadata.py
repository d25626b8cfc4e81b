"""ONNX ``metadata_props`` written at export and read back by every ONNX-consuming backend.

The exported file is self-describing (hash, input size, joint order, normalisation, geometry),
so no runtime repeats a constant that could drift from the weights it runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from ..backends.base import BackendError, ModelInfo
from ..backends.density import NetworkGeometry

FORMAT_VERSION = "1"
REQUIRED_KEYS: tuple[str, ...] = (
    "sparse_pose_ros_format",
    "model_hash",
    "input_size",
    "joint_names",
    "input_mean",
    "input_std",
    "depth_range_mm",
    "gated",
    "graph",
    "opset",
    "block_geometry",
    "mask_outputs",
    "input_name",
    "threshold_input",
)


@dataclass(frozen=True)
class OnnxMetadata:
    """Parsed metadata of an exported model."""

    info: ModelInfo
    graph: str
    opset: int
    geometry: NetworkGeometry
    mask_outputs: tuple[str, ...]
    input_name: str
    threshold_input: str  # "" for dense models
    network_config: dict[str, Any]


def build_metadata(
    *,
    model_hash: str,
    input_size: int,
    joint_names: tuple[str, ...],
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    depth_range_mm: float,
    graph: str,
    opset: int,
    geometry: NetworkGeometry,
    mask_outputs: list[str],
    input_name: str,
    threshold_input: str,
    network_config: dict[str, Any],
) -> dict[str, str]:
    """All metadata as ONNX string properties (JSON for structured values)."""
    return {
        "sparse_pose_ros_format": FORMAT_VERSION,
        "model_hash": model_hash,
        "input_size": str(int(input_size)),
        "joint_names": json.dumps(list(joint_names)),
        "input_mean": json.dumps([float(v) for v in mean]),
        "input_std": json.dumps([float(v) for v in std]),
        "depth_range_mm": repr(float(depth_range_mm)),
        "gated": "true" if geometry.gated_indices else "false",
        "graph": graph,
        "opset": str(int(opset)),
        "block_geometry": geometry.to_json(),
        "mask_outputs": json.dumps(mask_outputs),
        "input_name": input_name,
        "threshold_input": threshold_input,
        "network_config": json.dumps(network_config, sort_keys=True),
    }


def set_metadata(model: onnx.ModelProto, props: dict[str, str]) -> None:
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)


def parse_metadata(props: dict[str, str], source: str) -> OnnxMetadata:
    """Metadata dict (from onnx or onnxruntime) -> OnnxMetadata; BackendError names ``source``."""
    missing = [k for k in REQUIRED_KEYS if k not in props]
    if missing:
        raise BackendError(
            f"{source} is not a sparse_pose_ros export (missing metadata {missing}); "
            "export it with `python -m sparse_pose_ros.export`"
        )
    if props["sparse_pose_ros_format"] != FORMAT_VERSION:
        raise BackendError(
            f"{source}: metadata format {props['sparse_pose_ros_format']} != {FORMAT_VERSION}; "
            "re-export it"
        )
    try:
        mean = tuple(float(v) for v in json.loads(props["input_mean"]))
        std = tuple(float(v) for v in json.loads(props["input_std"]))
        if len(mean) != 3 or len(std) != 3:
            raise ValueError("mean/std need 3 values")
        info = ModelInfo(
            model_hash=props["model_hash"],
            input_size=int(props["input_size"]),
            joint_names=tuple(str(n) for n in json.loads(props["joint_names"])),
            mean=mean,  # type: ignore[arg-type]
            std=std,  # type: ignore[arg-type]
            depth_range_mm=float(props["depth_range_mm"]),
            gated=props["gated"] == "true",
            source=source,
        )
        geometry = NetworkGeometry.from_json(props["block_geometry"])
        mask_outputs = tuple(str(n) for n in json.loads(props["mask_outputs"]))
        config = json.loads(props.get("network_config", "{}"))
        opset = int(props["opset"])
    except (ValueError, TypeError) as exc:
        raise BackendError(f"{source}: malformed sparse_pose_ros metadata: {exc}") from exc
    if len(mask_outputs) != len(geometry.gated_indices):
        raise BackendError(
            f"{source}: {len(mask_outputs)} mask outputs for "
            f"{len(geometry.gated_indices)} gated blocks"
        )
    return OnnxMetadata(
        info=info,
        graph=props["graph"],
        opset=opset,
        geometry=geometry,
        mask_outputs=mask_outputs,
        input_name=props["input_name"],
        threshold_input=props["threshold_input"],
        network_config=config,
    )


def read_metadata(path: str | Path) -> OnnxMetadata:
    """Metadata of an ONNX file on disk (loads the graph without external data)."""
    path = Path(path)
    if not path.is_file():
        raise BackendError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends; all mean "not ONNX"
        raise BackendError(f"{path} is not a readable ONNX file: {exc}") from exc
    return parse_metadata({p.key: p.value for p in model.metadata_props}, str(path))
