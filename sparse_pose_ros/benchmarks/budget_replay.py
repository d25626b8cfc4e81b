"""Latency-budget closed-loop replay (``python -m sparse_pose_ros.benchmarks.budget replay``):
the node's budget loop over a clip whose scene changes, against a budget between the clip's
latency at the two threshold bounds, next to the same clip at a fixed threshold. See
``benchmarks.budget``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..control.latency_budget import BudgetConfig, LatencyBudgetController, control_step
from ..pipeline.recheck import RECHECK_RATIO
from ..provenance import load_average
from .budget_common import (
    LOG,
    REFERENCE_THRESHOLD,
    HeldOutFrame,
    load_frames,
    make_backend,
    open_heldout,
    result_header,
    runtime_options,
    threshold_estimator,
    timed_estimate,
)

SEGMENTS = ("small", "large", "medium")
#: Real clips (label-cache sources) played one after the other with ``--real``: a held-out
#: athlete filling more of the frame, a street of small pedestrians, the held-out Pose2Sim trial.
REAL_SCENES = ("sports2d_demo", "opencv_vtest", "pose2sim_singleperson")


def select_clip(mask_fraction: np.ndarray, per_segment: int) -> dict[str, list[int]]:
    """Frame indices of the clip's scenes: smallest, largest and median-sized persons.

    Within a segment the frames keep their split order (different poses and backgrounds), so
    only the person size changes systematically at the two scene cuts.
    """
    n = len(mask_fraction)
    if per_segment < 1 or 3 * per_segment > n:
        raise ValueError(f"need 1 <= segment frames <= {n // 3} for {n} frames, got {per_segment}")
    order = np.argsort(mask_fraction, kind="stable")
    mid = max(per_segment, min(n - 2 * per_segment, n // 2 - per_segment // 2))
    picks = {"small": order[:per_segment], "large": order[n - per_segment:],
             "medium": order[mid: mid + per_segment]}
    return {k: sorted(int(i) for i in v) for k, v in picks.items()}


def real_clip(labels: str, sources: Sequence[str], per_source: int, contiguous: bool = True
              ) -> tuple[list[str], list[HeldOutFrame], list[tuple[int, int]]]:  # fmt: skip
    """A clip of real video: ``per_source`` frames of each label-cache source, in video order,
    the sources one after the other (scene changes where the person's size and the image
    change), decoded up front. Returns (scene names, frames, each scene's [start, stop)).

    ``contiguous`` (default): each source's first ``per_source`` labelled frames, consecutive
    at the label cache's step (2 for vtest and Sports2D, 1 for Pose2Sim: what a camera node
    sees); else evenly spread over the source, which skips 4–8 video frames between frames
    (vtest: 0.8 s at its 10 Hz) and loses the tracked person no node would lose."""
    from pathlib import Path

    from ..evaluation.real_heldout import NoLabels
    from .real_frames import load_real

    clip: list[HeldOutFrame] = []
    bounds: list[tuple[int, int]] = []
    scenes: list[str] = []
    for sid in sources:
        try:
            fs = load_real(Path(labels), [sid], per_source, contiguous=contiguous)
        except NoLabels as exc:  # no cache, or not this source: say how to make it
            raise ValueError(str(exc)) from exc
        if not fs.frames:
            raise ValueError(f"label source {sid!r} has no frames in {labels}")
        start = len(clip)
        for f in fs.frames:
            i = f.intrinsics
            k = None if i is None else np.array([[i.fx, 0.0, i.cx], [0.0, i.fy, i.cy],
                                                 [0.0, 0.0, 1.0]])  # fmt: skip
            clip.append(HeldOutFrame(len(clip), f.rgb, k, float(f.fill)))
        bounds.append((start, len(clip)))
        scenes.append(sid)
    return scenes, clip, bounds


def choose_target(calibration: dict[str, dict[str, float]], lo_t: float, hi_t: float) -> dict:
    """Budget between the latency at the upper and at the lower threshold bound.

    Feasible for every scene when it lies in [max over scenes of latency(hi_t), min over scenes
    of latency(lo_t)]; then the middle of that interval. Otherwise (scenes differ more than the
    threshold range can compensate) the middle of the clip-wide medians, and the JSON says so.
    """
    at_hi = [c[f"{hi_t:g}"] for c in calibration.values()]
    at_lo = [c[f"{lo_t:g}"] for c in calibration.values()]
    lower, upper = max(at_hi), min(at_lo)
    if lower < upper:
        return {"target_ms": 0.5 * (lower + upper), "feasible_for_every_scene": True,
                "feasible_interval_ms": [lower, upper]}
    return {"target_ms": 0.5 * (float(np.median(at_hi)) + float(np.median(at_lo))),
            "feasible_for_every_scene": False, "feasible_interval_ms": [lower, upper]}


def _paced(rate_hz: float, next_due: float) -> float:
    """Sleep until ``next_due`` (camera pacing); returns the next frame's due time."""
    if rate_hz <= 0:
        return time.perf_counter()
    now = time.perf_counter()
    if next_due > now:
        time.sleep(next_due - now)
    return max(next_due, now) + 1.0 / rate_hz


