"""Latency-budget threshold sweep (``python -m sparse_pose_ros.benchmarks.budget sweep``):
accuracy, density and interleaved batch-1 latency of the estimator at every mask threshold, and
the controller bounds derived from them (:func:`recommend_bounds`). See ``benchmarks.budget``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..control.latency_budget import BudgetConfig
from ..provenance import load_average
from .budget_common import (
    LOG,
    REFERENCE_THRESHOLD,
    HeldOutFrame,
    latency_stats,
    load_frames,
    make_backend,
    open_heldout,
    result_header,
    threshold_estimator,
    timed_estimate,
)

#: Bounds rule (see :func:`recommend_bounds`): MPJPE may grow at most this much over the
#: training threshold before the upper bound...
MAX_MPJPE_INCREASE = 0.10
#: ...and going below the lower bound must not improve MPJPE by more than this.
MIN_MPJPE_GAIN = 0.01


def time_thresholds(
    estimator: Any, frames: Sequence[HeldOutFrame], thresholds: Sequence[float], warmup: int
) -> dict[float, dict[str, Any]]:
    """Batch-1 latency and density per threshold, interleaved over the same frames."""
    backend = estimator.backend
    for t in thresholds:
        backend.set_mask_threshold(t)
        for f in frames[:warmup]:
            timed_estimate(estimator, f)
    times: dict[float, list[float]] = {t: [] for t in thresholds}
    dens: dict[float, list[float]] = {t: [] for t in thresholds}
    paths: dict[float, list[str]] = {t: [] for t in thresholds}
    n = len(thresholds)
    for i, f in enumerate(frames):
        order = [thresholds[(i + k) % n] for k in range(n)]
        for t in order:
            backend.set_mask_threshold(t)
            ms, res = timed_estimate(estimator, f)
            times[t].append(ms)
            dens[t].append(res.density)
            # sparse-cpu runs each frame sparse or (masked) dense, whichever is faster
            path = getattr(backend, "last_path", None)
            if path is not None:
                paths[t].append(str(path))
    out: dict[float, dict[str, Any]] = {}
    for t in thresholds:
        out[t] = {**latency_stats(times[t]), "density_mean": float(np.mean(dens[t]))}
        if paths[t]:
            out[t]["frames_per_path"] = {p: paths[t].count(p) for p in sorted(set(paths[t]))}
    return out


def accuracy_at_thresholds(
    checkpoint: str, data: str | Path, indices: Sequence[int], thresholds: Sequence[float],
    batch_size: int,
) -> tuple[dict[float, dict[str, Any]], dict[float, np.ndarray]]:
    """MPJPE, PA-MPJPE, PCK and density per threshold via ``training.evaluation``.

    Also returns each frame's MPJPE per threshold (mm, (N,)), for paired comparisons between
    thresholds: the joints ``evaluate_model`` predicts are captured with a forward hook and
    turned into millimetres with the same functions (``lift_to_camera``, ``joint_errors_3d``),
    so no second forward pass and no second protocol.
    """
    import torch
    from torch.utils.data import DataLoader, Subset

    from ..data.shards import ShardDataset
    from ..model.checkpoint import load_checkpoint
    from ..training.batches import Collator
    from ..training.evaluation import evaluate_model, lift_to_camera
    from ..training.metrics import joint_errors_3d
    from ..training.transforms import Pipeline

    net, _ = load_checkpoint(checkpoint)
    cfg = net.cfg
    dataset = Subset(ShardDataset(Path(data), transform=Pipeline(cfg.input_size, None)),
                     list(indices))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False,
                        collate_fn=Collator(cfg.input_size, cfg.depth_range_mm, cfg.input_mean,
                                            cfg.input_std))
    batches = list(loader)  # decoded and collated once, evaluated at every threshold
    captured: list[torch.Tensor] = []
    hook = net.register_forward_hook(
        lambda _m, _i, output: captured.append(output.joints.detach().float()))
    out: dict[float, dict[str, Any]] = {}
    per_frame: dict[float, np.ndarray] = {}
    gated = bool(net.gated_blocks())
    try:
        for t in thresholds:
            if gated:
                net.set_mask_threshold(t)
            captured.clear()
            m = evaluate_model(net, batches, torch.device("cpu"))
            errors = []
            for batch, joints in zip(batches, captured, strict=True):
                pred = lift_to_camera(joints, batch.intrinsics, batch.joints_cam_mm[:, 0, 2],
                                      cfg.input_size, cfg.depth_range_mm)
                errors.append(joint_errors_3d(pred.numpy(), batch.joints_cam_mm.numpy()))
            per_frame[t] = np.concatenate(errors).mean(axis=1)
            out[t] = {
                "mpjpe_mm": m["mpjpe_mm"],
                "pa_mpjpe_mm": m["pa_mpjpe_mm"],
                "pck@0.1": m["pck@0.1"],
                "backbone_flops_fraction": m["backbone_flops_fraction"],
                "gated_density": m["gated_density"],
                "first_gated_recall": m.get("first_gated_recall"),
                "samples": m["samples"],
            }
            LOG.info("threshold %.2f: MPJPE %.1f mm, PA-MPJPE %.1f mm, backbone FLOPs %.3f", t,
                     m["mpjpe_mm"], m["pa_mpjpe_mm"], m["backbone_flops_fraction"])
    finally:
        hook.remove()
    return out, per_frame


def paired_delta(errors: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Mean per-frame MPJPE difference to the reference and its 95 % half-width (normal)."""
    d = np.asarray(errors, np.float64) - np.asarray(reference, np.float64)
    if d.ndim != 1 or d.size == 0:
        raise ValueError("need two equal-length, non-empty per-frame error vectors")
    half = 1.96 * float(d.std(ddof=1)) / np.sqrt(d.size) if d.size > 1 else 0.0
    return float(d.mean()), half


