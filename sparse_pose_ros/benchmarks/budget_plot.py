"""Plots of the latency-budget results (``benchmarks.budget``): sweep curves and replay trace."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_sweep(result: dict[str, Any], path: Path) -> None:
    """MPJPE / PA-MPJPE vs threshold (bounds shaded) and latency + density vs threshold."""
    plt = _pyplot()
    rows = result["rows"]
    ts = [r["threshold"] for r in rows]
    fig, (ax_acc, ax_lat) = plt.subplots(1, 2, figsize=(13, 5.6))
    bounds = result.get("bounds")
    mp = [r["mpjpe_mm"] for r in rows]
    if bounds:
        half = [bounds["paired_delta_mm"][f"{t:g}"]["ci95_half_width"] for t in ts]
        ax_acc.errorbar(ts, mp, yerr=half, fmt="o-", capsize=3,
                        label="MPJPE (bars: 95 % CI of the paired difference to "
                        f"{bounds['reference_threshold']:g})")
    else:
        ax_acc.plot(ts, mp, "o-", label="MPJPE")
    ax_acc.plot(ts, [r["pa_mpjpe_mm"] for r in rows], "s--", label="PA-MPJPE")
    for ax in (ax_acc, ax_lat):
        if bounds:
            ax.axvspan(bounds["min_threshold"], bounds["max_threshold"], color="tab:green",
                       alpha=0.08, label="recommended controller range")
    if bounds:
        ax_acc.axhline(bounds["mpjpe_limit_mm"], color="tab:red", lw=0.8, ls=":",
                       label="MPJPE limit of the rule")
    ax_acc.set_xlabel("mask threshold (probability)")
    ax_acc.set_ylabel("root-relative error (mm)")
    ax_acc.set_title(f"accuracy, {result['data']['frames']} held-out synthetic frames")
    ax_acc.grid(alpha=0.3)
    ax_acc.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)

    lat = [r["latency"] for r in rows]
    ax_lat.plot(ts, [v["median_ms"] for v in lat], "o-", color="tab:blue", label="median")
    ax_lat.plot(ts, [v["p95_ms"] for v in lat], "v:", color="tab:blue", alpha=0.6, label="p95")
    ref = result.get("reference_masked_dense")
    if ref:
        rt = sorted(float(t) for t in ref["latency"])
        ax_lat.plot(rt, [ref["latency"][f"{t:g}"]["median_ms"] for t in rt], "x--",
                    color="tab:gray", label=f"median, {ref['graph']} graph (masked dense)")
    ax_lat.set_xlabel("mask threshold (probability)")
    ax_lat.set_ylabel("latency per frame (ms)")
    backend = result["backend"]
    name = backend["name"] + (f" {backend['graph']}" if backend.get("graph") else "")
    ax_lat.set_title(f"estimator latency, batch 1, {result['threads']} threads ({name})")
    ax_lat.grid(alpha=0.3)
    ax_den = ax_lat.twinx()
    ax_den.plot(ts, [v["density_mean"] for v in lat], "d-", color="tab:orange",
                label="backbone density")
    ax_den.set_ylabel("executed fraction of backbone MACs", color="tab:orange")
    ax_den.set_ylim(0, 1.05)
    h1, l1 = ax_lat.get_legend_handles_labels()
    h2, l2 = ax_den.get_legend_handles_labels()
    ax_lat.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14),
                  ncol=3)
    load = result.get("load_average_before")
    fig.suptitle(f"{Path(result['checkpoint']).name}, {result['date_utc']}, load {load}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_replay(result: dict[str, Any], path: Path) -> None:
    """Latency (target ± tolerance band), threshold and density over the replayed clip."""
    plt = _pyplot()
    trace = result["trace"]
    x = list(range(len(trace)))
    target = result["budget"]["target_ms"]
    tol = result["controller"]["tolerance"]
    fig, (ax_l, ax_t, ax_d) = plt.subplots(3, 1, figsize=(11, 8), sharex=True,
                                           gridspec_kw={"height_ratios": [2, 1, 1]})
    fixed = result.get("fixed_threshold_trace")
    strips = bool(trace) and "strip_floor" in trace[0]  # the dense path's knob
    fixed_label = "no budget (node default)" if strips else "fixed threshold 0.5"
    if fixed:
        ax_l.plot(x, [r["latency_ms"] for r in fixed], ".", ms=3, color="tab:gray", alpha=0.45,
                  label=f"{fixed_label} (no control)")
    ax_l.plot(x, [r["latency_ms"] for r in trace], ".", ms=3, color="tab:blue",
              label="per-frame latency (controlled)")
    ax_l.plot(x, [r["smoothed_ms"] for r in trace], "-", color="tab:blue", lw=1.2,
              label="EMA seen by the controller")
    ax_l.axhline(target, color="tab:red", lw=1, label=f"budget {target:.2f} ms")
    ax_l.axhspan(target * (1 - tol), target * (1 + tol), color="tab:red", alpha=0.1,
                 label=f"±{tol:.0%}")
    ax_l.set_ylabel("latency (ms)")
    ax_l.legend(fontsize=8, loc="upper right", ncol=2)
    frac = result["summary"]["within_tolerance_after_settling"]["fraction"]
    ax_l.set_title(
        f"budget replay: {frac:.0%} of frames within ±{tol:.0%} after settling "
        f"({result['settle_frames']} frames per scene change)" if frac is not None
        else "budget replay")
    c = result["controller"]
    if strips:
        side = result["crop_input_size"]
        ax_t.plot(x, [r["strip_floor"] * side for r in trace], "-", color="tab:purple",
                  label="strip floor (tracked frames)")
        if "whole_size" in trace[0]:  # the second knob: the whole frame's side
            ax_t.plot(x, [r["whole_size"] for r in trace], "-", color="tab:green",
                      label="whole-frame side (whole frames)")
            ax_t.legend(fontsize=8, loc="lower right")
        for b in (0.0, side):
            ax_t.axhline(b, color="k", lw=0.7, ls="--")
        ax_t.set_ylabel("knob (px)")
    else:
        ax_t.plot(x, [r["threshold"] for r in trace], "-", color="tab:purple")
        for b in (c["min_threshold"], c["max_threshold"]):
            ax_t.axhline(b, color="k", lw=0.7, ls="--")
        ax_t.set_ylabel("mask threshold")
        ax_t.set_ylim(0, 1)
    # what the knob changes: the strip's width for a dense model, the density for a gated one
    key, label, top = (("input_width", "input width (px)", result["input_size"] * 1.05)
                       if strips else ("density", "backbone density", 1.05))
    if fixed:
        ax_d.plot(x, [r[key] for r in fixed], "-", color="tab:gray", alpha=0.6,
                  label=fixed_label)
    ax_d.plot(x, [r[key] for r in trace], "-", color="tab:orange", label="controlled")
    ax_d.set_ylabel(label)
    ax_d.set_ylim(0, top)
    ax_d.set_xlabel("frame")
    ax_d.legend(fontsize=8, loc="center right")
    for seg in result["summary"]["segments"]:
        start, stop = seg["frames"]
        for ax in (ax_l, ax_t, ax_d):
            ax.axvline(start, color="k", lw=0.5, alpha=0.5)
        ax_d.text((start + stop) / 2, top * 0.95, f"{seg['scene']} person", ha="center",
                  va="top", fontsize=8)
    for ax in (ax_l, ax_t, ax_d):
        ax.grid(alpha=0.3)
    fig.suptitle(f"{Path(result['checkpoint']).name}, {result['backend']['name']} "
                 f"{result['backend'].get('graph') or ''}, {result['threads']} threads, "
                 f"{result['date_utc']}, load {result.get('load_average_before')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