@dataclass(frozen=True)
class Knob:
    """What the budget loop moves, as the node does for the model it runs.

    Attributes:
        name: "threshold" (a gated model's mask threshold), "strip_floor" (the floor under
            a dense model's strip width, ``pipeline.strip_budget``) or "whole_size" (the
            whole frame's input side, ``pipeline.whole_budget``).
        apply: sets the controller's value (threshold, or level) on the estimator.
        counts: whether a frame's latency (given with the budget) may move the knob (the node
            feeds a controller only those: a whole frame reads no strip, a tracked frame no
            whole-frame size, and a tracked frame over budget whose width the person set says
            nothing about the floor, ``pipeline.strip_budget.floor_decides``).
        report: the value a trace row records for the controller's value (the floor or the
            size for a level).
        default: the controller's value on the node's path without a budget (the fixed run).
    """

    name: str
    apply: Callable[[float], None]
    counts: Callable[[Any, float, float], bool]
    report: Callable[[float], float]
    default: float = REFERENCE_THRESHOLD


def threshold_knob(estimator: Any) -> Knob:
    """The mask threshold on every session of ``estimator``; every frame counts (the threshold
    estimator runs the masks' own decision)."""
    def apply(t: float) -> None:
        for b in estimator.backends:
            b.set_mask_threshold(t)

    return Knob("threshold", apply, lambda res, ms, target: True, lambda t: t)


def strip_knob(estimator: Any) -> Knob:
    """The floor under a dense model's strip width; tracked frames count."""
    from ..pipeline.strip_budget import (
        LEVEL_BOUNDS,
        apply_strip_level,
        floor_decides,
        floor_for_level,
    )

    return Knob("strip_floor", functools.partial(apply_strip_level, estimator),
                floor_decides, floor_for_level, LEVEL_BOUNDS[1])


def whole_knob(estimator: Any) -> Knob:
    """The whole frame's input side on a dense model (``estimator.whole_cap``); whole frames
    count."""
    from ..pipeline.strip_budget import LEVEL_BOUNDS
    from ..pipeline.whole_budget import apply_whole_level, size_for_level

    def size(level: float) -> float:
        return float(size_for_level(level, estimator.whole_sizes))

    return Knob("whole_size", functools.partial(apply_whole_level, estimator),
                lambda res, ms, target: res.roi is None, size, LEVEL_BOUNDS[0])


def fixed_config(value: float) -> BudgetConfig:
    """A controller that holds ``value`` (no budget)."""
    return BudgetConfig(initial_threshold=value, min_threshold=min(value, 0.5),
                        max_threshold=max(value, 0.5))


