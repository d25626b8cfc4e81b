"""The real-people recipe: our heads and execution masks on MoveNet's frozen, imported features.

    ./run train --config training_configs/movenet_thunder_real.yaml [--resume]

Why frozen: on this 2-core CPU a full Thunder forward + backward costs ~0.7 s per image, so an
end-to-end fine-tune would see a few thousand images in the 2.5 h budget and would drift away
from what Google trained on far more data. Frozen, the backbone and FPN keep MoveNet's skill
exactly, every image costs one forward, and what we train is small enough to fit in minutes:

1. **samples** (``data.teacher_samples``): real frames cropped around the teacher's person with
   random zoom-out, teacher-segmented people pasted onto background photos, synthetic renders.
2. **features**: one forward of the frozen network per sample, keeping the FPN's stride-4 output
   (what the heads read), MoveNet's own heatmaps (the distillation target) and, per gated
   block, a balanced sample of person / background cells of the block's input (what its mask
   unit reads).
3. **masks**: each mask unit (a 1×1 conv = a logistic regression on its block's input) is fitted
   to the teacher's person mask pooled to the block's grid and dilated by ``mask_margin`` cells,
   then its bias is shifted so that ``mask_recall`` of the person cells execute.
4. **head**: the separable pre-conv (initialised from MoveNet's heatmap branch) and the HEMlets
   head (heatmap rows initialised from MoveNet's keypoint rows) trained on the cached features:
   L = α·(L_HEM + L_2D) + L_3D + β·L_distill, with L_distill the KL from MoveNet's heatmaps to
   ours on the joints both skeletons share, 2D labels weighted by teacher visibility and depth
   labels by their trust (``teacher_samples.DEPTH_WEIGHT``).
5. **sparse head**: the same head fine-tuned on the features the gated network computes with
   the fitted masks (cells it skips are zero there), so the sparse model is trained on what it
   sees.
6. **lifter** (``lifter_steps`` > 0): the depth lifter (``model.lifter``) trained on the 3D
   skeletons of the synthetic renders and of the label cache's training sources seen through
   virtual cameras (``training.train_lifter``, ``data.lifter_poses``), attached to both
   checkpoints: it replaces the head's depth with one read off the 2D skeleton. With
   ``midpoint_torso`` it learns, and the checkpoints output, the real labels' torso joints
   (pelvis, thorax, spine as mid-points; ``skeleton.MIDPOINT_JOINTS``). With
   ``lifter_network_2d_share`` each checkpoint gets its own lifter, which also learns from that
   network's 2D on crops of the calibrated training trial (``training.lifter_network_2d``),
   read as the checkpoint reads it (with ``person_prior``).

Each stage writes its result into the run folder and is skipped when it is already there, so an
interrupted run continues with ``--resume``. Outputs: the dense and the sparse checkpoint
(fp16 weights), ``recipe.json`` with the per-stage numbers and timings.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import math
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor

from .. import skeleton
from ..data.backgrounds import BackgroundBank
from ..data.copy_paste import cutouts_from_label_set
from ..data.label_cache import load_corpus
from ..data.lifter_poses import real_poses
from ..data.shards import ShardDataset
from ..data.teacher_samples import TeacherSample, paste_sample, real_crops, synthetic_sample
from ..model.blocks import freeze_batchnorm
from ..model.checkpoint import load_checkpoint, save_checkpoint
from ..model.lifter import PoseLifter
from ..model.locator import cells_from_box
from ..model.losses import heatmap_loss, hem_loss, location_depth_loss
from ..model.movenet_head import COCO_KEYPOINTS
from ..model.network import PoseNetwork
from ..model.targets import build_targets
from ..pipeline.roi import REGION_MARGIN
from ..provenance import machine_info
from ..teachers.movenet_map import DIRECT
from .lifter_network_2d import CropDraws, draws_for
from .locator_fit import cell_targets, fit_locator
from .skip_fill import fit_skip_fill
from .train_lifter import WEIGHTINGS as LIFTER_WEIGHTINGS
from .train_lifter import (
    LifterTraining,
    attach,
    reference_bone_lengths,
    training_pairs,
    trust_weights,
    with_network_2d,
)
from .train_lifter import train as train_lifter

LOG = logging.getLogger("sparse_pose_ros.frozen_recipe")
RECIPE = "frozen_backbone"

#: Our joints that are one MoveNet (COCO) keypoint: ``movenet_map``'s direct joints plus
#: neck_nose = nose. They are the distillation pairs (joint name -> COCO index).
SHARED_JOINTS: dict[str, int] = {**DIRECT, "neck_nose": COCO_KEYPOINTS.index("nose")}
#: Our joints that are not COCO keypoints: initialised from the mean of these keypoint rows.
DERIVED_JOINTS: dict[str, tuple[str, ...]] = {
    "pelvis": ("left_hip", "right_hip"),
    "spine": ("left_hip", "right_hip", "left_shoulder", "right_shoulder"),
    "thorax": ("left_shoulder", "right_shoulder"),
    "head_top": ("left_eye", "right_eye", "left_ear", "right_ear"),
}
#: The distillation pairs in our joint order: our channel, MoveNet's channel.
_OURS = [j for j, n in enumerate(skeleton.JOINT_NAMES) if n in SHARED_JOINTS]
_COCO = [SHARED_JOINTS[skeleton.JOINT_NAMES[j]] for j in _OURS]


@dataclass
class RecipeConfig:
    """Everything the recipe reads (YAML keys of the same names; ``recipe: frozen_backbone``).

    Attributes:
        name, out_dir: the run folder is ``out_dir/name``.
        init_from: the imported MoveNet checkpoint (``./run import-weights``).
        labels: the teacher-label cache (``./run label``).
        synthetic: rendered shards (``./run render``); "" for none.
        crops_per_frame, pastes, synthetic_count: samples of each kind.
        max_per_source: keep at most this many real crops per source (0 = all; smoke tests).
        readout_window: the head's joints from a soft-argmax within this many cells of each
            heatmap's peak (``model.heads.peak_window``; 0 = whole map).
        person_prior: the saved checkpoints read the joints only inside the box of the person
            MoveNet's centre heads pick (``NetworkConfig.person_prior``); a readout setting:
            the heads train without it, the lifter learns the 2D read with it (the 2D the
            node will give it) and the saved networks carry it.
        mask_margin: dilation of the person cells (grid cells) that the masks must cover.
        mask_recall: share of those cells each mask executes on the training samples.
        mask_cells: person and background cells sampled per image and block for the fit.
        mask_source: "units" (stage 3: every block's mask unit fitted) or "locator" (stage 3b:
            one person locator masks every block, ``model.locator``; the mask units are kept
            all-on for the dense stages and unused by the sparse checkpoint).
        locator_epochs, locator_recall, locator_margin: the locator's training epochs, the
            share of held-out person cells its calibrated threshold keeps, and the stride-16
            cells its decision is dilated by.
        skip_fill, skip_fill_frames: the sparse checkpoint's gated blocks write their mean
            output at the cells they skip instead of zero (``NetworkConfig.skip_fill``), fitted
            on ``skip_fill_frames`` whole frames of each training source
            (``training.skip_fill``) before the sparse head's features are computed.
        region_share: share of the sparse head's samples whose gated features are computed
            with the region a tracked person gives at run time (their joint box grown by a
            random 1.15-1.5× and shifted a little, ``pipeline.roi.region_cells``'s rule) instead
            of the masks' own decision, so the head is trained on both inputs it will see.
        dense_share: share of the sparse head's samples that take the dense features (every
            cell executed) instead: what the node's sparse model computes on frames without a
            region (``dense_until_found``: the first frame, every frame after a lost person).
            Why: a head fine-tuned only on gated features scored those frames too low to find
            the person (held-out Pose2Sim, tracking: mean confidence 0.30 on them against the
            dense model's 0.57; found on 29 % of them), so a lost person stayed lost.
        epochs, batch_size, lr, weight_decay: head training (AdamW, cosine decay).
        sparse_epochs: fine-tuning of the head on the gated features (0 = share the head).
        alpha_int, lambda_z, distill: loss weights (α, λ, β).
        threads, seed: CPU threads; seed of every random draw.
        lifter_steps, lifter_views_per_pose: the depth lifter's training steps (0 = no
            lifter) and virtual cameras per real 3D skeleton.
        lifter_weighting: "uniform" or "trust": how often the lifter draws each pair
            (``train_lifter.trust_weights``).
        lifter_network_2d_share: share of the lifter's draws that are the checkpoint's own 2D
            on crops of the real training frames with triangulated 3D
            (``training.lifter_network_2d``); 0 = none. Above 0 each checkpoint gets its own
            lifter (the dense and the sparse network make different 2D mistakes).
        midpoint_torso: the lifter learns, and both checkpoints output, the real labels'
            torso definition (``NetworkConfig.midpoint_torso``).
        dense_out, sparse_out: where the two checkpoints go.
    """

    name: str = "movenet_thunder_real"
    out_dir: str = "runs"
    init_from: str = "data_cache/pretrained/movenet-thunder.safetensors"
    labels: str = "data_cache/labels"
    synthetic: str = "data_cache/synth_v2"
    crops_per_frame: int = 2
    max_per_source: int = 0
    pastes: int = 1200
    synthetic_count: int = 2500
    readout_window: int = 2
    person_prior: bool = True
    mask_margin: int = 1
    mask_recall: float = 0.97
    mask_cells: int = 24
    mask_source: str = "units"
    locator_epochs: int = 15
    locator_recall: float = 0.98
    locator_margin: int = 1
    skip_fill: bool = False
    skip_fill_frames: int = 60
    region_share: float = 0.0
    dense_share: float = 0.0
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    sparse_epochs: int = 10
    alpha_int: float = 0.1
    lambda_z: float = 1.0
    distill: float = 0.5
    threads: int = 2
    seed: int = 0
    lifter_steps: int = 0
    lifter_views_per_pose: int = 24
    lifter_weighting: str = "uniform"
    lifter_network_2d_share: float = 0.0
    midpoint_torso: bool = False
    dense_out: str = "models/pose_dense.safetensors"
    sparse_out: str = "models/pose_sparse.safetensors"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> RecipeConfig:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        if raw.pop("recipe", RECIPE) != RECIPE:
            raise ValueError(f"{path}: not a '{RECIPE}' recipe")
        for item in overrides or []:
            key, _, value = item.partition("=")
            raw[key.split(".")[-1]] = yaml.safe_load(value)
        known = {f.name for f in cls.__dataclass_fields__.values()}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown}")
        return cls(**raw)


def is_frozen_recipe(path: str | Path) -> bool:
    """Whether a YAML config asks for this recipe (``train`` dispatches on it)."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    return isinstance(raw, dict) and raw.get("recipe") == RECIPE