def recommend_bounds(
    thresholds: Sequence[float],
    per_frame_mpjpe: Sequence[np.ndarray],
    density: Sequence[float],
    reference: float = REFERENCE_THRESHOLD,
    max_increase: float = MAX_MPJPE_INCREASE,
    min_gain: float = MIN_MPJPE_GAIN,
) -> dict[str, Any]:
    """Controller bounds from a sweep (thresholds, each frame's MPJPE, mean density).

    Rule, with paired per-frame differences to the reference (the training boundary) and their
    95 % interval, so sampling noise of a 200-frame sweep cannot move a bound:

    * ``max_threshold``: walking up from the reference, the highest threshold up to which MPJPE
      is, with 95 % confidence, less than ``max_increase`` (relative) above the reference's, and
      not above the first threshold at which density reaches its floor (past it nothing more is
      saved, only risked);
    * ``min_threshold``: the lowest threshold below the reference whose MPJPE is, with 95 %
      confidence, better than the reference's by more than ``min_gain``; the reference itself
      when none is (then spending more compute than at the training boundary buys nothing).

    The reference is always inside [min, max], as ``BudgetConfig`` requires of its initial
    threshold.
    """
    n = len(thresholds)
    if n == 0 or len(per_frame_mpjpe) != n or len(density) != n:
        raise ValueError("need per-frame MPJPE and a density for every threshold")
    order = sorted(range(n), key=lambda i: float(thresholds[i]))
    ts = [float(thresholds[i]) for i in order]
    errs = [np.asarray(per_frame_mpjpe[i], np.float64) for i in order]
    dens = [float(density[i]) for i in order]
    matches = [i for i, t in enumerate(ts) if abs(t - reference) < 1e-9]
    if not matches:
        raise ValueError(f"the sweep must include the reference threshold {reference}")
    r = matches[0]
    ref_mpjpe = float(errs[r].mean())
    deltas = [paired_delta(e, errs[r]) for e in errs]
    floor = min(dens)
    saturated = next(i for i, d in enumerate(dens) if d <= floor + 1e-3)
    hi = r
    while (hi + 1 < n and hi + 1 <= saturated
           and deltas[hi + 1][0] + deltas[hi + 1][1] <= max_increase * ref_mpjpe):
        hi += 1
    better = [i for i in range(r) if deltas[i][0] + deltas[i][1] < -min_gain * ref_mpjpe]
    lo = min(better) if better else r
    return {
        "min_threshold": ts[lo],
        "max_threshold": ts[hi],
        "reference_threshold": reference,
        "reference_mpjpe_mm": ref_mpjpe,
        "mpjpe_limit_mm": ref_mpjpe * (1.0 + max_increase),
        "density_floor_from_threshold": ts[saturated],
        "paired_delta_mm": {f"{t:g}": {"mean": d, "ci95_half_width": h}
                            for t, (d, h) in zip(ts, deltas, strict=True)},
        "rule": (
            f"paired per-frame MPJPE differences to threshold {reference:g} with 95 % intervals; "
            f"max = highest threshold, walking up from {reference:g}, whose MPJPE increase is "
            f"< {max_increase:.0%} with 95 % confidence and that is not past the density floor; "
            f"min = lowest threshold below {reference:g} that is better by > {min_gain:.0%} with "
            f"95 % confidence, else {reference:g}"
        ),
    }


