"""CPU latency of dense vs masked-dense vs gather-scatter execution, side by side.

For each gating variant (``residual``: only stride-1 residual blocks gated, the default model;
``all``: ``gate_strided=True``, every block after the stem gated) and each blob-mask density it
times, in one process with fixed torch threads, batch 1:

* ``ort_dense``     the dense model in ONNX Runtime (the bar), timed at every density
                    *interleaved* with the paths it is compared with
                    (:func:`.timing.time_interleaved`: alternating blocks of calls over the same
                    seconds), so each ratio is measured under one and the same machine state;
* ``torch_dense``   the dense model in PyTorch eager (NCHW);
* ``masked_torch``  the gated model's own forward (masked dense reference);
* ``sparse_torch``  gather-scatter with PyTorch ops;
* ``sparse_cpp``    gather-scatter with the fused compiled kernel, every gated block sparse;
* ``policy_cpp``    the same kernel with the measured per-stage policy (crossover densities);
                    for the whole network the neck + head run in the same kernel's workers,
* ``policy_cpp_ort_head`` (network only) the same backbone with the neck + head in ONNX Runtime.
* ``policy_cpp_head_gating`` (network only) ``policy_cpp`` with head gating on
                    (``NetworkConfig.head_gating``: heads read only inside the last mask's
                    region, ``model/heads.py``) — same weights, a different output outside the
                    region, so it is reported next to the ungated network, not instead of it.

``arch`` picks the network: ``s16`` (the original stride-16 MobileNetV2 + light neck, at
``width_mult``) or MoveNet's architecture (``movenet-thunder``: width 1.75 at 256,
``movenet-lightning``: 1.0 at 192; stride 32, TF 'SAME' stride-2 convs, 1x1 to 1280, FPN neck,
``model.network.movenet_config``). For MoveNet the neck + head run in ONNX Runtime (the
compiled head has only the light neck) and the ORT dense bar is the ungated network's own
forward exported whole (``benchmarks.ort_dense`` wraps the stride-16 layout only).

Per-stage (per resolution) times come from the executor's per-block profile at every density,
for the compiled kernel run dense and sparse; the crossover density of each stage (where sparse
stops paying) is interpolated from them and becomes ``policy_cpp``'s policy.
"""

from __future__ import annotations

import copy
import datetime as _dt
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..model.flops import flops_report
from ..model.network import NetworkConfig, PoseNetwork, movenet_config
from ..provenance import load_average, machine_info, steal_seconds
from ..sparse.cpu_kernel import load_cpu_kernel
from ..sparse.executor import SparseBackbone, SparsePoseNetwork, block_stride_map
from ..sparse.ort_head import ort_available
from .masks import clear_fixed_masks, set_blob_masks
from .ort_dense import DenseBackbone, DenseNetwork, export_onnx, ort_runner
from .timing import time_call, time_interleaved
from .trained_masks import run_trained

log = logging.getLogger(__name__)

VARIANTS = {"residual": False, "all": True}
#: network architectures: the original stride-16 one, or MoveNet's (``movenet_config``)
ARCHS = ("s16", "movenet-thunder", "movenet-lightning")
#: default input side per architecture (MoveNet's own sizes)
ARCH_SIZE = {"s16": 256, "movenet-thunder": 256, "movenet-lightning": 192}


@dataclass
class BenchConfig:
    size: int = 256
    threads: int = 2
    reps: int = 50
    warmup: int = 10
    densities: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 1.0)
    variants: tuple[str, ...] = ("residual", "all")
    width_mult: float = 1.0
    checkpoint: str | None = None  # None: first models/*.safetensors if any
    trained_frames: int = 16
    trained_real_frames: int = 8
    seed: int = 0
    with_network: bool = True
    eager: bool = True  # also time the PyTorch-eager paths (slow; context for issue 2 only)
    # interleaved timing of the end-to-end rows (.timing.time_interleaved)
    block: int = 10
    settle: int = 3
    gap_s: float = 0.05
    arch: str = "s16"