# -- network ------------------------------------------------------------------------------------
def build_network(cfg: RecipeConfig) -> tuple[PoseNetwork, dict[str, Any]]:
    """The imported network rebuilt with every block gated (mask units fresh, all on)."""
    src, info = load_checkpoint(cfg.init_from, map_location="cpu")
    if "source" not in info["meta"]:
        raise ValueError(f"{cfg.init_from} is not an imported MoveNet checkpoint")
    net = PoseNetwork(replace(src.cfg, gated=True, gate_strided=True,
                              readout_window=cfg.readout_window))
    missing = set(net.state_dict()) - set(src.state_dict())
    if any(".mask_unit." not in k for k in missing):
        raise ValueError(f"{cfg.init_from}: tensors missing beyond the mask units")
    net.load_state_dict(src.state_dict(), strict=False)
    net.set_masks_all_on()
    net.eval()
    freeze_batchnorm(net)
    for p in net.parameters():
        p.requires_grad_(False)
    return net, {"path": cfg.init_from, "model_hash": info["model_hash"],
                 "source": info["meta"]["source"]}


def _extended(net: PoseNetwork, what: str, is_new: Callable[[str], bool],
              **changes: Any) -> PoseNetwork:
    """``net`` rebuilt with config ``changes`` and its weights; only the tensors ``is_new``
    names may be missing (they start fresh, and only they are trainable)."""
    out = PoseNetwork(replace(net.cfg, **changes))
    missing, unexpected = out.load_state_dict(net.state_dict(), strict=False)
    if unexpected or any(not is_new(k) for k in missing):
        raise ValueError(f"{what} network does not match: {missing} {unexpected}")
    out.eval()
    for name, p in out.named_parameters():
        p.requires_grad_(is_new(name))
    return out


