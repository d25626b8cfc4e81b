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