def run_sweep(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    thresholds = sorted(set(args.thresholds))
    dataset = open_heldout(args.data)
    n = min(args.frames, len(dataset))
    # evenly spread over the split (shards are rendered in index order, families mixed)
    indices = np.linspace(0, len(dataset) - 1, n).round().astype(int).tolist()
    load_before = load_average()
    accuracy, per_frame = accuracy_at_thresholds(args.checkpoint, args.data, indices,
                                                 thresholds, args.batch_size)
    frames = load_frames(dataset, indices)
    backend = make_backend(args, args.checkpoint)
    try:
        estimator = threshold_estimator(backend)
        latency = time_thresholds(estimator, frames, thresholds, args.warmup)
        info = backend.info
    finally:
        backend.close()
    reference: dict[str, Any] | None = None
    if args.reference_graph and args.backend == "onnxruntime":
        ref_args = argparse.Namespace(**{**vars(args), "graph": args.reference_graph})
        ref_backend = make_backend(ref_args, args.checkpoint)
        try:
            ends = [thresholds[0], thresholds[-1]]
            ref = time_thresholds(threshold_estimator(ref_backend), frames, ends, args.warmup)
        finally:
            ref_backend.close()
        reference = {"graph": args.reference_graph, "latency": {f"{t:g}": v
                                                                for t, v in ref.items()}}
    load_after = load_average()
    rows = [{"threshold": t, **accuracy[t], "latency": latency[t],
             "per_frame_mpjpe_mm": [round(float(v), 2) for v in per_frame[t]]}
            for t in thresholds]
    defaults = BudgetConfig()
    result: dict[str, Any] = {
        **result_header("budget_sweep", args, info, load_before, load_after),
        "data": {"root": str(args.data), "frames": n, "indices": "evenly spaced over the split"},
        "protocol": {
            "accuracy": "training.evaluation.evaluate_model (torch masked-dense network at the "
            "threshold; root-relative MPJPE / PA-MPJPE in mm, GT root depth)",
            "latency": "batch 1, PoseEstimator.estimate on the decoded RGB frame with its K "
            "(letterbox + normalise + backend + lift + mask image), interleaved over thresholds, "
            f"{args.warmup} warm-up frames per threshold",
            "density": "executed fraction of backbone MACs (backend result.density, mean over "
            "the timed frames; backbone_flops_fraction is the same quantity from evaluate_model)",
        },
        "rows": rows,
    }
    if reference is not None:
        result["reference_masked_dense"] = reference
    if REFERENCE_THRESHOLD in thresholds:
        rec = recommend_bounds(thresholds, [per_frame[t] for t in thresholds],
                               [accuracy[t]["backbone_flops_fraction"] for t in thresholds])
        result["bounds"] = {
            **rec,
            "controller_defaults": {"min_threshold": defaults.min_threshold,
                                    "max_threshold": defaults.max_threshold},
            "defaults_agree": bool(
                abs(rec["min_threshold"] - defaults.min_threshold) < 1e-9
                and abs(rec["max_threshold"] - defaults.max_threshold) < 1e-9
            ),
        }
    return result


