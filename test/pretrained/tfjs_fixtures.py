"""Write tiny TF.js graph models (model.json + .bin shards) for the parser's and the reference
executor's edge cases: the real files are 5-12 MB and exercise one quantisation and one shard."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np


def attr_s(value: str) -> dict[str, str]:
    return {"s": base64.b64encode(value.encode()).decode()}


def attr_list_i(values: list[int]) -> dict[str, Any]:
    return {"list": {"i": [str(v) for v in values]}}


def attr_list_s(values: list[str]) -> dict[str, Any]:
    return {"list": {"s": [base64.b64encode(v.encode()).decode() for v in values]}}


def _encode(arr: np.ndarray, quant: str | None) -> tuple[bytes, dict[str, Any] | None]:
    """Bytes of one tensor and its manifest ``quantization`` entry (None when stored plain)."""
    if quant is None:
        dtype = np.int32 if arr.dtype.kind in "iu" else np.float32
        return arr.astype(dtype).tobytes(), None
    if quant == "float16":
        return arr.astype(np.float16).tobytes(), {"dtype": "float16"}
    if quant in ("uint8", "uint16"):
        levels = 255 if quant == "uint8" else 65535
        lo, hi = float(arr.min()), float(arr.max())
        scale = (hi - lo) / levels or 1.0
        q = np.round((arr - lo) / scale).astype(quant)
        return q.tobytes(), {"dtype": quant, "min": lo, "scale": scale}
    return b"", {"dtype": quant}  # an unknown kind, for the refusal test


def write_graph(folder: Path, nodes: list[dict[str, Any]], weights: dict[str, np.ndarray],
                quantise: dict[str, str] | None = None, shards: int = 1, groups: int = 1,
                extra_bytes: int = 0, drop_bytes: int = 0,
                meta: dict[str, Any] | None = None) -> Path:
    """Write ``model.json`` + shards holding ``weights`` (float32/int32 arrays) in order.

    ``quantise`` maps weight names to "float16", "uint8" or "uint16"; the weights are split
    into ``groups`` consecutive manifest groups, each one byte stream cut into ``shards``
    files; ``extra_bytes``/``drop_bytes`` corrupt the length of the last group's stream.
    """
    quantise = quantise or {}
    names = list(weights)
    cuts = np.linspace(0, len(names), groups + 1).astype(int)
    manifest = []
    for g in range(groups):
        specs, blobs = [], []
        for name in names[cuts[g]:cuts[g + 1]]:
            arr = np.asarray(weights[name])
            blob, quant = _encode(arr, quantise.get(name))
            spec: dict[str, Any] = {"name": name, "shape": list(arr.shape),
                                    "dtype": "int32" if arr.dtype.kind in "iu" else "float32"}
            if quant is not None:
                spec["quantization"] = quant
            specs.append(spec)
            blobs.append(blob)
        stream = b"".join(blobs)
        if g == groups - 1:
            stream += b"\0" * extra_bytes
            stream = stream[:len(stream) - drop_bytes]
        bounds = np.linspace(0, len(stream), shards + 1).astype(int)
        paths = []
        for i in range(shards):
            p = f"group{g + 1}-shard{i + 1}of{shards}.bin"
            (folder / p).write_bytes(stream[bounds[i]:bounds[i + 1]])
            paths.append(p)
        manifest.append({"paths": paths, "weights": specs})
    doc = {"format": "graph-model", "generatedBy": "test", "convertedBy": "test",
           "modelTopology": {"node": nodes}, "weightsManifest": manifest, **(meta or {})}
    path = folder / "model.json"
    path.write_text(json.dumps(doc))
    return path


def const(name: str, shape: list[int] | None = None, dtype: str = "") -> dict[str, Any]:
    """A Const node; ``shape``/``dtype`` declare its tensor as the real files do (optional)."""
    tensor: dict[str, Any] = {"dtype": dtype} if dtype else {}
    if shape is not None:
        tensor["tensorShape"] = {"dim": [{"size": str(d)} for d in shape]}
    return {"name": name, "op": "Const", "attr": {"value": {"tensor": tensor}, "dtype": {}}}


def placeholder(name: str = "input", dtype: str = "") -> dict[str, Any]:
    return {"name": name, "op": "Placeholder",
            "attr": {"dtype": {"type": dtype}} if dtype else {}}


def op(name: str, kind: str, inputs: list[str], **attrs: Any) -> dict[str, Any]:
    """A compute node; ``attrs`` already in protobuf-JSON form (see the ``attr_*`` helpers)."""
    return {"name": name, "op": kind, "input": inputs, "attr": attrs}