def run_loop(
    estimator: Any, frames: Sequence[HeldOutFrame], rate_hz: float,
    knobs: Sequence[tuple[Knob, BudgetConfig]],
) -> list[dict[str, float]]:
    """The node's per-frame loop: each knob with its own controller (a gated model: the
    threshold; the dense path: the strip floor on tracked frames, the whole frame's size on
    whole frames), a config with ``target_latency_ms == 0`` holding its value fixed; a frame
    feeds the controllers whose knob it ``counts`` for, and the trace's ``threshold`` and
    ``smoothed_ms`` are the first knob's. Tracking starts over, so every run sees the clip as
    the node would."""
    estimator.reset_tracking()
    loops = []
    for k, cfg in knobs:
        ctrl = LatencyBudgetController(cfg)
        k.apply(ctrl.threshold)
        loops.append([k, ctrl, ctrl.threshold])
    trace = []
    due = time.perf_counter()
    for f in frames:
        due = _paced(rate_hz, due)
        used = [loop[2] for loop in loops]
        ms, res = timed_estimate(estimator, f)
        for loop in loops:
            k, ctrl = loop[0], loop[1]
            # a frame read twice (``recheck_ratio``) moves no knob, as in the node
            if not res.rechecked and k.counts(res, ms, ctrl.config.target_latency_ms):
                loop[2] = control_step(ctrl, ms, loop[2], k.apply)
        first = loops[0][1]
        row = {"index": f.index, "latency_ms": ms, "threshold": used[0],
               "density": float(res.density),
               "smoothed_ms": first.smoothed_ms if first.smoothed_ms is not None else ms}
        if loops[0][0].name != "threshold":
            for (k, _, _), value in zip(loops, used, strict=True):
                row[k.name] = k.report(value)
            row["tracked"] = res.roi is not None
            row["input_height"] = float(res.input_hw[0]) if res.input_hw else float("nan")
            row["input_width"] = float(res.input_hw[1]) if res.input_hw else float("nan")
        trace.append(row)
    return trace


def strip_estimator(args: argparse.Namespace) -> Any:
    """The node's default path for a dense model: the whole frame at the model's size (and the
    smaller whole-frame sessions ``--whole-frame-sizes`` of the budget's whole-frame knob), the
    tracking crops at ``CROP_INPUT_SIZE`` and their strips ``CROP_INPUT_WIDTHS``, the person
    tracked from frame to frame — every session on ``args.backend`` as the node builds them."""
    from ..backends import create_backend
    from ..pipeline.estimator import (
        PoseEstimator,
        closed_on_failure,
        open_tracking_sessions,
        open_whole_sessions,
    )
    from ..pipeline.roi import CROP_INPUT_SIZE, CROP_INPUT_WIDTHS

    own = runtime_options(args, graph="portable")

    def open_at(size: int | None, width: int | None) -> Any:
        return create_backend(args.backend, args.checkpoint, device="cpu",
                              num_threads=args.threads, cache_dir=args.cache_dir or None,
                              input_size=size, input_width=width, **own)

    backend, crop, strips = open_tracking_sessions(open_at, None, CROP_INPUT_SIZE,
                                                   CROP_INPUT_WIDTHS)
    with closed_on_failure([b for b in (backend, crop, *strips) if b is not None]):
        if backend.info.gated:  # its crops stay square: no strip was opened
            raise ValueError(f"{args.checkpoint} is a gated model: its budget knob is the mask "
                             "threshold (--knob threshold); strips are read by dense models")
        wholes = open_whole_sessions(open_at, backend, crop,
                                     getattr(args, "whole_frame_sizes", ()))
    return PoseEstimator(backend, track_person=True, crop_backend=crop, strip_backends=strips,
                         whole_backends=wholes, confidence_threshold=args.confidence_threshold,
                         recheck_ratio=getattr(args, "recheck_ratio", RECHECK_RATIO))


def dense_knobs(estimator: Any) -> list[Knob]:
    """The dense path's knobs: the strip floor, and the whole frame's size when the estimator
    has smaller whole-frame sessions."""
    return [strip_knob(estimator), *([whole_knob(estimator)] if estimator.whole_backends else [])]


