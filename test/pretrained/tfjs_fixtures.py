"""Write tiny TF.js graph models (model.json + .bin shards) for the parser's edge cases."""

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


def write_graph(folder: Path, nodes: list[dict[str, Any]], weights: dict[str, np.ndarray],
                quantise: dict[str, str] | None = None, shards: int = 1,
                extra_bytes: int = 0, drop_bytes: int = 0,
                meta: dict[str, Any] | None = None) -> Path:
    """Write ``model.json`` + shards holding ``weights`` (float32/int32 arrays) in order.

    ``quantise`` maps weight names to "float16" or "uint8"; ``shards`` splits the byte stream;
    ``extra_bytes``/``drop_bytes`` corrupt its length.
    """
    quantise = quantise or {}
    specs, blobs = [], []
    for name, arr in weights.items():
        spec: dict[str, Any] = {"name": name, "shape": list(arr.shape),
                                "dtype": "int32" if arr.dtype.kind in "iu" else "float32"}
        q = quantise.get(name)
        if q == "float16":
            blobs.append(arr.astype(np.float16).tobytes())
            spec["quantization"] = {"dtype": "float16"}
        elif q == "uint8":
            lo, hi = float(arr.min()), float(arr.max())
            scale = (hi - lo) / 255.0 or 1.0
            blobs.append(np.round((arr - lo) / scale).astype(np.uint8).tobytes())
            spec["quantization"] = {"dtype": "uint8", "min": lo, "scale": scale}
        else:
            blobs.append(arr.astype(np.int32 if spec["dtype"] == "int32" else np.float32)
                         .tobytes())
        specs.append(spec)
    stream = b"".join(blobs) + b"\0" * extra_bytes
    if drop_bytes:
        stream = stream[:-drop_bytes]
    cut = np.linspace(0, len(stream), shards + 1).astype(int)
    paths = []
    for i in range(shards):
        p = f"group1-shard{i + 1}of{shards}.bin"
        (folder / p).write_bytes(stream[cut[i]:cut[i + 1]])
        paths.append(p)
    doc = {"format": "graph-model", "generatedBy": "test", "convertedBy": "test",
           "modelTopology": {"node": nodes},
           "weightsManifest": [{"paths": paths, "weights": specs}], **(meta or {})}
    path = folder / "model.json"
    path.write_text(json.dumps(doc))
    return path


def const(name: str) -> dict[str, Any]:
    return {"name": name, "op": "Const", "attr": {"value": {"tensor": {}}, "dtype": {}}}


def placeholder(name: str = "input") -> dict[str, Any]:
    return {"name": name, "op": "Placeholder", "attr": {}}
