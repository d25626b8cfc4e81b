"""Read a TF.js *graph model* (``model.json`` + ``.bin`` shards) with numpy alone.

Why not TensorFlow: it is a 500 MB dependency for reading ~150 tensors, and the format is small:
``modelTopology`` is a TF GraphDef as JSON (``node[]`` with ``name``, ``op``, ``input``,
``attr``), ``weightsManifest[]`` lists shard files and, per tensor, ``name``, ``shape``,
``dtype`` and an optional ``quantization`` (``float16``: IEEE halves; ``uint8``/``uint16``:
value = q · scale + min). A group's shards are one byte stream holding its tensors in manifest
order. Attribute values are protobuf-JSON: strings are base64, 64-bit ints are decimal strings.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class TfjsFormatError(ValueError):
    """The files are not a readable TF.js graph model (names the file and the tensor)."""


#: manifest dtype -> (numpy dtype, bytes per element) of unquantised tensors.
_DTYPES: dict[str, tuple[type, int]] = {
    "float32": (np.float32, 4), "int32": (np.int32, 4), "bool": (np.bool_, 1),
}
_QUANTISED: dict[str, tuple[type, int]] = {
    "float16": (np.float16, 2), "uint8": (np.uint8, 1), "uint16": (np.uint16, 2),
}


@dataclass(frozen=True)
class GraphNode:
    """One GraphDef node. ``inputs`` as in the file ("name" or "name:k"), control inputs
    ("^name") dropped; ``attrs`` decoded to Python values (see :func:`decode_attr`)."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class TfjsGraph:
    """A parsed graph model: nodes in file order, every manifest tensor by name, and the
    file's top-level facts (``format``, ``generatedBy``, ``convertedBy``, ``signature``)."""

    nodes: list[GraphNode]
    weights: dict[str, np.ndarray]
    meta: dict[str, Any]

    def node(self, name: str) -> GraphNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node named {name!r}")

    def by_op(self, op: str) -> list[GraphNode]:
        return [n for n in self.nodes if n.op == op]


