"""Evaluate a checkpoint on a held-out split and write ``results/accuracy_<model>.json``.

    python -m sparse_pose_ros.training.evaluate --checkpoint models/pose_sparse.safetensors \
        --data data_cache/synth_v1 [--split test] [--max-frames 0] [--out PATH]

Reports root-relative MPJPE (protocol 1) and PA-MPJPE (protocol 2) in mm, 2D PCK@0.1 of the
person box, per-joint errors, backbone FLOPs fraction and per-block densities, mask recall and
precision per gated block against the person silhouette, and the density on frames where the
person fills less than 25 % of the image. See ``training.evaluation`` for the 3D protocol.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from ..data.shards import ShardDataset
from ..model.checkpoint import CheckpointError, load_checkpoint
from ..pipeline.roi import DEFAULT_SIDE_FACTOR
from ..provenance import cpu_model
from .batches import Collator
from .data_setup import open_split
from .evaluation import SMALL_PERSON_FRACTION, evaluate_model
from .metrics import mean_pose_baseline
from .transforms import PersonCrop, Pipeline

LOG = logging.getLogger("sparse_pose_ros.evaluate")


def json_safe(value: Any) -> Any:
    """NaN/inf -> None recursively (JSON has no NaN; e.g. mask recall without silhouettes)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _mean_pose_baseline(args: argparse.Namespace, dataset: Any) -> dict[str, Any] | None:
    """Score of the constant mean training pose on the same frames (synthetic data only)."""
    train_dir = Path(args.data) / args.baseline_split
    if args.dataset != "synthetic" or not args.baseline_split or not train_dir.is_dir():
        return None
    train = ShardDataset(train_dir).labels["joints_3d"]
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    test = base.labels["joints_3d"][: len(dataset)]
    return {"train_split": args.baseline_split, **mean_pose_baseline(train, test)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    net, info = load_checkpoint(args.checkpoint, map_location=device)
    if args.mask_threshold is not None:
        net.set_mask_threshold(args.mask_threshold)
    if args.head_gating != "checkpoint":
        net.set_head_gating(args.head_gating == "on")
    cfg = net.cfg

    def loader_for(transform: Any) -> tuple[Any, DataLoader]:
        dataset = open_split(args.dataset, args.data, args.split, transform)
        if args.max_frames and len(dataset) > args.max_frames:
            dataset = Subset(dataset, range(args.max_frames))
        loader = DataLoader(
            dataset,
            batch_size=args.batch_size,
            shuffle=False,
            num_workers=args.workers,
            collate_fn=Collator(cfg.input_size, cfg.depth_range_mm, cfg.input_mean, cfg.input_std),
        )
        return dataset, loader

    dataset, loader = loader_for(Pipeline(cfg.input_size, None))
    first_pass: dict[int, np.ndarray] = {}
    metrics = evaluate_model(net, loader, device, pixels_by_index=first_pass)
    crops: dict[str, Any] = {}
    if args.crops:
        # Two-pass (what pose_node does on video with track_person): a full-frame pass gives
        # each frame's box, a second pass reads the crop around it. GT box: the usual
        # Human3.6M protocol, the box from the ground-truth joints.
        raw = open_split(args.dataset, args.data, args.split, None)
        to_frame = int(raw[0]["image"].shape[-1]) / cfg.input_size
        first = {i: (px + 0.5) * to_frame - 0.5 for i, px in first_pass.items()}
        crops["two_pass"] = evaluate_model(
            net, loader_for(Pipeline(cfg.input_size, PersonCrop(DEFAULT_SIDE_FACTOR, first)))[1],
            device,
        )
        crops["gt_box"] = evaluate_model(
            net, loader_for(Pipeline(cfg.input_size, PersonCrop(DEFAULT_SIDE_FACTOR)))[1], device
        )
    baseline = _mean_pose_baseline(args, dataset)
    model_name = Path(args.checkpoint).name.removesuffix(".safetensors")
    meta = info["meta"]
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "model": model_name,
        "checkpoint": str(args.checkpoint),
        "model_hash": info["model_hash"],
        "network": info["config"],
        "training": {
            "command": meta.get("command"),
            "epochs": meta.get("epochs"),
            "train_seconds": meta.get("train_seconds"),
            "data": meta.get("data"),
        },
        "data": {
            "dataset": args.dataset,
            "root": str(args.data),
            "split": args.split,
            "frames": len(dataset),
        },
        "protocol": {
            "mpjpe": "root-relative, joints lifted with the ground-truth root depth and the "
            "input intrinsics (training.evaluation)",
            "pa_mpjpe": "per-sample similarity Procrustes, no reflections",
            "pck": "2D, threshold 0.1 x larger side of the ground-truth joint box, joints inside "
            "the image",
            "mask_recall": "share of person-silhouette pixels inside the block's executed "
            "(hard) mask, upsampled to the input resolution",
            "small_person": f"frames whose person silhouette fills < {SMALL_PERSON_FRACTION:.0%} "
            "of the image",
            "mask_threshold": args.mask_threshold if args.mask_threshold is not None else 0.5,
            "head_gating": cfg.head_gating,
            "two_pass": "metrics_two_pass: a full-frame pass, then the network on a square crop "
            f"of {DEFAULT_SIDE_FACTOR} x the predicted joints' box (pose_node's track_person); "
            "metrics_gt_box: the same crop around the ground-truth joints (the usual Human3.6M "
            "protocol); 'metrics' is the full letterboxed frame",
        },
        "metrics": metrics,
        "metrics_two_pass": crops.get("two_pass"),
        "metrics_gt_box": crops.get("gt_box"),
        "baseline_mean_training_pose": baseline,
        "command": " ".join(
            shlex.quote(a)
            for a in ["python", "-m", "sparse_pose_ros.training.evaluate", *args.argv]
        ),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "load_average": list(load) if load else None,
            "device": str(device),
            "torch": torch.__version__,
        },
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m sparse_pose_ros.training.evaluate",
        description="Accuracy, FLOPs and mask metrics of a checkpoint on a held-out split.",
    )
    p.add_argument("--checkpoint", required=True, help="a .safetensors checkpoint")
    p.add_argument("--data", default="data_cache/synth_v1", help="dataset root")
    p.add_argument("--split", default="test", help="split (sub-folder of --data for synthetic)")
    p.add_argument("--dataset", choices=("synthetic", "h36m"), default="synthetic")
    p.add_argument("--max-frames", type=int, default=0, help="evaluate only the first N frames")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (0 = default)")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--mask-threshold",
        type=float,
        default=None,
        help="mask probability threshold (default 0.5, the training boundary)",
    )
    p.add_argument(
        "--head-gating",
        choices=("checkpoint", "on", "off"),
        default="checkpoint",
        help="read the heads only inside the last mask's region (model/heads.py); default: as "
        "the checkpoint says",
    )
    p.add_argument(
        "--baseline-split",
        default="train",
        help="split whose mean pose is scored as a constant-answer baseline ('' = skip)",
    )
    p.add_argument(
        "--crops",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also score the two-pass (tracking crop) and ground-truth-box protocols",
    )
    p.add_argument("--out", help="output JSON (default results/accuracy_<model>.json)")
    args = p.parse_args(argv)
    if args.max_frames < 0 or args.batch_size <= 0 or args.workers < 0 or args.threads < 0:
        p.error("--max-frames, --workers, --threads must be >= 0 and --batch-size > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        report = run(args)
    except (CheckpointError, ValueError) as exc:
        LOG.error("%s", exc)
        return 2
    out = Path(args.out or f"results/accuracy_{report['model']}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(json_safe(report), indent=2, allow_nan=False) + "\n")
    m = report["metrics"]
    LOG.info(
        "%s: MPJPE %.1f mm, PA-MPJPE %.1f mm, PCK@0.1 %.3f, backbone FLOPs %.3f on %d frames -> %s",
        report["model"],
        m["mpjpe_mm"],
        m["pa_mpjpe_mm"],
        m["pck@0.1"],
        m["backbone_flops_fraction"],
        m["samples"],
        out,
    )
    for name in ("two_pass", "gt_box"):
        c = report.get(f"metrics_{name}")
        if c:
            LOG.info("  %s: MPJPE %.1f mm, PA-MPJPE %.1f mm, PCK@0.1 %.3f, backbone FLOPs %.3f",
                     name, c["mpjpe_mm"], c["pa_mpjpe_mm"], c["pck@0.1"],
                     c["backbone_flops_fraction"])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
