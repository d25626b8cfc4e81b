"""Train the depth lifter (``model.lifter``) and attach it to a trained network.

    python -m sparse_pose_ros.training.train_lifter --checkpoint models/pose_sparse.safetensors \
        --data data_cache/synth_v2 --real-labels data_cache/labels \
        --out models/pose_sparse.safetensors

The lifter learns root-relative depth from 2D skeletons, using 3D labels of training splits
only (no images, a minute on one core): the synthetic renders' and, with ``--real-labels``, the
real 3D skeletons of the teacher-label cache's training sources (triangulated Pose2Sim frames,
BlazePose world landmarks) seen through virtual cameras (``data.lifter_poses``). What it is fed
in training is what the image network will hand it: the true 2D joints with Gaussian noise of
up to ``--noise`` × the skeleton's radius, some left/right pairs merged onto their midpoint
(the network's answer when it cannot tell the person's front from the back), random in-plane
rotation and mirror images. With ``--real-labels``, also (``--network-2d-share``, default 0.3
of the draws) the network's own 2D on crops of the real training frames that have triangulated
3D, paired with that depth (``training.lifter_network_2d``): the mistakes it will really make.
The network's own weights are not touched; the output checkpoint is the input's plus the lifter
(``lifter_hidden`` and ``midpoint_torso`` in its config, a new model hash; half precision if
the input is) and a ``lifter`` record in its metadata
(command, steps, time, held-out numbers).

Held-out numbers written to the record and logged: MPJPE of the true 2D + lifter depth (the
lifter's own ceiling) and, on ``--eval-frames`` test images, the network's 2D with its own depth
vs with the lifter's, so the file says whether attaching it paid.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from .. import skeleton
from ..data.label_cache import load_corpus
from ..data.lifter_poses import median_bone_lengths, real_poses, virtual_views
from ..data.shards import ShardDataset
from ..data.teacher_samples import DEPTH_WEIGHT
from ..model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ..model.lifter import PoseLifter
from ..model.network import NetworkConfig, PoseNetwork
from ..pipeline.roi import DEFAULT_SIDE_FACTOR
from .batches import Collator
from .evaluation import lift_to_camera
from .lifter_network_2d import CropDraws, draws_for, network_2d_pairs, share_weights
from .metrics import mpjpe, pa_mpjpe
from .transforms import PersonCrop, Pipeline

LOG = logging.getLogger("sparse_pose_ros.train_lifter")
_FLIP = torch.tensor(skeleton.flip_permutation())
_PAIRS = torch.tensor(skeleton.FLIP_PAIRS)


#: How the lifter draws its training pairs (``--weighting``, the recipe's lifter_weighting).
WEIGHTINGS: tuple[str, ...] = ("uniform", "trust")


def skeletons_3d(ds: ShardDataset, midpoint_torso: bool = False) -> np.ndarray:
    """(N, J, 3) camera-frame mm of a shard split's skeletons, with ``midpoint_torso`` in the
    real labels' torso definition (pelvis, thorax, spine as ``skeleton.MIDPOINT_JOINTS``)."""
    j3 = np.asarray(ds.labels["joints_3d"], np.float64)
    if not midpoint_torso:
        return j3
    return np.einsum("ij,njd->nid", np.asarray(skeleton.midpoint_matrix()), j3)


def labels(ds: ShardDataset, midpoint_torso: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, J, 2) 2D joints in pixels and (N, J) root-relative depth in mm of a shard split.

    ``midpoint_torso``: the renders' pelvis, thorax and spine (SMPL-X joint centres) replaced
    by the mid-points the real labels use (``skeleton.MIDPOINT_JOINTS``), in 3D, then
    projected with each frame's K — the definition a ``midpoint_torso`` network outputs."""
    if not midpoint_torso:
        j2 = torch.as_tensor(np.asarray(ds.labels["joints_2d"], np.float32))
        j3 = torch.as_tensor(np.asarray(ds.labels["joints_3d"], np.float32))
        return j2, j3[..., 2] - j3[:, skeleton.ROOT : skeleton.ROOT + 1, 2]
    j3 = skeletons_3d(ds, midpoint_torso=True)
    cam = np.einsum("nij,nkj->nki", np.asarray(ds.labels["K"], np.float64), j3)
    j2 = cam[..., :2] / cam[..., 2:]
    z = j3[..., 2] - j3[:, skeleton.ROOT : skeleton.ROOT + 1, 2]
    return torch.as_tensor(j2, dtype=torch.float32), torch.as_tensor(z, dtype=torch.float32)