def calibrate(
    estimator: Any, clip: Sequence[HeldOutFrame], bounds: Sequence[tuple[int, int]],
    thresholds: Sequence[float], args: argparse.Namespace,
    scenes: Sequence[str], knobs: Sequence[Knob],
) -> dict[str, dict[str, float]]:
    """Median latency and density of each scene at each fixed threshold (every knob at that
    level), paced like the loop.

    Pacing matters: between camera frames ORT's pool threads sleep (no spin-wait) and caches
    cool, so a paced frame is slower than a back-to-back one; a budget chosen from back-to-back
    timings would sit below everything the loop can reach.
    """
    out: dict[str, dict[str, float]] = {}
    for name, (start, stop) in zip(scenes, bounds, strict=True):
        sample = list(clip[start:stop][: args.calibration_frames])
        out[name] = {}
        for t in thresholds:
            held = [(k, fixed_config(t)) for k in knobs]
            run_loop(estimator, sample[: args.warmup], args.rate_hz, held)
            trace = run_loop(estimator, sample, args.rate_hz, held)
            out[name][f"{t:g}"] = float(np.median([r["latency_ms"] for r in trace]))
            out[name][f"density_{t:g}"] = float(np.mean([r["density"] for r in trace]))
    return out


def _median_or_none(values: Sequence[float]) -> float | None:
    return float(np.median(values)) if len(values) else None


def settled_share(
    trace: Sequence[dict[str, float]], bounds: Sequence[tuple[int, int]], target: float,
    tolerance: float, settle: int, key: str = "latency_ms", below_ok: bool = False,
) -> dict[str, Any]:
    """Share of frames within ±tolerance of ``target``, skipping ``settle`` frames per scene.
    ``below_ok``: count every frame at most ``tolerance`` over the target instead (what a user
    holding a deadline asks: a scene the masks cannot slow to the budget is not a miss)."""
    inside = total = 0
    per: list[float | None] = []
    for start, stop in bounds:
        vals = [trace[i][key] for i in range(start + settle, stop)]
        ok = sum((v <= (1 + tolerance) * target) if below_ok
                 else abs(v - target) <= tolerance * target for v in vals)
        inside += ok
        total += len(vals)
        per.append(ok / len(vals) if vals else None)
    return {"fraction": inside / total if total else None, "frames": total, "per_segment": per}


def setting_jitter_share(
    trace: Sequence[dict[str, float]], bounds: Sequence[tuple[int, int]], tolerance: float,
    settle: int,
) -> dict[str, Any]:
    """Share of settled frames within ±tolerance of the median latency of their own setting
    (whole or tracked, and the input the network read): the frame-to-frame jitter alone, what
    a perfect controller would reach if every setting's median sat on the budget — the ceiling
    of the ±tolerance figure on this machine."""
    groups: dict[tuple[Any, ...], list[float]] = {}
    for start, stop in bounds:
        for r in trace[start + settle: stop]:
            key = (r["tracked"], r["input_height"], r["input_width"])
            groups.setdefault(key, []).append(r["latency_ms"])
    inside = total = 0
    for values in groups.values():
        v = np.asarray(values)
        med = float(np.median(v))
        inside += int(np.sum(np.abs(v - med) <= tolerance * med))
        total += len(v)
    return {"fraction": inside / total if total else None, "frames": total,
            "settings": len(groups)}


