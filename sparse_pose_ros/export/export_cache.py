"""Checkpoint -> ONNX exports cached on disk, shared by the onnxruntime and tensorrt backends,
and the ``head_gating`` option applied to a loaded network (the rule itself, with its three
defaults, is ``runtime.options.effective_head_gating``).

Why one module: both graph runtimes export a .safetensors checkpoint on first use and reuse the
file afterwards; the cache key (model hash, input size, graph kind, metadata format, head
gating) must be the same rule in both, or a changed option would silently reuse a stale graph.
Imports neither onnxruntime nor TensorRT, so each backend can use it where the other is absent.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..runtime.model_info import BackendError
from ..runtime.options import effective_head_gating, strip_width

LOG = logging.getLogger(__name__)

#: Bumped whenever the exporter writes a different graph for the same checkpoint, so a cache
#: filled by an older exporter is not reused (the model hash alone cannot tell). 2: the peak
#: window's index from ReduceMax/ReduceMin instead of ArgMax (``model.index_ops.first_max_index``).
#: 3: the person prior's regression at the chosen centre only (``model.movenet_head.branch_at``).
GRAPH_REVISION = 3

__all__ = ["GRAPH_REVISION", "apply_head_gating", "cached_onnx_path", "checkpoint_training",
           "effective_head_gating", "ensure_onnx_export", "warn_if_baked"]


def apply_head_gating(net: Any, requested: bool | None) -> bool:
    """Set ``net``'s head gating per :func:`effective_head_gating`; returns the value used."""
    on = effective_head_gating(net.cfg.to_dict(), requested)
    if bool(net.cfg.head_gating) != on:
        net.set_head_gating(on)
    return on


def cached_onnx_path(
    cache_dir: Path, digest: str, input_size: int, graph: str = "portable",
    head_gating: bool = False, input_width: int | None = None,
) -> Path:  # fmt: skip
    """Cache file of a checkpoint's export (hash + size (× strip width) + graph kind + head
    gating + metadata format + graph revision key)."""
    from .metadata import FORMAT_VERSION

    hg = "_hg" if head_gating else ""
    strip = strip_width(input_size, input_width)
    size = f"{input_size}x{strip}" if strip else f"{input_size}"
    name = f"{digest[:24]}_{size}_{graph}{hg}_f{FORMAT_VERSION}g{GRAPH_REVISION}.onnx"
    return cache_dir / "onnx" / name


def ensure_onnx_export(
    checkpoint: str, input_size: int | None, cache_dir: Path, graph: str,
    head_gating: bool | None = None, input_width: int | None = None,
) -> Path:  # fmt: skip
    """Return a cached ``graph`` export of ``checkpoint``, exporting it on first use.

    A cached file is reused only if its metadata names the same model hash; an unreadable one
    is replaced. Raises :class:`BackendError` for a bad checkpoint or an unwritable cache."""
    from ..export.metadata import read_metadata as read_onnx_metadata
    from ..export.onnx_export import export_network
    from ..model.checkpoint import CheckpointError, load_checkpoint
    from ..model.checkpoint import read_metadata as read_ckpt_metadata

    try:
        meta = read_ckpt_metadata(checkpoint)
    except CheckpointError as exc:
        raise BackendError(str(exc)) from exc
    size = int(input_size if input_size is not None else meta["config"]["input_size"])
    digest = str(meta["model_hash"])
    gating = effective_head_gating(meta["config"], head_gating)
    strip = strip_width(size, input_width)
    path = cached_onnx_path(cache_dir, digest, size, graph, gating, strip)
    if path.is_file():
        try:
            if read_onnx_metadata(path).info.model_hash == digest:
                LOG.info("using cached export %s (%s graph)", path, graph)
                return path
        except BackendError as exc:
            LOG.warning("cached %s export unusable, re-exporting: %s", graph, exc)
    try:
        net, info = load_checkpoint(checkpoint)
    except CheckpointError as exc:
        raise BackendError(str(exc)) from exc
    if net.backbone.locator is not None:  # before a long export: say it cannot be done
        raise BackendError(f"{checkpoint}: its masks come from a person locator, which the "
                           "ONNX graphs do not carry; use the sparse-cpu or torch backend")
    apply_head_gating(net, head_gating)
    LOG.info("exporting %s (%s graph, %d px%s, head gating %s) into %s", checkpoint, graph,
             size, f" × {strip} wide" if strip else "", "on" if gating else "off",
             path)  # fmt: skip
    try:
        return export_network(net, path, graph, input_size=size, digest=info["model_hash"],
                              input_width=strip or None)
    except ValueError as exc:  # a strip for a gated network
        raise BackendError(f"{checkpoint}: {exc}") from exc
    except OSError as exc:
        raise BackendError(f"cannot write the ONNX cache {path} for {checkpoint}: {exc}") from exc


def warn_if_baked(path: str, head_gating: bool | None, runtime: str) -> None:
    """An exported .onnx carries its head gating in the graph: say so when asked to change it."""
    if head_gating is not None:
        LOG.info("%s: head_gating=%s is ignored for %s, an exported graph (its head gating "
                    "was fixed at export; pass the .safetensors checkpoint to choose it)",
                    runtime, head_gating, path)  # fmt: skip


def checkpoint_training(path: str) -> dict[str, Any] | None:
    """The training record of a .safetensors checkpoint (``ModelInfo.training``: the ``meta``
    ``save_checkpoint`` stored), for a runtime that runs its export; None for any other file
    (an exported graph carries none). BackendError for an unreadable checkpoint."""
    if Path(path).suffix != ".safetensors":
        return None
    from ..model.checkpoint import CheckpointError, read_metadata

    try:
        return dict(read_metadata(path)["meta"])
    except CheckpointError as exc:
        raise BackendError(str(exc)) from exc
