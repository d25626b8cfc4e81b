"""ONNX ``metadata_props`` written at export and read back by every ONNX-consuming backend.

The exported file is self-describing (hash, input size, joint order, normalisation, geometry,
architecture), so no runtime repeats a constant that could drift from the weights it runs.

Format 2 adds ``architecture`` (padding convention, neck, output stride, the backbone's last 1×1
width, the head's pre-conv width) and per-block depthwise pads in ``block_geometry``: MoveNet's
network (TF 'SAME' stride-2 convs, stride 32, FPN neck) runs wrong, silently, on a runtime that
assumes PyTorch padding or the light neck, so such a runtime reads these facts and refuses
(:func:`require_architecture`). Format 1 files are still read: only the stride-16 network
(symmetric padding, light neck) could be exported then, and that is what their defaults say.
A reader that knows only format 1 refuses a format 2 file ("re-export"), never misreads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from ..runtime.geometry import NetworkGeometry
from ..runtime.model_info import BackendError, ModelInfo
from ..runtime.options import check_bone_lengths

FORMAT_VERSION = "2"
#: formats this reader understands (1: written before the architecture facts existed).
READABLE_FORMATS: tuple[str, ...] = ("1", "2")
#: what a format 1 file's network was: the only architecture that could be exported then.
FORMAT1_ARCHITECTURE: dict[str, Any] = {
    "padding": "symmetric",
    "neck": "light",
    "output_stride": 16,
    "last_channels": 0,
    "head_hidden": 0,
}
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
    #: padding / neck / output_stride / last_channels / head_hidden (:func:`architecture_facts`)
    architecture: dict[str, Any] = field(default_factory=lambda: dict(FORMAT1_ARCHITECTURE))


def architecture_facts(network_config: dict[str, Any]) -> dict[str, Any]:
    """The facts of a ``NetworkConfig.to_dict()`` a runtime must support to run the network
    right: padding convention of the stride-2 3×3 convs, neck kind, output stride, the
    backbone's last 1×1 width (0 = none) and the head's separable pre-conv width (0 = none)."""
    arch = network_config.get("arch") or ()
    stride = 2 ** (1 + sum(1 for row in arch if int(row[3]) == 2)) if arch else 16
    return {
        "padding": str(network_config.get("padding", "symmetric")),
        "neck": str(network_config.get("neck", "light")),
        "output_stride": int(stride),
        "last_channels": int(network_config.get("last_channels", 0)),
        "head_hidden": int(network_config.get("head_hidden", 0)),
    }


def require_architecture(
    meta: OnnxMetadata, runtime: str, paddings: tuple[str, ...], necks: tuple[str, ...],
    output_strides: tuple[int, ...] = (16, 32),
) -> None:  # fmt: skip
    """Refuse (``BackendError``) a model whose architecture ``runtime`` cannot run, naming what
    is missing, instead of running it wrong."""
    arch = meta.architecture
    missing = []
    if arch["padding"] not in paddings:
        missing.append(f"padding {arch['padding']!r} (it runs {list(paddings)})")
    if arch["neck"] not in necks:
        missing.append(f"neck {arch['neck']!r} (it runs {list(necks)})")
    if arch["output_stride"] not in output_strides:
        missing.append(f"output stride {arch['output_stride']} (it runs {list(output_strides)})")
    if missing:
        raise BackendError(
            f"{runtime} cannot run {meta.info.source}: it lacks " + "; ".join(missing)
        )


def build_metadata(
    *,
    model_hash: str,
    input_size: int,
    input_width: int = 0,
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
        "input_width": str(int(input_width)),
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
        "architecture": json.dumps(architecture_facts(network_config), sort_keys=True),
    }


def set_metadata(model: onnx.ModelProto, props: dict[str, str]) -> None:
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)


def bone_lengths_m(network_config: dict[str, Any]) -> tuple[float, ...]:
    """The exported network's reference bone lengths in metres (``NetworkConfig.
    bone_lengths_mm``; empty when it has none); ValueError when they are not positive numbers
    of the skeleton's bone count, which a ModelInfo must never carry."""
    lengths = check_bone_lengths(network_config.get("bone_lengths_mm"), "bone_lengths_mm")
    return tuple(v / 1000.0 for v in lengths)


def parse_metadata(props: dict[str, str], source: str) -> OnnxMetadata:
    """Metadata dict (from onnx or onnxruntime) -> OnnxMetadata; BackendError names ``source``."""
    missing = [k for k in REQUIRED_KEYS if k not in props]
    if missing:
        raise BackendError(
            f"{source} is not a sparse_pose_ros export (missing metadata {missing}); "
            "export it with `python -m sparse_pose_ros.export`"
        )
    fmt = props["sparse_pose_ros_format"]
    if fmt not in READABLE_FORMATS:
        raise BackendError(
            f"{source}: metadata format {fmt} is not one of {list(READABLE_FORMATS)} (this "
            "version reads); re-export it with this version"
        )
    if fmt != "1" and "architecture" not in props:
        raise BackendError(f"{source}: format {fmt} metadata without 'architecture'; re-export it")
    try:
        mean = tuple(float(v) for v in json.loads(props["input_mean"]))
        std = tuple(float(v) for v in json.loads(props["input_std"]))
        if len(mean) != 3 or len(std) != 3:
            raise ValueError("mean/std need 3 values")
        config = json.loads(props.get("network_config", "{}"))
        architecture = dict(FORMAT1_ARCHITECTURE)
        if "architecture" in props:
            architecture.update(json.loads(props["architecture"]))
            architecture["output_stride"] = int(architecture["output_stride"])
        info = ModelInfo(
            model_hash=props["model_hash"],
            input_size=int(props["input_size"]),
            joint_names=tuple(str(n) for n in json.loads(props["joint_names"])),
            mean=mean,  # type: ignore[arg-type]
            std=std,  # type: ignore[arg-type]
            depth_range_mm=float(props["depth_range_mm"]),
            gated=props["gated"] == "true",
            source=source,
            output_stride=int(architecture["output_stride"]),
            midpoint_torso=bool(config.get("midpoint_torso", False)),
            bone_lengths_m=bone_lengths_m(config),
            input_width=int(props.get("input_width", "0")),
            person_prior=bool(config.get("person_prior", False)),
        )
        geometry = NetworkGeometry.from_json(props["block_geometry"])
        mask_outputs = tuple(str(n) for n in json.loads(props["mask_outputs"]))
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
        architecture=architecture,
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