def run_replay(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from ..pipeline.preprocess import limit_opencv_threads

    torch.set_num_threads(args.threads)
    limit_opencv_threads()  # as the node does
    strips = getattr(args, "knob", "threshold") == "strip-floor"
    if strips:
        from ..pipeline.strip_budget import LEVEL_BOUNDS, strip_budget_config
        from ..pipeline.whole_budget import whole_budget_config

        lo_t, hi_t = args.bounds or LEVEL_BOUNDS
        reference = LEVEL_BOUNDS[1]  # no floor: the node's default path
    else:
        defaults = BudgetConfig()
        lo_t, hi_t = args.bounds or (defaults.min_threshold, defaults.max_threshold)
        reference = REFERENCE_THRESHOLD
    start_t = min(max(reference, lo_t), hi_t)
    if getattr(args, "real", None):
        scenes, clip, bounds = real_clip(args.real, args.real_sources, args.segment_frames,
                                         getattr(args, "frames_from", "contiguous") == "contiguous")
    else:
        scenes = SEGMENTS
        dataset = open_heldout(args.data)
        picks = select_clip(dataset.labels["mask_fraction"], args.segment_frames)
        clip, bounds = [], []
        for name in SEGMENTS:
            start = len(clip)
            clip += load_frames(dataset, picks[name])
            bounds.append((start, len(clip)))
    load_before = load_average()
    estimator = (strip_estimator(args) if strips
                 else threshold_estimator(make_backend(args, args.checkpoint)))
    knobs = dense_knobs(estimator) if strips else [threshold_knob(estimator)]
    try:
        calibration = calibrate(estimator, clip, bounds, (lo_t, hi_t), args, scenes, knobs)
        choice = choose_target(calibration, lo_t, hi_t)
        target = float(args.target_ms) if args.target_ms else choice["target_ms"]
        LOG.info("budget %.2f ms (calibration %s)", target, calibration)
        # the node's config per knob: the threshold loop's defaults, or the dense path's
        # knobs' own (pipeline.strip_budget / whole_budget: their level bounds and starts);
        # the first knob's with this run's start and bounds
        node_configs = ({"strip_floor": strip_budget_config(target),
                         "whole_size": whole_budget_config(target)} if strips
                        else {"threshold": BudgetConfig(target_latency_ms=target)})
        config = dataclasses.replace(node_configs[knobs[0].name], initial_threshold=start_t,
                                     min_threshold=lo_t, max_threshold=hi_t)
        trace = run_loop(estimator, clip, args.rate_hz,
                         [(k, config if i == 0 else node_configs[k.name])
                          for i, k in enumerate(knobs)])
        fixed = (run_loop(estimator, clip, args.rate_hz,
                          [(k, fixed_config(reference if i == 0 else k.default))
                           for i, k in enumerate(knobs)])
                 if args.baseline else None)
        whole_sizes = list(estimator.whole_sizes)
        info = estimator.backend.info
        crop_size = estimator.crop_backend.info.input_size
    finally:
        for b in estimator.backends:
            b.close()
    load_after = load_average()
    tol = config.tolerance
    summary: dict[str, Any] = {
        "within_tolerance_after_settling": settled_share(trace, bounds, target, tol,
                                                         args.settle_frames),
        "smoothed_within_tolerance_after_settling": settled_share(
            trace, bounds, target, tol, args.settle_frames, key="smoothed_ms"),
        "at_most_tolerance_over_after_settling": settled_share(
            trace, bounds, target, tol, args.settle_frames, below_ok=True),
        "segments": [],
    }
    if strips:  # the jitter ceiling: settings are discrete (strip widths, whole-frame sides)
        summary["same_setting_within_tolerance_of_its_median"] = setting_jitter_share(
            trace, bounds, tol, args.settle_frames)
    if fixed is not None:
        summary["fixed_threshold_within_tolerance"] = settled_share(
            fixed, bounds, target, tol, args.settle_frames)
        summary["fixed_threshold_at_most_tolerance_over"] = settled_share(
            fixed, bounds, target, tol, args.settle_frames, below_ok=True)
    for name, (start, stop) in zip(scenes, bounds, strict=True):
        tail = trace[start + args.settle_frames: stop] or trace[start:stop]
        seg = {
            "scene": name,
            "frames": [start, stop],
            "mask_fraction_mean": float(np.nanmean([f.mask_fraction for f in clip[start:stop]]))
            if any(np.isfinite(f.mask_fraction) for f in clip[start:stop]) else None,
            "latency_median_ms": float(np.median([r["latency_ms"] for r in tail])),
            "threshold_mean": float(np.mean([r["threshold"] for r in tail])),
            **({"strip_floor_mean": float(np.mean([r["strip_floor"] for r in tail])),
                "strip_frames": int(sum(r["tracked"] and 0 < r["input_width"] < crop_size
                                        for r in tail)),
                "whole_frames": int(sum(not r["tracked"] for r in tail)),
                "whole_latency_median_ms": _median_or_none(
                    [r["latency_ms"] for r in tail if not r["tracked"]]),
                "tracked_latency_median_ms": _median_or_none(
                    [r["latency_ms"] for r in tail if r["tracked"]])}
               if strips else {}),
            "density_mean": float(np.mean([r["density"] for r in tail])),
            "threshold_at_bound": bool(
                all(abs(r["threshold"] - hi_t) < 1e-6 for r in tail[-5:])
                or all(abs(r["threshold"] - lo_t) < 1e-6 for r in tail[-5:])),
        }
        if fixed is not None:
            ftail = fixed[start + args.settle_frames: stop] or fixed[start:stop]
            seg["fixed_latency_median_ms"] = float(np.median([r["latency_ms"] for r in ftail]))
            seg["fixed_density_mean"] = float(np.mean([r["density"] for r in ftail]))
        summary["segments"].append(seg)
    return {
        **result_header("budget_replay", args, info, load_before, load_after),
        "crop_input_size": crop_size,
        "recheck_ratio": getattr(estimator, "recheck_ratio", None),
        "clip": {
            "data": str(args.real or args.data),
            "scenes": list(scenes),
            "frames_per_scene": [stop - start for start, stop in bounds],
            "selection": ("real video frames of each label-cache source, "
                           + ("its first frames, consecutive at the cache's label step"
                              if getattr(args, "frames_from", "contiguous") == "contiguous"
                              else "evenly spread over the source and in video order")
                           + ", the sources one after the other; "
                          "mask_fraction = BlazePose's person mask share of the image (NaN: "
                          "none); the node's nominal field of view where a source has no "
                          "calibration") if args.real else
                         ("held-out frames with the smallest, largest and median person mask "
                          "fraction, each scene in split order"),
            "rate_hz": args.rate_hz,
        },
        "knob": ("strip_floor: the controller's level in [lo, hi] mapped onto a floor under "
                 "the strip width (a share of the crop's side, 1 at lo, 0 at hi; "
                 "pipeline.strip_budget), the node's default path (dense, tracking crops at "
                 "CROP_INPUT_SIZE read as strips CROP_INPUT_WIDTHS, strip_margin STRIP_MARGIN); "
                 "only tracked frames feed the controller; the fixed run has no floor (the "
                 "node's default)" + (
                     "; whole_size: a second controller, fed by whole frames only, its level "
                     f"mapped onto the whole frame's input side {whole_sizes} "
                     "(pipeline.whole_budget; the model's own at lo), which the fixed run "
                     "holds at the model's own" if len(whole_sizes) > 1 else "")
                 if strips else "mask threshold"),
        "whole_frame_sizes": whole_sizes if strips else None,
        "controller": {**config.__dict__, "bounds_from": "--bounds" if args.bounds
                       else ("pipeline.strip_budget.LEVEL_BOUNDS" if strips
                             else "BudgetConfig defaults")},
        "calibration_median_ms": calibration,
        "calibration_frames_per_scene": args.calibration_frames,
        "budget": {**choice, "target_ms": target, "chosen_by": "--target-ms" if args.target_ms
                   else "choose_target (middle of the feasible interval)"},
        "latency_definition": "PoseEstimator.estimate wall time per frame (the node's latency "
        "also includes image conversion and publishing)",
        "settle_frames": args.settle_frames,
        "summary": summary,
        "trace": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                  for r in trace],
        "fixed_threshold_trace": None if fixed is None else [
            {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
            for r in fixed],
    }


