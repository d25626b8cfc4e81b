"""Safe checkpoints: tensors in safetensors, config + hashes as string metadata.

safetensors cannot execute code on load (unlike pickle), so a user can load a checkpoint from
anywhere. The network config travels with the weights, so a file is self-describing, and the
model hash (weights + config) keys exported ONNX files and TensorRT engine caches.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .network import NetworkConfig, PoseNetwork

FORMAT_VERSION = "1"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt or does not match the network it describes."""


def model_hash(state: dict[str, torch.Tensor], config: dict[str, Any]) -> str:
    """sha256 over the config JSON and every tensor (name, dtype, shape, bytes), in name order."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(path: str | Path, net: PoseNetwork, meta: dict[str, Any] | None = None) -> str:
    """Write ``net`` to ``path`` (.safetensors); returns the model hash.

    ``meta`` holds JSON-serialisable facts about training (command, data, metrics); it is stored
    under the ``meta`` key and returned by :func:`load_checkpoint`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    config = net.cfg.to_dict()
    digest = model_hash(state, config)
    metadata = {
        "format_version": FORMAT_VERSION,
        "config": json.dumps(config, sort_keys=True),
        "model_hash": digest,
        "meta": json.dumps(meta or {}, sort_keys=True),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp), metadata=metadata)
    tmp.replace(path)  # atomic: a crash mid-write never leaves a half file at ``path``
    return digest


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Config, hash and meta of a checkpoint without loading its tensors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is not a readable safetensors file: {exc}"
        ) from exc
    if raw.get("format_version") != FORMAT_VERSION or "config" not in raw:
        raise CheckpointError(
            f"checkpoint {path} lacks sparse_pose_ros metadata (format {FORMAT_VERSION})"
        )
    return {
        "config": json.loads(raw["config"]),
        "model_hash": raw.get("model_hash", ""),
        "meta": json.loads(raw.get("meta", "{}")),
    }


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", verify_hash: bool = True
) -> tuple[PoseNetwork, dict[str, Any]]:
    """Build the network described by the file and load its weights (eval mode).

    Returns ``(net, info)`` with info = {"config", "model_hash", "meta", "fp16"} ("fp16":
    every floating-point tensor is stored in half precision, as the shipped checkpoints are,
    so a tool that rewrites the file can keep its size). Raises
    :class:`CheckpointError` with the path in the message for every failure a user can cause.
    """
    info = read_metadata(path)
    try:
        state = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt: {exc}") from exc
    stored = info["model_hash"]
    if verify_hash and stored and model_hash(state, info["config"]) != stored:
        raise CheckpointError(f"checkpoint {path}: weights do not match the stored model hash")
    try:
        net = PoseNetwork(NetworkConfig.from_dict(info["config"]))
        net.load_state_dict(state, strict=True)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"checkpoint {path} does not match its network config: {exc}"
        ) from exc
    info = {**info, "fp16": all(t.dtype == torch.float16 for t in state.values()
                                if t.is_floating_point())}
    return net.to(map_location).eval(), info