def _decode_scalar(kind: str, value: Any) -> Any:
    if kind == "s":
        raw = base64.b64decode(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw
    if kind == "i":
        return int(value)
    if kind == "f":
        return float(value)
    if kind == "b":
        return bool(value)
    if kind == "type":
        return str(value)
    if kind == "shape":
        return [int(d.get("size", -1)) for d in value.get("dim", [])]
    return value


def decode_attr(attr: dict[str, Any]) -> Any:
    """A protobuf-JSON AttrValue -> Python: s -> str, i -> int, f -> float, b -> bool,
    type -> str, shape -> [int], list -> [decoded]; ``tensor`` values are left as they are
    (Const data lives in the weights)."""
    if "list" in attr:
        lst = attr["list"] or {}
        out: list[Any] = []
        for kind, values in lst.items():
            out.extend(_decode_scalar(kind, v) for v in values)
        return out
    for kind, value in attr.items():
        return _decode_scalar(kind, value)
    return None


def _node(raw: dict[str, Any]) -> GraphNode:
    attrs = {k: decode_attr(v) for k, v in (raw.get("attr") or {}).items() if k != "value"}
    inputs = tuple(i for i in raw.get("input", []) if not i.startswith("^"))
    return GraphNode(name=raw["name"], op=raw["op"], inputs=inputs, attrs=attrs)


def _read_group(base: Path, group: dict[str, Any], json_path: Path) -> dict[str, np.ndarray]:
    chunks = []
    for rel in group.get("paths", []):
        shard = base / rel
        if not shard.is_file():
            first = next((w.get("name") for w in group.get("weights", [])), None)
            raise TfjsFormatError(f"{json_path}: weight shard {shard} is missing (its group "
                                  f"starts with weight {first})")
        chunks.append(shard.read_bytes())
    buf = b"".join(chunks)
    out: dict[str, np.ndarray] = {}
    offset = 0
    for spec in group.get("weights", []):
        name, shape, dtype = spec["name"], [int(d) for d in spec["shape"]], spec["dtype"]
        count = int(np.prod(shape)) if shape else 1
        quant = spec.get("quantization")
        if quant is not None:
            qdtype = quant.get("dtype")
            if qdtype not in _QUANTISED:
                raise TfjsFormatError(f"{json_path}: {name}: unknown quantisation {qdtype!r}")
            np_dtype, size = _QUANTISED[qdtype]
        else:
            if dtype not in _DTYPES:
                raise TfjsFormatError(f"{json_path}: {name}: unsupported dtype {dtype!r}")
            np_dtype, size = _DTYPES[dtype]
        end = offset + count * size
        if end > len(buf):
            raise TfjsFormatError(f"{json_path}: shards end at byte {len(buf)} inside {name} "
                                  f"(needs {end})")
        arr = np.frombuffer(buf, dtype=np_dtype, count=count, offset=offset).reshape(shape)
        offset = end
        if quant is not None:
            if quant["dtype"] == "float16":
                arr = arr.astype(np.float32)
            else:
                arr = (arr.astype(np.float32) * np.float32(quant["scale"])
                       + np.float32(quant["min"]))
            if dtype == "int32":
                arr = np.rint(arr).astype(np.int32)
        out[name] = np.array(arr)  # own the memory (frombuffer views are read-only)
    if offset != len(buf):
        raise TfjsFormatError(f"{json_path}: {len(buf) - offset} trailing bytes after the last "
                              "weight of a group (manifest and shards disagree)")
    return out


#: GraphDef dtype enum -> the dtype :func:`load_graph_model` gives that Const's weight.
_CONST_DTYPES = {"DT_FLOAT": np.float32, "DT_INT32": np.int32, "DT_BOOL": np.bool_}


def _check_consts(raw_nodes: list[dict[str, Any]], weights: dict[str, np.ndarray],
                  path: Path) -> None:
    """Every Const has weight data, of the shape and dtype its node declares: a manifest that
    disagrees with its graph would otherwise surface far away as a wrong result."""
    for raw in raw_nodes:
        if raw.get("op") != "Const":
            continue
        name = raw["name"]
        if name not in weights:
            raise TfjsFormatError(f"{path}: Const node {name} has no weight data")
        tensor = ((raw.get("attr") or {}).get("value") or {}).get("tensor") or {}
        if "tensorShape" in tensor:
            dims = [int(d.get("size", -1)) for d in tensor["tensorShape"].get("dim", [])]
            if dims != list(weights[name].shape):
                raise TfjsFormatError(f"{path}: Const node {name} declares shape {dims}, its "
                                      f"weight has {list(weights[name].shape)}")
        want = _CONST_DTYPES.get(tensor.get("dtype", ""))
        if want is not None and weights[name].dtype != want:
            raise TfjsFormatError(f"{path}: Const node {name} is {tensor['dtype']}, its weight "
                                  f"is {weights[name].dtype}")


def load_graph_model(model_json: str | Path) -> TfjsGraph:
    """Parse ``model.json`` and its shards. Raises :class:`TfjsFormatError` on anything a
    corrupt or foreign file can cause: bad JSON, missing/short/long shards, unknown dtypes, a
    Const node without weight data."""
    path = Path(model_json)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TfjsFormatError(f"{path}: not a readable TF.js model.json ({exc})") from exc
    if not isinstance(data, dict) or "modelTopology" not in data:
        raise TfjsFormatError(f"{path}: no modelTopology (is it a TF.js graph model?)")
    if data.get("format") not in (None, "graph-model"):
        raise TfjsFormatError(f"{path}: format {data.get('format')!r}, expected 'graph-model'")
    try:
        nodes = [_node(n) for n in data["modelTopology"].get("node", [])]
    except (KeyError, TypeError, ValueError) as exc:
        raise TfjsFormatError(f"{path}: malformed node ({exc})") from exc
    weights: dict[str, np.ndarray] = {}
    for group in data.get("weightsManifest", []):
        for name, arr in _read_group(path.parent, group, path).items():
            if name in weights:
                raise TfjsFormatError(f"{path}: weight {name} appears twice")
            weights[name] = arr
    _check_consts(data["modelTopology"].get("node", []), weights, path)
    meta = {k: data[k] for k in ("format", "generatedBy", "convertedBy", "signature")
            if k in data}
    return TfjsGraph(nodes=nodes, weights=weights, meta=meta)