def with_locator(net: PoseNetwork, cfg: RecipeConfig) -> PoseNetwork:
    """The same frozen network with a fresh person locator making the masks (trainable)."""
    return _extended(net, "locator", lambda k: ".locator." in k, mask_source="locator",
                     locator_margin=cfg.locator_margin)


def with_skip_fill(net: PoseNetwork, cfg: RecipeConfig) -> tuple[PoseNetwork, dict[str, Any]]:
    """The same frozen network whose gated blocks fill the cells they skip, fitted
    (``training.skip_fill``; buffers, nothing trainable); and the fit's description."""
    out = _extended(net, "skip-fill", lambda k: k.endswith(".skip_fill"), skip_fill=True)
    return out, fit_skip_fill(out, Path(cfg.labels), cfg.skip_fill_frames)


def init_head_from_movenet(net: PoseNetwork) -> None:
    """Start our 2D head where MoveNet's keypoint head is: the same separable conv, and each
    joint's heatmap row from its keypoint's row (or the mean of the rows it is derived from)."""
    if net.head_pre is None or net.movenet is None:
        raise ValueError("needs a MoveNet network with head_pre and movenet heads")
    branch = net.movenet.branches["heatmap"]
    with torch.no_grad():
        net.head_pre.load_state_dict(branch.sep.state_dict())
        w, b = branch.out.weight, branch.out.bias
        for j, name in enumerate(skeleton.JOINT_NAMES):
            rows = [SHARED_JOINTS[name]] if name in SHARED_JOINTS else \
                [COCO_KEYPOINTS.index(k) for k in DERIVED_JOINTS[name]]
            net.head.heatmap.weight[j] = w[rows].mean(0)
            net.head.heatmap.bias[j] = b[rows].mean(0)


# -- samples ------------------------------------------------------------------------------------
def build_samples(cfg: RecipeConfig, size: int) -> tuple[list[TeacherSample], dict[str, Any]]:
    """The training samples (deterministic in ``cfg.seed``) and a description of them."""
    rng = np.random.default_rng(cfg.seed)
    corpus = load_corpus(Path(cfg.labels))
    train_sets = {k: v for k, v in corpus.items() if v.split == "train"}
    if not train_sets:
        raise ValueError(f"no training label sets under {cfg.labels}: run ./run label")
    samples: list[TeacherSample] = []
    counts: dict[str, int] = {}
    cutouts = []
    for sid, ls in train_sets.items():
        made = list(real_crops(ls, rng, size, cfg.crops_per_frame))
        if cfg.max_per_source:
            made = made[:cfg.max_per_source]
        counts[f"real_crop:{sid}"] = len(made)
        samples.extend(made)
        cutouts.extend(cutouts_from_label_set(ls, every=2))
    if cfg.pastes and cutouts:
        bank = BackgroundBank("train", size)
        for _ in range(cfg.pastes):
            cut = cutouts[int(rng.integers(len(cutouts)))]
            samples.append(paste_sample(rng, bank.sample(rng).astype(np.uint8), cut))
        counts["paste"] = cfg.pastes
    if cfg.synthetic and cfg.synthetic_count:
        ds = ShardDataset(Path(cfg.synthetic) / "train")
        picks = rng.choice(len(ds), size=min(cfg.synthetic_count, len(ds)), replace=False)
        for i in picks:
            samples.append(synthetic_sample(rng, ds.sample(int(i)), size, int(i)))
        counts["synthetic"] = len(picks)
    desc = {"samples": len(samples), "by_kind": counts, "cutouts": len(cutouts),
            "sources": {k: v.manifest["source"]["licence"] for k, v in train_sets.items()}}
    return samples, desc