def real_pairs(labels_root: Path, per_pose: int, seed: int
               ) -> tuple[torch.Tensor, torch.Tensor, dict[str, int]]:
    """(M, J, 2) pixel joints and (M, J) root-relative depth in mm from the label cache's
    training-split 3D skeletons (``data.lifter_poses``), and the pose count per source."""
    if not labels_root.is_dir():
        raise ValueError(f"no teacher-label cache at {labels_root}: run ./run label first")
    poses, counts = real_poses(load_corpus(labels_root))
    if not len(poses):
        raise ValueError(f"{labels_root} holds no 3D skeleton of a training-split source")
    xy, z = virtual_views(poses, per_pose, np.random.default_rng(seed))
    return (torch.as_tensor(xy, dtype=torch.float32),
            torch.as_tensor(z * 1000.0, dtype=torch.float32), counts)


def reference_bone_lengths(synthetic_train: Path | None, labels_root: Path | None,
                           midpoint_torso: bool = False) -> tuple[float, ...]:
    """Median bone lengths (mm, ``skeleton.BONES`` order) of the skeletons the lifter learns
    from, for the network's ``bone_lengths_mm`` (the runtime's body-size prior,
    ``pipeline.lift``): the label cache's real training skeletons where it has any — their
    joints are the teacher labels' definitions, which the network is trained to output —
    else the synthetic training renders' (in the ``midpoint_torso`` definition if asked)."""
    if labels_root is not None:
        poses, _ = real_poses(load_corpus(labels_root))
        if len(poses):
            return tuple(float(v) * 1000.0 for v in median_bone_lengths(poses))
    if synthetic_train is None:
        raise ValueError("bone lengths need a label cache with real 3D skeletons or synthetic "
                         "shards")
    j3 = skeletons_3d(ShardDataset(synthetic_train), midpoint_torso)
    return tuple(float(v) for v in median_bone_lengths(j3))