def network_config(cfg: BenchConfig, gated: bool = True, gate_strided: bool = False
                   ) -> NetworkConfig:  # fmt: skip
    """The benchmarked network's config (``cfg.arch``; ``width_mult`` applies to ``s16``)."""
    if cfg.arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {cfg.arch!r}")
    if cfg.arch.startswith("movenet-"):
        return movenet_config(cfg.arch.removeprefix("movenet-"), gated=gated,
                              gate_strided=gate_strided, input_size=cfg.size)  # fmt: skip
    return NetworkConfig(input_size=cfg.size, width_mult=cfg.width_mult, gated=gated,
                         gate_strided=gate_strided)  # fmt: skip


def arch_output_stride(arch: str) -> int:
    """Output stride of ``arch``'s network (its input size must be a multiple of it)."""
    return network_config(BenchConfig(size=ARCH_SIZE[arch], arch=arch)).output_stride


class _WholeBackbone(torch.nn.Module):
    """An ungated backbone's own forward (every block dense, ``last`` included) -> features."""

    def __init__(self, net: PoseNetwork) -> None:
        super().__init__()
        self.backbone = net.backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)[0]


class _WholeNetwork(torch.nn.Module):
    """An ungated network's own forward -> (heatmaps, triplets, joints)."""

    def __init__(self, net: PoseNetwork) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.net(x)
        return out.heatmaps, out.triplets, out.joints


def _fit(xs: Sequence[float], ys: Sequence[float]) -> dict[str, float]:
    """Least-squares line latency = slope·density + intercept, with R²."""
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    slope, intercept = np.polyfit(x, y, 1)
    pred = slope * x + intercept
    ss_res, ss_tot = float(((y - pred) ** 2).sum()), float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return {"slope_ms": float(slope), "intercept_ms": float(intercept), "r2": r2}


def _crossover(
    densities: Sequence[float], dense: Sequence[float], sparse: Sequence[float]
) -> float:
    """Density where sparse time meets dense time, linearly interpolated; 1.0 if sparse always
    wins, 0.0 if it never does."""
    d = np.asarray(densities, float)
    gain = np.asarray(dense, float) - np.asarray(sparse, float)  # > 0: sparse wins
    order = np.argsort(d)
    d, gain = d[order], gain[order]
    if (gain > 0).all():
        return 1.0
    if not (gain > 0).any():
        return 0.0
    for i in range(len(d) - 1):
        if gain[i] > 0 >= gain[i + 1]:
            return float(d[i] + (d[i + 1] - d[i]) * gain[i] / (gain[i] - gain[i + 1]))
    return float(d[gain > 0].max())