# -- features -----------------------------------------------------------------------------------
def _to_input(images: np.ndarray, net: PoseNetwork) -> Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(net.cfg.input_mean).view(1, 3, 1, 1)
    std = torch.tensor(net.cfg.input_std).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def training_regions(chunk: list[TeacherSample], size: int, share: float,
                     rng: np.random.Generator) -> Tensor | None:
    """Per sample, with probability ``share``, the run-time region of its person (joint box of
    the labelled joints, grown 1.15-1.5×, shifted up to 6 % of the box, 1 cell margin), else
    all-zero cells meaning "the masks decide" (see :func:`_with_regions`); None if no sample
    drew a region."""
    n = size // 16
    out = np.zeros((len(chunk), 1, n, n), np.float32)
    drawn = False
    for i, s in enumerate(chunk):
        if rng.random() >= share:
            continue
        pts = s.joints_px[s.weight > 0] if (s.weight > 0).sum() >= 2 else s.joints_px
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        shift = rng.uniform(-0.06, 0.06, 2) * np.array([x1 - x0, y1 - y0])
        box = np.array([x0, y0, x1, y1]) + np.tile(shift, 2)
        out[i, 0] = cells_from_box(box, size, REGION_MARGIN, rng.uniform(1.15, 1.5))
        drawn = True
    return torch.from_numpy(out) if drawn else None


def _with_regions(net: PoseNetwork, x: Tensor, regions: Tensor | None) -> Tensor | None:
    """The cells each sample executes: its drawn region, or (all-zero rows) what the masks
    decide — the locator's cells when there is one. None = every sample by its masks."""
    if regions is None:
        return None
    empty = regions.flatten(1).sum(1) == 0
    if not bool(empty.any()):
        return regions
    loc = net.backbone.locator
    if loc is None:
        raise ValueError("region_share < 1 with mask units needs per-sample masks: use the "
                         "locator (mask_source: locator) or region_share 0 / 1")
    fill = loc.cells(x, net.backbone.locator_margin)
    return torch.where(empty.view(-1, 1, 1, 1), fill, regions)


def sparse_features_key(net: PoseNetwork, masks_state: dict[str, Tensor], region_share: float
                        ) -> np.ndarray:
    """What the gated features depend on besides the frozen weights: the mask units, locator
    and fills (``masks_state``), the share of samples gated by a region, and whether a region
    reaches the stride-32 grid with a one-cell ring (``Backbone.region_ring``) — a cache made
    under another rule for regions would train the sparse head on masks the node never
    hands it."""
    return np.concatenate([v.flatten().float().numpy() for v in masks_state.values()]
                          + [np.array([region_share, float(net.backbone.region_ring)],
                                      np.float32)])


