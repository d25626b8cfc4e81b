"""The portable ONNX graph behind a model file, for the runtimes that run standard ops only
(onnxruntime, OpenVINO): one export cache, one set of refusals, one input-size check.

Imports neither runtime, so each backend can load where the other is absent.
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..export.export_cache import checkpoint_training, ensure_onnx_export, warn_if_baked
from ..runtime.options import strip_width
from .base import (
    Backend,
    BackendError,
    BackendOptions,
    InferenceResult,
    ModelInfo,
    build_result,
    check_input,
    check_probability,
    threshold_logit,
)

__all__ = ["RUNNABLE_GRAPHS", "RUNNABLE_NECKS", "RUNNABLE_PADDINGS", "PortableGraph",
           "PortableGraphBackend", "default_cache_dir", "resolve_portable_graph"]


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
        onnx_path = ensure_onnx_export(path, opts.input_size, cache, graph, opts.head_gating,
                                       opts.input_width)
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
    width = strip_width(meta.info.input_size, opts.input_width)
    if opts.input_width is not None and width != meta.info.input_width:
        raise BackendError(
            f"{onnx_path} takes a {meta.info.input_hw[0]}x{meta.info.input_hw[1]} input, not "
            f"{width or 'square'} wide; export it again at that width"
        )
    info = meta.info if suffix == ".onnx" else replace(
        meta.info, source=path, training=checkpoint_training(path))
    return PortableGraph(onnx_path, meta, info)


class PortableGraphBackend(Backend):
    """What a runtime of the portable graph shares: the graph's facts, the threshold input it
    feeds, the outputs it asks for and how they become an :class:`InferenceResult`. A subclass
    loads the graph, calls :meth:`_adopt` and implements :meth:`_run` (outputs by name)."""

    def _adopt(self, graph_file: PortableGraph, opts: BackendOptions) -> None:
        self.backend_options = opts
        self.meta = graph_file.meta
        # The checkpoint is what the user named; the cached .onnx is an implementation detail.
        self.info = graph_file.info
        self.geometry = graph_file.meta.geometry
        self.onnx_path = graph_file.onnx_path
        self._outputs = ["heatmaps", "joints", *graph_file.meta.mask_outputs]
        self._threshold = np.zeros(1, dtype=np.float32)
        self.set_mask_threshold(opts.mask_threshold)

    def set_mask_threshold(self, probability: float) -> None:
        p = check_probability(probability)
        self._threshold = np.array([threshold_logit(p)], dtype=np.float32)
        self.mask_threshold = p

    @abc.abstractmethod
    def _run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The graph's ``self._outputs`` for ``feed``, in that order."""

    def infer(self, tensor: np.ndarray) -> InferenceResult:
        x = check_input(tensor, self.info.input_size, self.info.input_width)
        feed: dict[str, np.ndarray] = {self.meta.input_name: x}
        if self.meta.threshold_input:
            feed[self.meta.threshold_input] = self._threshold
        heatmaps, joints, *masks = self._run(feed)
        return build_result(joints[0], heatmaps[0], [m[0, 0] for m in masks], self.geometry)