def _with_threads(threads: int | None, fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` as is when its executor has its own thread count (``threads`` 1: the compiled
    kernel's pool), else ``fn`` run with torch on one thread (the PyTorch-ops kernel)."""
    if threads is not None:
        return fn

    def call() -> object:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn()
        finally:
            torch.set_num_threads(before)

    return call


def _blocks(cfg: BenchConfig) -> dict[str, Any]:
    """Block layout of :func:`.timing.time_interleaved` for this run."""
    return {"block": cfg.block, "settle": cfg.settle, "gap_s": cfg.gap_s}


def _stage_profile(ex: SparseBackbone, x: torch.Tensor, reps: int, warmup: int) -> dict[int, float]:
    """Median per-block time summed per output stride (ms)."""
    for _ in range(warmup):
        ex(x)
    ex.profile = True
    rows = []
    for _ in range(reps):
        ex(x)
        rows.append(ex.block_times)
    ex.profile = False
    med = np.median(np.asarray(rows), axis=0) * 1e3
    out: dict[int, float] = {}
    for s, t in zip(ex.strides, med, strict=True):
        out[s] = out.get(s, 0.0) + float(t)
    return out


def _mac_floor(net: PoseNetwork, x: torch.Tensor) -> dict[str, float]:
    """MAC fraction that stays at density 0 (ungated blocks, stem, mask units)."""
    set_blob_masks(net.backbone, 1, tuple(x.shape[-2:]), 0.0)
    with torch.no_grad():
        rep = flops_report(net, net(x), tuple(x.shape[-2:]))
    return {"backbone": rep.backbone_fraction, "network": rep.network_fraction,
            "backbone_dense_macs": rep.backbone_dense_macs,
            "network_dense_macs": rep.network_dense_macs}  # fmt: skip


def _head_times(net: PoseNetwork, runner: SparsePoseNetwork, x: torch.Tensor, reps: int,
                warmup: int) -> dict[str, Any]:  # fmt: skip
    """Neck + head alone on the backbone's feature buffers (they do not depend on the masks):
    the compiled head vs the same graph in ONNX Runtime, at the run's threads and at 1; where
    the compiled head cannot run the network (MoveNet's FPN), ORT vs PyTorch eager."""
    from ..sparse.head_plan import CppHead, supported
    from ..sparse.ort_head import OrtHead

    feats, skips, masks = runner.backbone(x)
    nhwc = [t.permute(0, 2, 3, 1) for t in (feats, *skips)]
    out: dict[str, Any] = {}
    compiled = supported(net) is None
    if not compiled:
        out["torch"] = time_call(lambda: net.run_head(feats, skips, masks), reps, warmup)
    for label, threads in (("", torch.get_num_threads()), ("_1thread", 1)):
        ort_head = OrtHead(net, threads=threads) if ort_available() else None
        if compiled:
            cpp = CppHead(net, runner.backbone._cpp, threads=threads)
            out["cpp" + label] = time_call(lambda c=cpp: c(feats, *skips), reps, warmup)
        if ort_head is not None:
            out["ort" + label] = time_call(lambda o=ort_head: o(*nhwc), reps, warmup)
    return out


def _run_variant(
    name: str, cfg: BenchConfig, x: torch.Tensor, ort_bb: Callable[[], object],
    ort_net: Callable[[], object] | None, have_cpp: bool, ort_bb_1t: Callable[[], object],
    ort_net_1t: Callable[[], object] | None = None,
) -> dict[str, Any]:  # fmt: skip
    torch.manual_seed(cfg.seed)
    net = PoseNetwork(network_config(cfg, gate_strided=VARIANTS[name])).eval()
    strides = block_stride_map(net.backbone)
    blocks = net.backbone.blocks
    gated_strides = sorted({s for s, b in zip(strides, blocks, strict=True) if b.gated})
    kernel = "cpp" if have_cpp else "torch"
    r, w = cfg.reps, cfg.warmup
    res: dict[str, Any] = {
        "gate_strided": VARIANTS[name],
        "kernel": kernel,
        "mac_floor": _mac_floor(net, x),
        "gated_strides": gated_strides,
    }

    # 1. per-stage profile -> crossover policy
    ex_sparse = SparseBackbone(net.backbone, policy="sparse", kernel=kernel)
    ex_dense = SparseBackbone(net.backbone, policy="dense", kernel=kernel)
    ex_torch = SparseBackbone(net.backbone, policy="sparse", kernel="torch")
    stages: dict[str, dict[str, list[float]]] = {}
    for d in cfg.densities:
        set_blob_masks(net.backbone, 1, (cfg.size, cfg.size), d)
        runs = [("dense_" + kernel, ex_dense), ("sparse_" + kernel, ex_sparse)]
        if cfg.eager:
            runs.append(("sparse_torch", ex_torch))
        for label, ex in runs:
            for s, t in _stage_profile(ex, x, r, w).items():
                stages.setdefault(str(s), {}).setdefault(label, []).append(t)
    policy: dict[int, float] = {}
    for s in gated_strides:
        st = stages[str(s)]
        cross = _crossover(cfg.densities, st["dense_" + kernel], st["sparse_" + kernel])
        policy[s] = round(cross, 3)
    res["per_stage_ms"] = {"densities": list(cfg.densities), "stages": stages}
    res["policy_crossover"] = {str(k): v for k, v in policy.items()}

    # 2. end-to-end at every density, ORT dense timed interleaved with ours (.timing)
    one = 1 if kernel == "cpp" else None  # the torch kernel follows torch's thread count
    ex_policy = SparseBackbone(net.backbone, policy=policy, kernel=kernel)
    ex_1t = SparseBackbone(net.backbone, policy=policy, kernel=kernel, threads=one)
    net_sparse = SparsePoseNetwork(net, policy="sparse", kernel=kernel)
    net_policy = SparsePoseNetwork(net, policy=policy, kernel=kernel)
    net_torch = SparsePoseNetwork(net, policy="sparse", kernel="torch")
    net_1t = SparsePoseNetwork(net, policy=policy, kernel=kernel, threads=one)
    # the same backbone with the neck + head in ONNX Runtime (the pre-compiled-head path)
    net_ort_head = (SparsePoseNetwork(net, policy=policy, kernel=kernel, head="ort")
                    if kernel == "cpp" and ort_available() else None)  # fmt: skip
    # head gating: the same weights with the region switch on (a copy, so that both are timed
    # in one interleaved window); its region comes from the same blob masks
    net_hg = copy.deepcopy(net)
    net_hg.set_head_gating(True)
    hg_policy = SparsePoseNetwork(net_hg, policy=policy, kernel=kernel)
    hg_1t = SparsePoseNetwork(net_hg, policy=policy, kernel=kernel, threads=one)
    gating = bool(net.gated_blocks())
    rows = []
    with torch.no_grad():
        for d in cfg.densities:
            set_blob_masks(net.backbone, 1, (cfg.size, cfg.size), d)
            set_blob_masks(net_hg.backbone, 1, (cfg.size, cfg.size), d)
            masked_out = net(x)  # masked dense reference forward: the masks of this density
            rep = flops_report(net, masked_out, (cfg.size, cfg.size))
            bb = {
                "ort_dense": ort_bb,
                "sparse_" + kernel: lambda: ex_sparse(x),
                "policy_" + kernel: lambda: ex_policy(x),
                # contention check: one thread each (see docs/sparse.md, "Shared cores")
                "ort_dense_1thread": ort_bb_1t,
                f"policy_{kernel}_1thread": _with_threads(one, lambda: ex_1t(x)),
            }
            row: dict[str, Any] = {
                "density": d,
                "mac_fraction": {
                    "backbone": rep.backbone_fraction,
                    "network": rep.network_fraction,
                    "gated": rep.gated_density,
                },
                "backbone": time_interleaved(bb, r, w, **_blocks(cfg)),
            }
            if ort_net is not None:
                nw = {
                    "ort_dense": ort_net,
                    "sparse_" + kernel: lambda: net_sparse(x),
                    "policy_" + kernel: lambda: net_policy(x),
                }
                if net_ort_head is not None:
                    nw[f"policy_{kernel}_ort_head"] = lambda: net_ort_head(x)
                if gating:
                    nw[f"policy_{kernel}_head_gating"] = lambda: hg_policy(x)
                if ort_net_1t is not None:
                    nw["ort_dense_1thread"] = ort_net_1t
                    nw[f"policy_{kernel}_1thread"] = _with_threads(one, lambda: net_1t(x))
                    if gating:
                        nw[f"policy_{kernel}_head_gating_1thread"] = _with_threads(
                            one, lambda: hg_1t(x))
                if gating:
                    row["head_region_fraction"] = flops_report(
                        net_hg, net_hg(x), (cfg.size, cfg.size)).head_region_fraction
                row["network"] = time_interleaved(nw, r, w, **_blocks(cfg))
            if cfg.eager:
                row["backbone"]["masked_torch"] = time_call(lambda: net.backbone(x), r, w)
                row["backbone"]["sparse_torch"] = time_call(lambda: ex_torch(x), r, w)
                if "network" in row:
                    row["network"]["masked_torch"] = time_call(lambda: net(x), r, w)
                    row["network"]["sparse_torch"] = time_call(lambda: net_torch(x), r, w)
            rows.append(row)
            log.info("%s d=%.2f backbone %s", name, d,
                     {k: round(v["median_ms"], 3) for k, v in row["backbone"].items()})  # fmt: skip
    if kernel == "cpp" and cfg.with_network:
        res["head"] = _head_times(net, net_policy, x, r, w)
    clear_fixed_masks(net.backbone)
    res["densities"] = rows
    fits: dict[str, Any] = {}
    for part in ("backbone", "network"):
        if part not in rows[0]:
            continue
        for path in rows[0][part]:
            if path.startswith("ort_dense"):
                continue
            ys = [row[part][path]["median_ms"] for row in rows]
            fits[f"{part}/{path}"] = _fit(cfg.densities, ys)
    res["linear_fit_vs_density"] = fits if len(cfg.densities) >= 2 else {}
    return res


def _trained(cfg: BenchConfig, have_cpp: bool) -> dict[str, Any]:
    """The trained model's own masks on held-out synthetic and real frames (see
    :mod:`.trained_masks`), with the policy the sparse-cpu backend uses."""
    if not have_cpp:
        return {"skipped": "compiled CPU kernel unavailable"}
    from ..backends.sparse_cpu_backend import DEFAULT_POLICY

    # the shipped checkpoints are stride-16 networks: a policy naming stride 32 would be refused
    policy = {s: v for s, v in DEFAULT_POLICY.items() if s <= 16}
    return run_trained(cfg.checkpoint, cfg.threads, cfg.reps, cfg.warmup, policy,
                       synth_frames=cfg.trained_frames, real_frames=cfg.trained_real_frames)


def run(cfg: BenchConfig, command: str | None = None) -> dict[str, Any]:
    """Run the whole benchmark and return the JSON-ready result."""
    torch.set_num_threads(cfg.threads)
    have_cpp = load_cpu_kernel() is not None
    load_before = load_average()
    steal_before, t_start = steal_seconds(), time.monotonic()
    torch.manual_seed(cfg.seed)
    x = torch.randn(1, 3, cfg.size, cfg.size)
    dense_net = PoseNetwork(network_config(cfg, gated=False)).eval()
    dense_bb: torch.nn.Module
    whole: torch.nn.Module
    if cfg.arch == "s16":
        dense_bb, whole = DenseBackbone(dense_net.backbone).eval(), DenseNetwork(dense_net).eval()
    else:
        dense_bb, whole = _WholeBackbone(dense_net).eval(), _WholeNetwork(dense_net).eval()
    bb_onnx = export_onnx(dense_bb, x)
    ort_bb = ort_runner(bb_onnx, cfg.threads, x)
    ort_bb_1t = ort_runner(bb_onnx, 1, x)
    net_onnx = export_onnx(whole, x) if cfg.with_network else None
    ort_net = ort_runner(net_onnx, cfg.threads, x) if net_onnx is not None else None
    ort_net_1t = ort_runner(net_onnx, 1, x) if net_onnx is not None else None
    r, w = cfg.reps, cfg.warmup
    with torch.no_grad():
        dense: dict[str, Any] = {"backbone": {"ort_dense": time_call(ort_bb, r, w)}}
        if ort_net is not None:
            dense["network"] = {"ort_dense": time_call(ort_net, r, w)}
        if cfg.eager:
            dense["backbone"]["torch_dense"] = time_call(lambda: dense_bb(x), r, w)
            if ort_net is not None:
                dense["network"]["torch_dense"] = time_call(lambda: whole(x), r, w)
    result: dict[str, Any] = {
        "benchmark": "sparse_cpu",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command or " ".join(sys.argv),
        "machine": machine_info(),
        "torch_threads": torch.get_num_threads(),
        "ort_intra_op_threads": cfg.threads,
        "batch": 1,
        "input_size": cfg.size,
        "arch": cfg.arch,
        "width_mult": dense_net.cfg.width_mult,
        "reps": cfg.reps,
        "warmup": cfg.warmup,
        "masks": "upright blob (benchmarks.masks.blob_mask), same density at every gated block",
        "compiled_kernel": have_cpp,
        # libgomp reads it at start-up; unset = its default (workers spin after each region)
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
        "dense": dense,
        "variants": {},
    }
    for name in cfg.variants:
        result["variants"][name] = _run_variant(
            name, cfg, x, ort_bb, ort_net, have_cpp, ort_bb_1t, ort_net_1t
        )
    result["trained_masks"] = _trained(cfg, have_cpp) if cfg.checkpoint != "" else {
        "skipped": "disabled (--no-trained)"}  # fmt: skip
    result["load_average_before"] = load_before
    result["load_average_after"] = load_average()
    steal_after = steal_seconds()
    if steal_before is not None and steal_after is not None:
        # share of the run's wall time × CPUs that the hypervisor gave to other guests
        wall = (time.monotonic() - t_start) * (os.cpu_count() or 1)
        result["cpu_steal_fraction"] = round((steal_after - steal_before) / wall, 4)
    result["summary"] = summarise(result)
    return result


def _ratio_at(
    variant: dict[str, Any], part: str, path: str, density: float, stat: str = "median_ms"
) -> float | None:
    """``stat`` of ``path`` over the same statistic of ORT dense timed next to it (2 threads
    each; a ``*_1thread`` path is compared with ORT on one thread)."""
    bar = "ort_dense_1thread" if path.endswith("_1thread") else "ort_dense"
    for row in variant["densities"]:
        if abs(row["density"] - density) < 1e-9 and part in row and path in row[part]:
            return row[part][path][stat] / row[part][bar][stat]
    return None


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """Targets of issues 2 and 6 as ratios (sparse / dense), measured in this run."""
    dense = result["dense"]
    out: dict[str, Any] = {}
    for name, v in result["variants"].items():
        kernel = v["kernel"]
        s: dict[str, Any] = {}
        for path in ("sparse_" + kernel, "policy_" + kernel, f"policy_{kernel}_1thread",
                     f"policy_{kernel}_head_gating", f"policy_{kernel}_head_gating_1thread"):
            for part in ("backbone", "network"):
                if part not in dense:
                    continue
                torch_dense = dense[part].get("torch_dense", {}).get("median_ms")
                for d in (0.25, 1.0):
                    for row in v["densities"]:
                        if (torch_dense and abs(row["density"] - d) < 1e-9
                                and path in row.get(part, {})):
                            ms = row[part][path]["median_ms"]
                            s[f"{part}/{path}@{d}/torch_dense"] = round(ms / torch_dense, 3)
                    ro = _ratio_at(v, part, path, d)
                    if ro is not None:
                        s[f"{part}/{path}@{d}/ort_dense"] = round(ro, 3)
                    # best-of-N ratio: what an undisturbed run reaches when the cores are shared
                    rmin = _ratio_at(v, part, path, d, "min_ms")
                    if rmin is not None:
                        s[f"{part}/{path}@{d}/ort_dense_min"] = round(rmin, 3)
        out[name] = s
    trained = result.get("trained_masks", {})
    for set_name, row in trained.get("sets", {}).items():
        for k, parts in row.items():
            if not k.endswith("thread"):
                continue
            be = parts.get("backend", {})
            if "onnxruntime" in be and "sparse-cpu" in be:
                out[f"trained/{set_name}/{k}/backend/sparse-cpu/onnxruntime"] = round(
                    be["sparse-cpu"]["median_ms"] / be["onnxruntime"]["median_ms"], 3)
            for part in ("backbone", "network"):
                bar = parts[part]["ort_dense"]["median_ms"]
                for path, stats in parts[part].items():
                    if path != "ort_dense":
                        key = f"trained/{set_name}/{k}/{part}/{path}/ort_dense"
                        out[key] = round(stats["median_ms"] / bar, 3)
    return out