def with_dense_rows(sparse: np.ndarray, dense: np.ndarray, share: float, seed: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The sparse head's features with a random ``share`` of the samples' rows replaced by their
    dense features (see ``RecipeConfig.dense_share``), in place; and which rows were."""
    if sparse.shape != dense.shape:
        raise ValueError(f"sparse features {sparse.shape} and dense {dense.shape} differ")
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"dense_share must be in [0, 1], got {share}")
    rows = np.random.default_rng(seed + 2).random(len(sparse)) < share
    sparse[rows] = dense[rows]
    return sparse, rows


def extract_features(net: PoseNetwork, samples: list[TeacherSample], cfg: RecipeConfig,
                     with_cells: bool, batch: int = 16, region_share: float = 0.0
                     ) -> dict[str, Any]:
    """One frozen forward per sample: neck output (fp16); with ``with_cells`` (the dense pass)
    also MoveNet's heatmaps on the shared joints (uint8 sigmoid: the distillation targets, taken
    from the dense network only) and per gated block a balanced sample of input cells with their
    labels."""
    rng = np.random.default_rng(cfg.seed + 1)
    blocks = net.gated_blocks()
    captured: dict[int, Tensor] = {}
    hooks = [b.register_forward_pre_hook(lambda m, a, i=i: captured.__setitem__(i, a[0]))
             for i, b in enumerate(blocks)]
    feats, distill = [], []
    cells: list[dict[str, list[np.ndarray]]] = [{"x": [], "y": [], "pos": [], "neg": []}
                                                for _ in blocks]
    t0 = time.perf_counter()
    try:
        with torch.no_grad():
            for start in range(0, len(samples), batch):
                chunk = samples[start:start + batch]
                x = _to_input(np.stack([s.image for s in chunk]), net)
                regions = (training_regions(chunk, x.shape[-1], region_share, rng)
                           if region_share > 0 else None)  # fmt: skip
                f, skips, _ = net.backbone(x, _with_regions(net, x, regions))
                y = net.neck(f, skips)
                feats.append(y.half().contiguous().numpy())
                if with_cells:
                    heat = torch.sigmoid(net.movenet(y).heatmap[:, _COCO])
                    distill.append((heat * 255).round().to(torch.uint8).numpy())
                    person = torch.from_numpy(np.stack([s.person for s in chunk]))[:, None]
                    _sample_cells(blocks, captured, person, cfg, rng, cells)
                if start // batch % 20 == 0:
                    LOG.info("features %d/%d (%.0f s)", start + len(chunk), len(samples),
                             time.perf_counter() - t0)
    finally:
        for h in hooks:
            h.remove()
    out: dict[str, Any] = {"feats": np.concatenate(feats), "seconds": time.perf_counter() - t0}
    if with_cells:
        out["distill"] = np.concatenate(distill)
        out["cells"] = [{k: np.concatenate(v) for k, v in c.items()} for c in cells]
    return out


def _sample_cells(blocks: list[Any], captured: dict[int, Tensor], person: Tensor,
                  cfg: RecipeConfig, rng: np.random.Generator,
                  cells: list[dict[str, list[np.ndarray]]]) -> None:
    k = cfg.mask_cells
    for i, block in enumerate(blocks):
        s = block.mask_unit.conv.stride[0]
        inp = captured[i][:, :, ::s, ::s]  # what the 1x1 (strided) mask conv reads
        b, c, h, w = inp.shape
        lab = cell_targets(person, (h, w), cfg.mask_margin).flatten(1).numpy() > 0
        flat = inp.float().flatten(2).numpy()  # (B, C, h*w)
        for n in range(b):
            pos, neg = np.flatnonzero(lab[n]), np.flatnonzero(~lab[n])
            pick = []
            if pos.size:
                pick.append(rng.choice(pos, k))
            if neg.size:
                pick.append(rng.choice(neg, k if pos.size else 2 * k))
            idx = np.concatenate(pick)
            cells[i]["x"].append(flat[n][:, idx].T.astype(np.float16))
            cells[i]["y"].append(lab[n][idx])
            cells[i]["pos"].append(np.full(idx.size, pos.size, np.int32))
            cells[i]["neg"].append(np.full(idx.size, neg.size, np.int32))


# -- masks --------------------------------------------------------------------------------------
def fit_mask_unit(x: np.ndarray, y: np.ndarray, pos: np.ndarray, neg: np.ndarray,
                  recall: float, steps: int = 300) -> tuple[np.ndarray, float, dict[str, float]]:
    """Logistic regression of the person cells on the block input (standardised, L-BFGS), then
    the bias shifted so that ``recall`` of the person cells score ≥ 0. Returns the 1×1 conv's
    weight (C,), bias, and the training recall and estimated density (share of all cells on:
    person cells × recall + background cells × false-positive rate, from the balanced sample's
    per-image counts)."""
    xt = torch.from_numpy(x.astype(np.float32))
    yt = torch.from_numpy(y.astype(np.float32))
    mu, sd = xt.mean(0), xt.std(0).clamp_min(1e-3)
    z = (xt - mu) / sd
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(z @ w + b, yt) + 1e-4 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        score = (z @ w + b).numpy()
    on_person = score[y]
    shift = -float(np.quantile(on_person, 1.0 - recall)) if on_person.size else 0.0
    with torch.no_grad():
        weight = (w / sd).numpy()
        bias = float(b - (w * mu / sd).sum()) + shift
    fired = score + shift >= 0
    tp = fired[y].mean() if y.any() else 1.0
    fp = fired[~y].mean() if (~y).any() else 0.0
    share_pos = float(np.mean(pos / np.maximum(pos + neg, 1)))
    return weight, bias, {"recall": float(tp), "false_positive": float(fp),
                          "density": share_pos * float(tp) + (1 - share_pos) * float(fp)}


def fit_masks(net: PoseNetwork, cells: list[dict[str, np.ndarray]], recall: float
              ) -> list[dict[str, float]]:
    report = []
    for i, (block, c) in enumerate(zip(net.gated_blocks(), cells, strict=True)):
        weight, bias, stats = fit_mask_unit(c["x"], c["y"], c["pos"], c["neg"], recall)
        with torch.no_grad():
            block.mask_unit.conv.weight.copy_(torch.from_numpy(weight).view_as(
                block.mask_unit.conv.weight))
            block.mask_unit.conv.bias.fill_(bias)
        report.append({"block": i, **{k: round(v, 4) for k, v in stats.items()}})
        LOG.info("mask %d: recall %.3f, background on %.3f, est. density %.3f", i,
                 stats["recall"], stats["false_positive"], stats["density"])
    return report


# -- head ---------------------------------------------------------------------------------------
@dataclass
class Labels:
    """Per-sample label tensors, stacked."""

    joints: Tensor  # (N, 17, 2) in [0, 1] of the input
    weight: Tensor  # (N, 17)
    z: Tensor  # (N, 17) root-relative depth / depth range, 0 where unknown
    z_weight: Tensor  # (N, 17)
    is_real: Tensor  # (N,) distillation applies (MoveNet saw a real person)


def stack_labels(samples: list[TeacherSample], size: int, depth_range_mm: float) -> Labels:
    j = np.stack([s.joints_px for s in samples]).astype(np.float32)
    depth = np.stack([s.depth_mm for s in samples]).astype(np.float32)
    known = np.isfinite(depth)
    zw = np.stack([s.depth_weight for s in samples]).astype(np.float32)[:, None] * known
    w = np.stack([s.weight for s in samples]).astype(np.float32)
    return Labels(
        joints=torch.from_numpy((j + 0.5) / size),
        weight=torch.from_numpy(w),
        z=torch.from_numpy(np.clip(np.nan_to_num(depth) / depth_range_mm, -1, 1)),
        z_weight=torch.from_numpy(zw * (w > 0)),
        is_real=torch.tensor([s.kind != "synthetic" for s in samples]),
    )


def head_loss(net: PoseNetwork, feats: Tensor, distill_u8: Tensor, lab: Labels, idx: Tensor,
              cfg: RecipeConfig) -> tuple[Tensor, dict[str, float]]:
    """L = α·(L_HEM + L_2D) + L_2D,xy + λ·L_z + β·L_distill on one batch of cached features."""
    heat, trip, joints, depth = net.head_from_neck(feats, [])
    w, zw = lab.weight[idx], lab.z_weight[idx]
    has_z = (zw.sum(1, keepdim=True) > 0).float()
    t = build_targets(lab.joints[idx], lab.z[idx], w, heat.shape[-1])
    l_hem = hem_loss(trip, t.triplets, t.triplet_weight * has_z[..., None, None])
    l_2d = heatmap_loss(heat, t.heatmaps, t.joint_weight)
    xy = (joints[..., :2] - t.joints[..., :2]).abs().sum(-1)
    l_xy = (t.joint_weight * xy).sum() / t.joint_weight.sum().clamp_min(1e-6)
    l_z = location_depth_loss(depth, t.heatmaps, t.joints[..., 2], zw)
    real = lab.is_real[idx]
    l_kd = heat.new_zeros(())
    if bool(real.any()):
        target = distill_u8[real].float() / 255.0
        l_kd = heatmap_loss(heat[real][:, _OURS], target, torch.ones(target.shape[:2]))
    total = cfg.alpha_int * (l_hem + l_2d) + l_xy + cfg.lambda_z * l_z + cfg.distill * l_kd
    parts = {"total": total, "hem": l_hem, "2d": l_2d, "xy": l_xy, "z": l_z, "distill": l_kd}
    return total, {k: float(v.detach()) for k, v in parts.items()}


def train_head(net: PoseNetwork, feats: np.ndarray, distill: np.ndarray, lab: Labels,
               cfg: RecipeConfig, epochs: int, lr: float) -> list[dict[str, float]]:
    """AdamW with cosine decay over the cached features; returns per-epoch mean losses."""
    params = [p for m in (net.head_pre, net.head) for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    n = feats.shape[0]
    steps = epochs * math.ceil(n / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    gen = torch.Generator().manual_seed(cfg.seed)
    history = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=gen)
        sums: dict[str, float] = {}
        for k in range(0, n, cfg.batch_size):
            idx = order[k:k + cfg.batch_size]
            f = torch.from_numpy(feats[idx.numpy()]).float()
            d = torch.from_numpy(distill[idx.numpy()])
            loss, parts = head_loss(net, f, d, lab, idx, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            sched.step()
            for key, v in parts.items():
                sums[key] = sums.get(key, 0.0) + v * len(idx)
        row = {k: round(v / n, 5) for k, v in sums.items()}
        row.update(epoch=epoch + 1, seconds=round(time.perf_counter() - t0, 1))
        history.append(row)
        LOG.info("head epoch %d/%d: %s", epoch + 1, epochs, row)
    for p in params:
        p.requires_grad_(False)
    return history


# -- orchestration ------------------------------------------------------------------------------
def _as_saved(net: PoseNetwork, cfg: RecipeConfig, dense: bool) -> PoseNetwork:
    """The network a checkpoint holds: the dense one is ``net`` without mask units (so the
    node reads its crops whole and as strips), the sparse one ``net`` itself; both read their
    joints with the recipe's ``person_prior``. The lifter stage learns the 2D of this network,
    the 2D the node will give its lifter, not of the gated one the heads trained in."""
    read = replace(net.cfg, person_prior=cfg.person_prior)
    if dense:
        out = PoseNetwork(replace(read, gated=False, gate_strided=False, mask_source="units"))
        out.load_state_dict({k: v for k, v in net.state_dict().items()
                             if ".mask_unit." not in k and ".locator." not in k
                             and not k.endswith(".skip_fill")}, strict=True)
    else:
        out = PoseNetwork(read)
        out.load_state_dict(net.state_dict())
    return out.eval()


def _save(net: PoseNetwork, path: Path, meta: dict[str, Any]) -> None:
    """fp16 weights (``_as_saved``'s network with its lifter)."""
    save_checkpoint(path, copy.deepcopy(net).half(), meta=meta)


def _state_digest(net: PoseNetwork) -> str:
    """SHA-256 of a network's weights (a lifter trained on its 2D is stale when they change)."""
    h = hashlib.sha256()
    for k, v in sorted(net.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def lifter_stage(cfg: RecipeConfig, report: dict[str, Any], depth_range_mm: float,
                 net: PoseNetwork | None = None, variant: str = "dense") -> PoseLifter | None:
    """Stage 6: the depth lifter the checkpoints carry (None with ``lifter_steps`` 0): one
    for both, or with ``lifter_network_2d_share`` > 0 one per ``variant``, trained partly on
    ``net``'s own 2D (report key ``lifter_<variant>``).

    Cached in the run folder with the settings it was trained with and the real skeletons
    per source it saw (``lifter[_<variant>].json``); any change retrains it (a minute, plus
    a few for the network's 2D)."""
    own = cfg.lifter_network_2d_share > 0
    name = f"lifter_{variant}" if own else "lifter"
    # a record of the other arrangement (one shared lifter / one per checkpoint) is not ours
    for stale in (("lifter",) if own else ("lifter_dense", "lifter_sparse")):
        report.pop(stale, None)
    if cfg.lifter_steps <= 0:
        report.pop(name, None)
        return None
    if not 0 <= cfg.lifter_network_2d_share < 1:
        raise ValueError("lifter_network_2d_share must be in [0, 1), got "
                         f"{cfg.lifter_network_2d_share}")
    if own and net is None:
        raise ValueError("lifter_network_2d_share > 0 needs the network whose 2D it learns")
    rd = cfg.run_dir
    rd.mkdir(parents=True, exist_ok=True)
    weights, key_file = rd / f"{name}.pt", rd / f"{name}.json"
    spec = LifterTraining(steps=cfg.lifter_steps, seed=cfg.seed)
    # what the label cache holds, not only where: a teacher added later (the ``people`` of the
    # two-person trial) changes the lifter's real skeletons, and so must retrain it
    _, real_counts = real_poses(load_corpus(Path(cfg.labels)))
    if cfg.lifter_weighting not in LIFTER_WEIGHTINGS:
        raise ValueError(f"lifter_weighting must be one of {LIFTER_WEIGHTINGS}, got "
                         f"{cfg.lifter_weighting!r}")
    key = {**asdict(spec), "views_per_pose": cfg.lifter_views_per_pose,
           "weighting": cfg.lifter_weighting, "midpoint_torso": cfg.midpoint_torso,
           "synthetic": cfg.synthetic, "labels": cfg.labels, "real_poses": real_counts}
    if own:
        draws = draws_for(net, CropDraws())  # type: ignore[arg-type]
        key.update(network_2d_share=cfg.lifter_network_2d_share,
                   network_2d_draws=json.loads(json.dumps(asdict(draws))),
                   network=_state_digest(net),  # type: ignore[arg-type]
                   person_prior=net.cfg.person_prior)  # type: ignore[union-attr]
    if weights.is_file() and key_file.is_file() and json.loads(key_file.read_text()) == key:
        cached = PoseLifter(spec.hidden)
        cached.load_state_dict(torch.load(weights, weights_only=True))
        return cached.eval()
    synthetic = Path(cfg.synthetic) / "train" if cfg.synthetic else None
    t0 = time.perf_counter()
    xy, z_mm, sources = training_pairs(synthetic, Path(cfg.labels),
                                       cfg.lifter_views_per_pose, cfg.seed,
                                       cfg.midpoint_torso)
    draw = trust_weights(sources) if cfg.lifter_weighting == "trust" else None
    if own:
        xy, z_mm, draw = with_network_2d(net, Path(cfg.labels), xy, z_mm, draw,  # type: ignore[arg-type]
                                         sources, cfg.lifter_network_2d_share, CropDraws(),
                                         cfg.seed, cfg.midpoint_torso)
    lifter = train_lifter(xy, z_mm / depth_range_mm, spec, draw)
    report[name] = {**sources, "train_pairs": len(xy), "steps": spec.steps,
                    "weighting": cfg.lifter_weighting,
                    "seconds": round(time.perf_counter() - t0, 1)}
    torch.save(lifter.state_dict(), weights)
    key_file.write_text(json.dumps(key) + "\n")
    return lifter


def _with_lifter(net: PoseNetwork, lifter: PoseLifter | None, cfg: RecipeConfig
                 ) -> PoseNetwork:
    """``net`` with the lifter and the body-size prior of its training skeletons."""
    if lifter is None:
        return net
    synthetic = Path(cfg.synthetic) / "train" if cfg.synthetic else None
    bones = reference_bone_lengths(synthetic, Path(cfg.labels), cfg.midpoint_torso)
    return attach(net, lifter, lifter.hidden, cfg.midpoint_torso, bones)


def _head_state(net: PoseNetwork) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()
            if k.startswith(("head_pre.", "head."))}


def run(cfg: RecipeConfig, argv: list[str]) -> dict[str, Any]:
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rd = cfg.run_dir
    rd.mkdir(parents=True, exist_ok=True)
    report_path = rd / "recipe.json"
    report: dict[str, Any] = json.loads(report_path.read_text()) if report_path.is_file() else {}
    report.update(config=asdict(cfg), command="./run train " + " ".join(map(shlex.quote, argv)),
                  machine=machine_info())

    def save_report() -> None:
        report_path.write_text(json.dumps(report, indent=1) + "\n")

    net, init = build_network(cfg)
    report["init_from"] = init
    size = net.cfg.input_size
    t0 = time.perf_counter()
    samples, desc = build_samples(cfg, size)
    report["samples"] = {**desc, "seconds": round(time.perf_counter() - t0, 1)}
    LOG.info("samples: %s", desc)
    lab = stack_labels(samples, size, net.cfg.depth_range_mm)

    dense_cache = rd / "dense_features.npz"
    if not dense_cache.is_file():
        out = extract_features(net, samples, cfg, with_cells=True)
        np.savez(dense_cache, feats=out["feats"], distill=out["distill"])
        with open(rd / "mask_cells.npz", "wb") as fh:
            np.savez(fh, **{f"{k}{i}": v for i, c in enumerate(out["cells"])
                            for k, v in c.items()})
        report["features_seconds"] = round(out["seconds"], 1)
        save_report()
    z = np.load(dense_cache)
    feats, distill = z["feats"], z["distill"]
    if cfg.mask_source == "units":  # the locator's network keeps its units all-on
        cz = np.load(rd / "mask_cells.npz")
        cells = [{k: cz[f"{k}{i}"] for k in ("x", "y", "pos", "neg")}
                 for i in range(len(net.gated_blocks()))]
        report["masks"] = fit_masks(net, cells, cfg.mask_recall)
        del cells, cz
    else:
        report.pop("masks", None)  # a unit fit of an earlier run in this folder is not ours
    masks_state = {k: v.clone() for k, v in net.state_dict().items() if ".mask_unit." in k}
    save_report()

    meta_base = {"recipe": RECIPE, "config_yaml": yaml.safe_dump(asdict(cfg), sort_keys=False),
                 "init_from": json.dumps(init), "data": json.dumps(desc),
                 "command": report["command"], "torch": torch.__version__,
                 "saved_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    head_file = rd / "dense_head.pt"
    if head_file.is_file():
        net.load_state_dict(torch.load(head_file, weights_only=True), strict=False)
    else:
        init_head_from_movenet(net)
        t1 = time.perf_counter()
        report["dense_head"] = train_head(net, feats, distill, lab, cfg, cfg.epochs, cfg.lr)
        report["dense_head_seconds"] = round(time.perf_counter() - t1, 1)
        torch.save(_head_state(net), head_file)
        save_report()
    dense = _as_saved(net, cfg, dense=True)
    lifter = lifter_stage(cfg, report, net.cfg.depth_range_mm, dense, "dense")
    save_report()
    _save(_with_lifter(dense, lifter, cfg), Path(cfg.dense_out), {**meta_base, "variant": "dense"})

    net.load_state_dict(masks_state, strict=False)
    if cfg.mask_source == "locator":
        net = with_locator(net, cfg)
        locator_file = rd / "locator.pt"
        if locator_file.is_file():
            net.backbone.locator.load_state_dict(torch.load(locator_file, weights_only=True))
        else:
            report["locator"] = fit_locator(
                net.backbone.locator, np.stack([s.image for s in samples]),
                np.stack([s.person for s in samples]), lambda a: _to_input(a, net),
                cfg.locator_epochs, cfg.locator_recall, seed=cfg.seed)
            torch.save(net.backbone.locator.state_dict(), locator_file)
            save_report()
        net.backbone.locator.requires_grad_(False)
        masks_state = {k: v.clone() for k, v in net.state_dict().items()
                       if ".mask_unit." in k or ".locator." in k}
    if cfg.skip_fill:
        net, report["skip_fill"] = with_skip_fill(net, cfg)
        LOG.info("skip fill: %s", report["skip_fill"])
        save_report()
        masks_state.update({k: v.clone() for k, v in net.state_dict().items()
                            if k.endswith(".skip_fill")})
    else:
        report.pop("skip_fill", None)
    if cfg.sparse_epochs:
        sparse_cache = rd / "sparse_features.npz"
        mask_vec = sparse_features_key(net, masks_state, cfg.region_share)
        zs = np.load(sparse_cache) if sparse_cache.is_file() else None
        sparse_head = rd / "sparse_head.pt"
        if zs is None or "masks" not in zs or not np.array_equal(zs["masks"], mask_vec):
            # Features of the gated network depend on the masks: recompute when they changed,
            # and the head fine-tuned on the old ones is stale.
            out = extract_features(net, samples, cfg, with_cells=False,
                                   region_share=cfg.region_share)
            np.savez(sparse_cache, feats=out["feats"], masks=mask_vec)
            report["sparse_features_seconds"] = round(out["seconds"], 1)
            zs = np.load(sparse_cache)
            sparse_head.unlink(missing_ok=True)
        # the head also depends on how its features are mixed and how long it trained
        head_key = rd / "sparse_head.json"
        key = {"dense_share": cfg.dense_share, "sparse_epochs": cfg.sparse_epochs,
               "lr": cfg.lr}
        if not head_key.is_file() or json.loads(head_key.read_text()) != key:
            sparse_head.unlink(missing_ok=True)
        if sparse_head.is_file():
            net.load_state_dict(torch.load(sparse_head, weights_only=True), strict=False)
        else:
            sf, dense_rows = with_dense_rows(zs["feats"], feats, cfg.dense_share, cfg.seed)
            report["sparse_dense_rows"] = int(dense_rows.sum())
            t1 = time.perf_counter()
            report["sparse_head"] = train_head(net, sf, distill, lab, cfg,
                                               cfg.sparse_epochs, cfg.lr * 0.3)
            del sf
            report["sparse_head_seconds"] = round(time.perf_counter() - t1, 1)
            torch.save(_head_state(net), sparse_head)
            head_key.write_text(json.dumps(key) + "\n")
    sparse = _as_saved(net, cfg, dense=False)
    if cfg.lifter_network_2d_share > 0:  # a lifter of the sparse network's own 2D
        lifter = lifter_stage(cfg, report, net.cfg.depth_range_mm, sparse, "sparse")
        save_report()
    masks_meta = report.get("locator") if cfg.mask_source == "locator" else report["masks"]
    _save(_with_lifter(sparse, lifter, cfg), Path(cfg.sparse_out),
          {**meta_base, "variant": "sparse", "mask_source": cfg.mask_source,
           "masks": json.dumps(masks_meta)})
    report["outputs"] = {"dense": cfg.dense_out, "sparse": cfg.sparse_out}
    report["finished_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    save_report()
    return report


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="./run train", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--resume", action="store_true",
                   help="reuse the stages already in the run folder (also the default)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = RecipeConfig.from_yaml(args.config, args.set)
        run(cfg, argv)
    except (ValueError, FileNotFoundError) as exc:
        LOG.error("%s", exc)
        return 2
    return 0
