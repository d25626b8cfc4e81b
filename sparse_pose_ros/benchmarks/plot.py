"""Latency vs density plot with the MAC line for reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

STYLE = {
    "masked_torch": ("tab:gray", "masked dense (torch eager)"),
    "sparse_torch": ("tab:orange", "gather-scatter, torch ops"),
    "sparse_cpp": ("tab:blue", "gather-scatter, compiled kernel"),
    "policy_cpp": ("tab:green", "per-stage policy, compiled kernel"),
    "policy_cpp_1thread": ("tab:olive", "per-stage policy, compiled kernel, 1 thread"),
    "policy_cpp_ort_head": ("tab:cyan", "per-stage policy, neck + head in ONNX Runtime"),
}
ONE_THREAD_BAR = "ort_dense_1thread"


def plot_sparse_cpu(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(result["variants"].items())
    parts = [p for p in ("backbone", "network") if p in result["dense"]]
    fig, axes = plt.subplots(len(parts), len(variants), figsize=(6.2 * len(variants),
                             4.4 * len(parts)), squeeze=False)  # fmt: skip
    for col, (_name, v) in enumerate(variants):
        rows = v["densities"]
        ds = [r["density"] for r in rows]
        for row_i, part in enumerate(parts):
            ax = axes[row_i][col]
            ort = [r[part]["ort_dense"]["median_ms"] for r in rows]
            ax.plot(ds, ort, "k-", lw=2, label="dense ONNX Runtime (the bar)")
            if "torch_dense" in result["dense"][part]:
                td = result["dense"][part]["torch_dense"]["median_ms"]
                ax.axhline(td, color="k", ls=":", label="dense torch eager")
            ref = sum(ort) / len(ort)
            if all(r.get("mac_fraction") for r in rows):  # None where flops cannot count
                ax.plot(ds, [ref * r["mac_fraction"][part] for r in rows], "k--", alpha=0.6,
                        label="ORT dense × executed-MAC fraction")  # fmt: skip
            for path_name in rows[0][part]:
                if path_name == "ort_dense":
                    continue
                if path_name == ONE_THREAD_BAR:
                    ys = [r[part][path_name]["median_ms"] for r in rows]
                    ax.plot(ds, ys, "-", color="tab:purple", lw=1.5, label="dense ORT, 1 thread")
                    continue
                colour, label = STYLE.get(path_name, (None, path_name))
                ys = [r[part][path_name]["median_ms"] for r in rows]
                p95 = [r[part][path_name]["p95_ms"] for r in rows]
                ax.plot(ds, ys, "o-", color=colour, label=label)
                ax.fill_between(ds, ys, p95, color=colour, alpha=0.12)
            ax.set_yscale("log")
            ax.set_xlabel("mask density (blob)")
            ax.set_ylabel("latency ms (median, band to p95)")
            gating = "all blocks gated" if v["gate_strided"] else "residual blocks gated"
            ax.set_title(f"{part}, {gating}")
            ax.grid(True, which="both", alpha=0.3)
            if col == 0:
                ax.legend(fontsize=7)
    m = result["machine"]
    fig.suptitle(f"{result['input_size']}×{result['input_size']} batch 1, "
                 f"{result['torch_threads']} threads, {m['cpu_model']}, torch {m['torch']}, "
                 f"ORT {m['onnxruntime']}", fontsize=9)  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


#: Contender colours of the real-frames plot (others: matplotlib's cycle).
REAL_FRAMES_COLOURS = {
    "ours_sparse": "tab:blue", "ours_sparse_lightning": "tab:cyan",
    "ours_dense_ort": "black", "ours_dense_lightning_ort": "tab:gray",
    "movenet_thunder_ort": "tab:red", "movenet_lightning_ort": "tab:pink",
    "ours_dense_tracking_ort": "tab:olive", "ours_sparse_tracking": "tab:green",
    "ours_dense_openvino": "tab:brown", "ours_dense_tracking_openvino": "gold",
    "blazepose_full": "tab:purple", "ours_dense_lightning_tracking_openvino": "tab:orange",
}  # fmt: skip


def plot_real_frames(results: list[dict[str, Any]], path: Path) -> None:
    """Accuracy (PCK@0.1 on MoveNet's 15 joints) vs median per-frame latency of every contender:
    one column per thread count, one row per frame set and person size (all frames, person
    < 25 % of the image); a bar from the median to the p95 latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []  # (set, group)
    for r in results[:1]:
        for set_name, per in r["summary"].items():
            for group in ("all", "small"):
                if any(v.get(group) for v in per.values()):
                    panels.append((set_name, group))
    cols = max(1, len(results))
    fig, axes = plt.subplots(max(1, len(panels)), cols, figsize=(6.0 * cols,
                             4.2 * max(1, len(panels))), squeeze=False)  # fmt: skip
    for c, r in enumerate(results):
        for row, (set_name, group) in enumerate(panels):
            ax = axes[row][c]
            for name, per in r["summary"].get(set_name, {}).items():
                v = per.get(group)
                if not v or v.get("pck@0.1") is None or v.get("median_ms") is None:
                    continue
                colour = REAL_FRAMES_COLOURS.get(name)
                marker = ("D" if "tracking" in name else "o" if "sparse" in name else "s"
                          if "dense" in name else "^" if "movenet" in name else "*")
                ax.errorbar([v["median_ms"]], [v["pck@0.1"]],
                            xerr=[[0.0], [max(0.0, v["p95_ms"] - v["median_ms"])]],
                            fmt=marker, ms=7, color=colour, capsize=3, label=name)  # fmt: skip
            n = r["sets"][set_name]["frames_small_person" if group == "small" else "frames"]
            what = "person < 25 % of the image" if group == "small" else "all frames"
            ax.set_title(f"{set_name}, {what} ({n} frames), {r['threads']} thread(s)",
                         fontsize=8)  # fmt: skip
            ax.set_xscale("log")
            ax.set_xlabel("latency per frame, ms (median, bar to p95)")
            ax.set_ylabel("PCK@0.1 (15 joints) vs " + ("BlazePose" if set_name == "real"
                                                       else "ground truth"))
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=6, loc="best")
    m = results[0]["machine"] if results else {}
    fig.suptitle(f"real-frames benchmark, batch 1, {m.get('cpu_model')}, "
                 f"{results[0]['date_utc'] if results else ''}", fontsize=9)  # fmt: skip
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 0.98))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