def augment(xy: torch.Tensor, z: torch.Tensor, gen: torch.Generator, noise: float,
            merge_prob: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of the lifter's training inputs (see the module docstring)."""
    b = xy.shape[0]
    flip = torch.rand(b, generator=gen) < 0.5
    xy = torch.where(flip[:, None, None], xy[:, _FLIP] * torch.tensor([-1.0, 1.0]), xy)
    z = torch.where(flip[:, None], z[:, _FLIP], z)
    angle = (torch.rand(b, generator=gen) - 0.5) * np.deg2rad(60.0)
    c, s = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # (B, 2, 2)
    rel = xy - xy[:, :1]
    rel = rel @ rot.transpose(1, 2)
    radius = rel.pow(2).sum(-1).mean(-1).sqrt()[:, None, None]
    sigma = torch.rand(b, 1, 1, generator=gen) * noise
    rel = rel + torch.randn(rel.shape, generator=gen) * sigma * radius
    merge = torch.rand(b, len(_PAIRS), generator=gen) < merge_prob
    for k, (left, right) in enumerate(_PAIRS.tolist()):
        mid = (rel[:, left] + rel[:, right]) / 2
        m = merge[:, k, None]
        rel[:, left] = torch.where(m, mid, rel[:, left])
        rel[:, right] = torch.where(m, mid, rel[:, right])
    return rel, z


@dataclass(frozen=True)
class LifterTraining:
    """How the lifter is trained (the CLI's options of the same names)."""

    steps: int = 6000
    batch_size: int = 256
    lr: float = 2e-3
    hidden: int = 512
    noise: float = 0.1
    merge_prob: float = 0.15
    seed: int = 0


def training_pairs(synthetic_train: Path | None, labels_root: Path | None,
                   views_per_pose: int, seed: int, midpoint_torso: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """(N, J, 2) pixel joints, (N, J) root-relative depth in mm and a record of where they
    came from: the synthetic training split's labels (with ``midpoint_torso``, in the real
    labels' torso definition, see :func:`labels`) and/or the label cache's real 3D skeletons
    in ``views_per_pose`` virtual views (already in that definition)."""
    xys, zs, record = [], [], {}
    if synthetic_train is not None:
        xy, z = labels(ShardDataset(synthetic_train), midpoint_torso)
        xys.append(xy)
        zs.append(z)
        record["synthetic_frames"] = len(xy)
        record["synthetic_torso"] = "midpoints" if midpoint_torso else "smplx_joints"
    if labels_root is not None:
        xy, z, counts = real_pairs(labels_root, views_per_pose, seed)
        xys.append(xy)
        zs.append(z)
        record.update(real_poses=counts, views_per_real_pose=views_per_pose)
    if not xys:
        raise ValueError("the lifter needs synthetic shards or a label cache")
    return torch.cat(xys), torch.cat(zs), record


def trust_weights(record: dict[str, Any]) -> torch.Tensor:
    """(N,) sampling weight of every pair :func:`training_pairs` returned with ``record``, by
    where its depth came from: the trust the recipe gives depth labels
    (``data.teacher_samples.DEPTH_WEIGHT``: renders and triangulated skeletons 1, BlazePose's
    single-view world landmarks 0.3). Why: the triangulated skeletons are the only real metric
    3D close to truth, and uniform sampling let ~2× as many BlazePose pairs outvote them."""
    parts = [torch.full((int(record.get("synthetic_frames", 0)),), DEPTH_WEIGHT["synthetic"])]
    for key, n in record.get("real_poses", {}).items():
        kind = "blazepose_world" if key.endswith(":blazepose_world") else "triangulated"
        parts.append(torch.full((int(n) * int(record["views_per_real_pose"]),),
                                DEPTH_WEIGHT[kind]))  # fmt: skip
    return torch.cat(parts)


#: Default share of the lifter's draws that are the network's own 2D (``--network-2d-share``):
#: 0.1 gave 80 mm at crops 192 on the held-out trial, 0.3 and 0.5 both 77 (docs/network.md §5e).
NETWORK_2D_SHARE = 0.3


def with_network_2d(net: PoseNetwork, labels_root: Path, xy: torch.Tensor, z_mm: torch.Tensor,
                    weights: torch.Tensor | None, record: dict[str, Any], share: float,
                    draws: CropDraws, seed: int, midpoint_torso: bool
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``xy``, ``z_mm`` and draw ``weights`` (None = uniform) with the network's own-2D pairs
    (``training.lifter_network_2d``) appended as ``share`` of the draws; ``record`` gains
    what was added. Unchanged when the label cache has no calibrated training views."""
    t0 = time.perf_counter()
    draws = draws_for(net, draws)  # the crops the node reads this network through
    oxy, oz, counts = network_2d_pairs(net, load_corpus(labels_root), draws, seed,
                                       midpoint_torso)
    record["network_2d"] = {"pairs": len(oxy), "persons_x_views": counts, "share": share,
                            "sizes": list(draws.sizes), "crops_per_size": draws.per_size,
                            "strip_widths": list(draws.strip_widths),
                            "strip_margin": draws.strip_margin,
                            "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    LOG.info("network's own 2D: %d pairs from %s in %.0f s", len(oxy), counts,
             time.perf_counter() - t0)
    if not len(oxy):
        return xy, z_mm, weights
    base = weights if weights is not None else torch.ones(len(xy))
    return (torch.cat([xy, oxy]), torch.cat([z_mm, oz]),
            share_weights(base, len(oxy), share))


def train(xy: torch.Tensor, z: torch.Tensor, args: LifterTraining | argparse.Namespace,
          weights: torch.Tensor | None = None) -> PoseLifter:
    """Fit a lifter on (N, J, 2) pixel joints and (N, J) depth in depth-range units; batches
    drawn uniformly, or in proportion to ``weights`` (N,) (:func:`trust_weights`)."""
    if weights is not None and (weights.shape != (len(xy),) or not bool((weights >= 0).all())
                                or float(weights.sum()) <= 0):  # fmt: skip
        raise ValueError(f"weights must be {len(xy)} non-negative numbers, not all 0")
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    lifter = PoseLifter(args.hidden).train()
    opt = torch.optim.AdamW(lifter.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps)
    for step in range(args.steps):
        if weights is None:
            idx = torch.randint(0, len(xy), (args.batch_size,), generator=gen)
        else:
            idx = torch.multinomial(weights, args.batch_size, replacement=True, generator=gen)
        inp, target = augment(xy[idx], z[idx], gen, args.noise, args.merge_prob)
        loss = (lifter(inp) - target).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % max(1, args.steps // 10) == 0:
            LOG.info("step %d/%d: L1 %.4f", step + 1, args.steps, float(loss.detach()))
    return lifter.eval()


def attach(net: PoseNetwork, lifter: PoseLifter, hidden: int,
           midpoint_torso: bool = False, bone_lengths_mm: tuple[float, ...] = ()
           ) -> PoseNetwork:
    """A copy of ``net`` whose config and weights include ``lifter`` (and, for a lifter
    trained on that definition, ``midpoint_torso``; ``bone_lengths_mm``: the body-size prior
    of its skeletons, :func:`reference_bone_lengths`, empty = Human3.6M's)."""
    cfg = NetworkConfig.from_dict({**net.cfg.to_dict(), "lifter_hidden": hidden,
                                   "midpoint_torso": bool(midpoint_torso),
                                   "bone_lengths_mm": tuple(bone_lengths_mm)})
    out = PoseNetwork(cfg)
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("lifter.")}
    state.update({f"lifter.{k}": v for k, v in lifter.state_dict().items()})
    out.load_state_dict(state, strict=True)
    return out.eval()


@torch.no_grad()
def held_out(net: PoseNetwork, lifter: PoseLifter, root: Path, frames: int,
             midpoint_torso: bool = False) -> dict[str, Any]:
    """The lifter's ceiling (true 2D) on the whole test split, and the network's 2D with its
    own depth vs the lifter's on ``frames`` test images (full frame and ground-truth box).
    With ``midpoint_torso`` every skeleton (truth, the network's, the lifter's) is scored in
    that torso definition, the one the attached network outputs."""
    cfg = net.cfg
    full = attach(net, lifter, lifter.hidden, midpoint_torso)
    m = (torch.tensor(skeleton.midpoint_matrix()) if midpoint_torso
         else torch.eye(skeleton.NUM_JOINTS))
    ds = ShardDataset(root)
    xy, _ = labels(ds, midpoint_torso)
    gt3 = m @ torch.as_tensor(np.asarray(ds.labels["joints_3d"], np.float32))
    frame = int(ds.sample(0)["image"].shape[1])  # the labels' pixel grid (square frames)
    true_2d = torch.cat([(xy + 0.5) / frame, lifter(xy).unsqueeze(-1)], dim=-1)
    pred = lift_to_camera(full.refine_joints(true_2d),
                          torch.as_tensor(np.asarray(ds.labels["K"], np.float32)),
                          gt3[:, skeleton.ROOT, 2], frame, cfg.depth_range_mm).double().numpy()
    gt3 = gt3.double().numpy()
    out: dict[str, Any] = {
        "true_2d_frames": len(gt3),
        "true_2d_mpjpe_mm": mpjpe(pred, gt3),
        "true_2d_pa_mpjpe_mm": pa_mpjpe(pred, gt3),
        "torso": "midpoints" if midpoint_torso else "as labelled",
    }
    if frames <= 0:
        return out
    size = cfg.input_size
    collate = Collator(size, cfg.depth_range_mm, cfg.input_mean, cfg.input_std)
    for name, crop in (("full_frame", None), ("gt_box", PersonCrop(DEFAULT_SIDE_FACTOR))):
        subset = Subset(ShardDataset(root, transform=Pipeline(size, crop)),
                        range(min(frames, len(ds))))  # fmt: skip
        own, lifted, truth = [], [], []
        for batch in DataLoader(subset, batch_size=32, collate_fn=collate):
            joints = net(batch.images).joints.float()
            truth_mm = m @ batch.joints_cam_mm
            root_z = truth_mm[:, 0, 2]
            own.append(lift_to_camera(m @ joints, batch.intrinsics, root_z, size,
                                      cfg.depth_range_mm).numpy())  # fmt: skip
            lifted.append(lift_to_camera(full.refine_joints(joints), batch.intrinsics, root_z,
                                         size, cfg.depth_range_mm).numpy())  # fmt: skip
            truth.append(truth_mm.numpy())
        a, b, g = (np.concatenate(v) for v in (own, lifted, truth))
        out[name] = {"frames": len(g), "network_depth_mpjpe_mm": mpjpe(a, g),
                     "lifter_depth_mpjpe_mm": mpjpe(b, g),
                     "network_depth_pa_mpjpe_mm": pa_mpjpe(a, g),
                     "lifter_depth_pa_mpjpe_mm": pa_mpjpe(b, g)}  # fmt: skip
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sparse_pose_ros.training.train_lifter",
                                description=__doc__.split("\n\n")[0])  # fmt: skip
    p.add_argument("--checkpoint", required=True, help="trained network (.safetensors)")
    p.add_argument("--data", default="data_cache/synth_v1", help="synthetic root (train/test)")
    p.add_argument("--out", required=True, help="output checkpoint (may equal --checkpoint)")
    d = LifterTraining()
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--hidden", type=int, default=d.hidden)
    p.add_argument("--noise", type=float, default=d.noise,
                   help="max 2D noise, fraction of the skeleton's RMS radius")
    p.add_argument("--merge-prob", type=float, default=d.merge_prob,
                   help="chance per left/right pair of merging it onto its midpoint")
    p.add_argument("--real-labels", default=None,
                   help="teacher-label cache: add its training sources' real 3D skeletons")
    p.add_argument("--midpoint-torso", action=argparse.BooleanOptionalAction, default=True,
                   help="train on, and output, the real labels' torso definition (pelvis, "
                        "thorax, spine as mid-points; NetworkConfig.midpoint_torso)")
    p.add_argument("--weighting", choices=WEIGHTINGS, default="uniform",
                   help="how often each pair is drawn: uniformly, or by the trust in its depth "
                        "(renders and triangulated 1, BlazePose world 0.3; trust_weights)")
    p.add_argument("--bone-lengths", choices=("training", "h36m"), default="training",
                   help="body-size prior the runtime fits the root depth with: the median bones "
                        "of the training skeletons (the labels' joint definitions; default) or "
                        "Human3.6M's means (the fit's built-in default)")
    p.add_argument("--network-2d-share", type=float, default=NETWORK_2D_SHARE,
                   help="with --real-labels: share of the draws that are the network's own 2D "
                        "on crops of the real training frames with triangulated 3D (0 = none)")
    p.add_argument("--network-2d-sizes", type=int, nargs="+", default=list(CropDraws().sizes),
                   help="crop sizes (px) the network's own 2D is taken at (a gated network: "
                        "its own input size only, with as many crops per person in all; "
                        "lifter_network_2d.draws_for)")
    p.add_argument("--network-2d-crops", type=int, default=CropDraws().per_size,
                   help="jittered crops per person, view and size")
    p.add_argument("--network-2d-strips", type=int, nargs="*",
                   default=list(CropDraws().strip_widths),
                   help="strip widths (px) a crop is also read at where the person fits, as "
                        "the node's crop_input_widths (none: squares only)")
    p.add_argument("--network-2d-strip-margin", type=float, default=CropDraws().strip_margin,
                   help="the node's strip_margin those strips are chosen with")
    p.add_argument("--views-per-pose", type=int, default=24,
                   help="virtual cameras per real skeleton (with --real-labels)")
    p.add_argument("--eval-frames", type=int, default=500, help="test images scored (0 = none)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=d.seed)
    args = p.parse_args(argv)
    if min(args.steps, args.batch_size, args.hidden, args.views_per_pose) <= 0 or args.lr <= 0:
        p.error("--steps, --batch-size, --hidden, --views-per-pose and --lr must be > 0")
    if not 0 <= args.noise <= 1 or not 0 <= args.merge_prob <= 1:
        p.error("--noise and --merge-prob must be in [0, 1]")
    if not 0 <= args.network_2d_share < 1:
        p.error("--network-2d-share must be in [0, 1)")
    try:  # checked here, used by main
        args.network_2d_draws = CropDraws(sizes=tuple(args.network_2d_sizes),
                                          per_size=args.network_2d_crops,
                                          strip_widths=tuple(args.network_2d_strips),
                                          strip_margin=args.network_2d_strip_margin)
    except ValueError as exc:
        p.error(f"--network-2d-sizes / --network-2d-crops / --network-2d-strips / "
                f"--network-2d-strip-margin: {exc}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    argv_used = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    torch.set_num_threads(args.threads)
    root = Path(args.data)
    try:
        net, info = load_checkpoint(args.checkpoint)
        if not (root / "train").is_dir() or not (root / "test").is_dir():
            raise ValueError(f"{root} needs train/ and test/ shard folders")
        labels_root = Path(args.real_labels) if args.real_labels else None
        xy, z_mm, sources = training_pairs(
            root / "train", labels_root, args.views_per_pose, args.seed, args.midpoint_torso)
        bones = (reference_bone_lengths(root / "train", labels_root, args.midpoint_torso)
                 if args.bone_lengths == "training" else ())
    except (CheckpointError, ValueError, OSError) as exc:
        LOG.error("%s", exc)
        return 2
    t0 = time.perf_counter()
    weights = trust_weights(sources) if args.weighting == "trust" else None
    if labels_root is not None and args.network_2d_share > 0:
        xy, z_mm, weights = with_network_2d(
            net, labels_root, xy, z_mm, weights, sources, args.network_2d_share,
            args.network_2d_draws, args.seed,
            args.midpoint_torso)
    lifter = train(xy, z_mm / net.cfg.depth_range_mm, args, weights)
    seconds = time.perf_counter() - t0
    result = held_out(net, lifter, root / "test", args.eval_frames, args.midpoint_torso)
    LOG.info("lifter trained in %.0f s; held-out: %s", seconds, result)
    meta = dict(info["meta"])
    meta["lifter"] = {
        "command": " ".join(shlex.quote(a) for a in
                            ["python", "-m", "sparse_pose_ros.training.train_lifter", *argv_used]),
        "train_frames": len(xy),
        "train_sources": sources,
        "steps": args.steps,
        "midpoint_torso": args.midpoint_torso,
        "weighting": args.weighting,
        "bone_lengths_mm": [round(v, 1) for v in bones] or "Human3.6M means",
        "train_seconds": round(seconds, 1),
        "held_out": result,
        "saved_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }  # fmt: skip
    out = attach(net, lifter, args.hidden, args.midpoint_torso, bones)
    # a half-precision checkpoint stays one (the shipped files: half the size, same network)
    digest = save_checkpoint(args.out, out.half() if info["fp16"] else out, meta)
    LOG.info("wrote %s (model hash %s)", args.out, digest[:16])
    return 0


if __name__ == "__main__":
    sys.exit(main())
