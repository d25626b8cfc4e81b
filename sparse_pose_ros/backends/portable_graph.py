"""The portable ONNX graph behind a model file, for the runtimes that run standard ops only
(onnxruntime, OpenVINO): one export cache, one set of refusals, one input-size check.

Imports neither runtime, so each backend can load where the other is absent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..export.export_cache import checkpoint_training, ensure_onnx_export, warn_if_baked
from .base import BackendError, BackendOptions, ModelInfo

__all__ = ["RUNNABLE_GRAPHS", "RUNNABLE_NECKS", "RUNNABLE_PADDINGS", "PortableGraph",
           "default_cache_dir", "resolve_portable_graph"]


def default_cache_dir() -> Path:
    """Root of the checkpoint-export cache: $SPARSE_POSE_CACHE, else ~/.cache/sparse_pose_ros."""
    env = os.environ.get("SPARSE_POSE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "sparse_pose_ros"


#: Graph kinds these runtimes run (standard ONNX ops only).
RUNNABLE_GRAPHS: tuple[str, ...] = ("portable", "portable_sparse")
#: Architectures it runs: every conv, pad and resize is a standard op in the graph, so both
#: padding conventions and both necks (export/metadata.py ``architecture``); anything a newer
#: exporter may add is refused by name rather than run on assumptions.
RUNNABLE_PADDINGS: tuple[str, ...] = ("symmetric", "tf_same")
RUNNABLE_NECKS: tuple[str, ...] = ("light", "fpn")


@dataclass(frozen=True)
class PortableGraph:
    """A portable ONNX graph ready to load: where it is, its metadata, and the model info a
    caller sees (naming the checkpoint the user gave, not the cached export)."""

    onnx_path: Path
    meta: Any
    info: ModelInfo


def resolve_portable_graph(
    model_file_path: str | os.PathLike[str], opts: BackendOptions, graph: str, runtime: str
) -> PortableGraph:
    """The portable graph behind ``model_file_path`` for a standard-ops runtime.

    Why shared: onnxruntime and OpenVINO run the very same exported file, so the export cache,
    the refusal of TensorRT-only graphs and architectures, and the input-size check must be one
    rule; a checkpoint is exported once into the cache and both read it back from there.

    Raises:
        ValueError: ``graph`` is not a portable kind.
        BackendError: wrong file type, a non-portable graph, an architecture the runtime does
            not run, or an input size other than the file's.
    """
    from ..export.metadata import read_metadata as read_onnx_metadata
    from ..export.metadata import require_architecture

    path = str(model_file_path)
    suffix = Path(path).suffix
    if graph not in RUNNABLE_GRAPHS:
        raise ValueError(f"graph must be one of {RUNNABLE_GRAPHS}, got {graph!r}")
    if suffix == ".safetensors":
        cache = Path(opts.cache_dir) if opts.cache_dir is not None else default_cache_dir()
        onnx_path = ensure_onnx_export(path, opts.input_size, cache, graph, opts.head_gating)
    elif suffix == ".onnx":
        onnx_path = Path(path)
        warn_if_baked(path, opts.head_gating, runtime)
    else:
        raise BackendError(f"{runtime} needs a .onnx or .safetensors file, got {path}")
    meta = read_onnx_metadata(onnx_path)
    if meta.graph not in RUNNABLE_GRAPHS:
        raise BackendError(
            f"{onnx_path} is a {meta.graph!r} graph (custom TensorRT nodes); {runtime} "
            "needs the portable graph: python -m sparse_pose_ros.export --graph portable"
        )
    require_architecture(meta, runtime, RUNNABLE_PADDINGS, RUNNABLE_NECKS)
    if opts.input_size is not None and int(opts.input_size) != meta.info.input_size:
        raise BackendError(
            f"{onnx_path} was exported at {meta.info.input_size} px, not {opts.input_size}; "
            "export it again at that size"
        )
    info = meta.info if suffix == ".onnx" else replace(
        meta.info, source=path, training=checkpoint_training(path))
    return PortableGraph(onnx_path, meta, info)
