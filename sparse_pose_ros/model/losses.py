"""Training losses: HEMlets intermediate losses, the 3D joint loss and dynconv's sparsity losses.

    L_tot = α·(L_HEM + L_2D) + L_3D + α_sp·(L_sp,net + L_sp,low + L_sp,up)

- L_HEM: squared error of the triplet maps masked by Λ, summed over the pixels of a map and
  averaged over the maps Λ keeps (a per-pixel mean would make the loss shrink with resolution
  and vanish against the all-zero background).
- L_2D: the 2D heatmaps are the *logits* of the soft-argmax (``model.heads``), so an L2 towards
  peak-1 Gaussians would fight the coordinate readout (a softmax over values in [0, 1] is almost
  flat). We supervise the distribution instead: KL(G̃ ‖ softmax(Ĥ)) with G̃ the Gaussian
  normalised to sum 1, weighted by the joint's label weight (as DSNT regularises its heatmaps
  with a divergence to a Gaussian). It is 0 exactly when the predicted distribution is G̃.
- L_3D: L1 on (x, y, λ·z) per joint, weighted by the label weights and averaged over them.
  ``depth_supervision`` says where z comes from. ``"integral"`` (HEMlets): z of the soft-argmax,
  the per-pixel depth averaged under the predicted 2D softmax. ``"location"`` (VNect's location
  maps): the per-pixel depth map is trained *at the true joint position* only, L1 weighted by the
  normalised target Gaussian. (A local read-out at the decoded position was tried with it and
  not kept: ``models/MODEL_CARD.md``; the joints' z stays the soft-argmax's.)
  Why: a mannequin seen from the front and from the back gives nearly the same picture with
  left/right swapped and depth mirrored; under the integral loss every pixel with softmax mass
  is pulled towards the average of the two readings, which flattens depth (predicted |z| was
  half the truth). Trained at the true location, the depth at a pixel only ever answers "this
  joint is here", so each of the two readings stays a consistent 3D skeleton.
- Sparsity (dynconv ``loss_cost.py``, seed formulas): s_b = F_b,sp / F_b per gated block from
  the *hard* straight-through masks (so the gradient reaches the mask units through the soft
  sigmoid), L_net = (ΣF_sp / ΣF − θ)², L_low = mean_b max(0, lower − s_b)²,
  L_up = mean_b max(0, s_b − upper)², with the bounds of ``schedule.sparsity_bounds``. A dense
  (ungated) network has all three equal to 0 and density 1.
- Mask supervision (ours, off by default: ``alpha_mask``): BCE between every gated block's mask
  logits and the person silhouette max-pooled to the block's output grid and dilated by
  ``mask_margin`` cells, positives weighted by ``mask_pos_weight``. Why: with a few thousand
  steps from scratch the sparsity terms alone taught the masks to switch off on the person
  (recall 5 %, precision below chance) because a gated-off residual block still passes its
  input on; the rendered data has exact silhouettes, so we tell the masks where the person is
  and let the sparsity terms trim the rest. Frames without silhouette pixels (Human3.6M, which
  has none) do not contribute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .flops import block_flops_dense, block_flops_sparse, block_out_hw, conv_out_hw
from .schedule import sparsity_bounds
from .targets import PoseTargets

if TYPE_CHECKING:
    from .network import PoseNetwork, PoseOutput


@dataclass
class LossConfig:
    """Loss weights.

    Attributes:
        alpha_int: α, weight of the intermediate losses L_HEM + L_2D.
        lambda_z: λ, weight of the depth error inside L_3D (x, y are in units of the image
            side, z in units of ``depth_range_mm``; λ = 1 weighs one image side like one depth
            range).
        alpha_sparsity: α_sp (dynconv uses ≈ 0.01 for pose).
        theta: θ, target density of the gated blocks' MACs.
        anneal_fraction: fraction of training over which the per-block bounds are released.
        alpha_mask: weight of the silhouette supervision of the mask logits (0 = off).
        mask_pos_weight: BCE weight of person cells (the person is a small part of the frame).
        mask_margin: dilation of the pooled silhouette in cells (limbs at the border and the
            receptive field of the next block).
        depth_supervision: "integral" (z of the soft-argmax) or "location" (the depth map at
            the true joint position; see the module docstring).
    """

    alpha_int: float = 0.1
    lambda_z: float = 1.0
    alpha_sparsity: float = 0.01
    theta: float = 0.25
    anneal_fraction: float = 0.33
    alpha_mask: float = 0.0
    mask_pos_weight: float = 4.0
    mask_margin: int = 1
    depth_supervision: str = "integral"

    def __post_init__(self) -> None:
        if self.depth_supervision not in ("integral", "location"):
            raise ValueError(
                "depth_supervision must be 'integral' or 'location', "
                f"got {self.depth_supervision!r}"
            )
        if self.mask_margin < 0 or self.mask_pos_weight <= 0:
            raise ValueError("mask_margin must be >= 0 and mask_pos_weight > 0")
        for name in ("alpha_int", "lambda_z", "alpha_sparsity", "alpha_mask"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        sparsity_bounds(0.0, self.theta, self.anneal_fraction)  # validates theta, fraction


def hem_loss(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Λ-masked squared error, summed per map, averaged over the maps with Λ > 0."""
    if pred.shape != target.shape or weight.shape != target.shape:
        raise ValueError(
            f"triplet shapes differ: pred {tuple(pred.shape)}, target {tuple(target.shape)}, "
            f"weight {tuple(weight.shape)}"
        )
    h, w = target.shape[-2:]
    n_maps = weight.sum() / (h * w)
    err = (weight * (pred - target) ** 2).sum()
    return err / n_maps if n_maps > 0 else err * 0.0


def heatmap_loss(logits: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Weighted mean over joints of KL(normalised target Gaussian ‖ softmax(logits))."""
    if logits.shape != target.shape:
        raise ValueError(f"heatmap shapes differ: {tuple(logits.shape)} vs {tuple(target.shape)}")
    b, j = target.shape[:2]
    log_p = F.log_softmax(logits.reshape(b, j, -1), dim=-1)
    t = target.reshape(b, j, -1)
    mass = t.sum(dim=-1, keepdim=True)
    q = t / mass.clamp_min(1e-12)
    kl = (torch.xlogy(q, q) - q * log_p).sum(dim=-1)  # (B, J); xlogy gives 0·log 0 = 0
    w = weight * (mass.squeeze(-1) > 0).to(weight.dtype)
    total = w.sum()
    return (w * kl).sum() / total if total > 0 else (kl * 0.0).sum()


def joint_loss(pred: Tensor, target: Tensor, weight: Tensor, lambda_z: float) -> Tensor:
    """Σ_j w_j (|Δx| + |Δy| + λ|Δz|) / Σ_j w_j."""
    if pred.shape != target.shape or pred.shape[-1] != 3:
        raise ValueError(f"joint shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    scale = pred.new_tensor([1.0, 1.0, lambda_z])
    per_joint = ((pred - target).abs() * scale).sum(dim=-1)
    total = weight.sum()
    return (weight * per_joint).sum() / total if total > 0 else (per_joint * 0.0).sum()


def location_depth_loss(
    depth: Tensor, target_heatmaps: Tensor, z: Tensor, weight: Tensor
) -> Tensor:
    """Σ_j w_j Σ_p G̃_j(p)·|d_j(p) − z_j| / Σ_j w_j: the depth map trained at the true position.

    ``depth`` (B, J, h, w) per-pixel depth in [-1, 1], ``target_heatmaps`` the Gaussians of
    :func:`model.targets.build_targets` (normalised here to sum 1 per joint), ``z`` (B, J).
    """
    if depth.shape != target_heatmaps.shape:
        raise ValueError(
            f"depth map {tuple(depth.shape)} and heatmaps {tuple(target_heatmaps.shape)} differ"
        )
    mass = target_heatmaps.sum(dim=(2, 3))
    q = target_heatmaps / mass.clamp_min(1e-12)[..., None, None]
    per_joint = (q * (depth - z[..., None, None]).abs()).sum(dim=(2, 3))
    w = weight * (mass > 0).to(weight.dtype)
    total = w.sum()
    return (w * per_joint).sum() / total if total > 0 else (per_joint * 0.0).sum()


@dataclass
class SparsityTerms:
    """The three sparsity losses and the measured density (ΣF_sp / ΣF, differentiable)."""

    net: Tensor
    lower: Tensor
    upper: Tensor
    density: Tensor
    block_density: list[Tensor]


def sparsity_terms(
    output: PoseOutput,
    net: PoseNetwork,
    theta: float,
    bounds: tuple[float, float],
    input_hw: tuple[int, int] | None = None,
) -> SparsityTerms:
    """dynconv's network and per-block sparsity losses from the hard straight-through masks."""
    blocks = list(net.backbone.blocks)
    if len(output.masks) != len(blocks):
        raise ValueError(f"output has {len(output.masks)} masks for {len(blocks)} blocks")
    lower, upper = bounds
    ref = output.joints
    zero = ref.new_zeros(())
    stem = net.backbone.stem
    if input_hw is None:
        input_hw = (4 * output.heatmaps.shape[-2], 4 * output.heatmaps.shape[-1])
    stem_conv = next(m for m in stem.modules() if isinstance(m, nn.Conv2d))
    h, w = conv_out_hw(stem_conv, *input_hw)
    dens: list[Tensor] = []
    total_sp, total = zero, 0.0
    for block, mask in zip(blocks, output.masks, strict=True):
        ho, wo = block_out_hw(block, h, w)
        if mask is not None:
            if mask.hard.shape[-2:] != (ho, wo) or mask.dilated.shape[-2:] != (h, w):
                raise ValueError(
                    f"mask sizes {tuple(mask.hard.shape[-2:])}/{tuple(mask.dilated.shape[-2:])} "
                    f"do not match the input size {input_hw} (pass input_hw explicitly)"
                )
            b = mask.hard.shape[0]
            dense = float(block_flops_dense(block, h, w))
            sparse = block_flops_sparse(block, mask.hard.sum() / b, mask.dilated.sum() / b)
            s_b = sparse / dense
            dens.append(s_b)
            total_sp = total_sp + sparse
            total += dense
        h, w = ho, wo
    if not dens:
        one = ref.new_ones(())
        return SparsityTerms(net=zero, lower=zero, upper=zero, density=one, block_density=[])
    density = total_sp / total
    s = torch.stack(dens)
    return SparsityTerms(
        net=(density - theta) ** 2,
        lower=torch.relu(lower - s).pow(2).mean(),
        upper=torch.relu(s - upper).pow(2).mean(),
        density=density,
        block_density=dens,
    )


class PoseLoss(nn.Module):
    """L_tot = α·(L_HEM + L_2D) + L_3D + α_sp·(L_sp,net + L_sp,low + L_sp,up)."""

    def __init__(self, cfg: LossConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or LossConfig()

    def forward(
        self,
        output: PoseOutput,
        targets: PoseTargets,
        net: PoseNetwork,
        progress: float,
        silhouette: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        """Total loss and its named parts (floats, for logging).

        Args:
            output: the network's PoseOutput for the batch.
            targets: targets from :func:`model.targets.build_targets`.
            net: the network (block shapes for the FLOPs of the sparsity terms).
            progress: epoch / epochs in [0, 1] (drives the per-block bounds).
            silhouette: (B, S, S) or (B, 1, S, S) person masks for the mask supervision
                (used when ``alpha_mask`` > 0).
        """
        cfg = self.cfg
        l_hem = hem_loss(output.triplets, targets.triplets, targets.triplet_weight)
        l_2d = heatmap_loss(output.heatmaps, targets.heatmaps, targets.joint_weight)
        if cfg.depth_supervision == "location":
            if output.depth is None:
                raise ValueError("depth_supervision 'location' needs the factorized depth head")
            l_3d = joint_loss(output.joints, targets.joints, targets.joint_weight, 0.0)
            l_3d = l_3d + cfg.lambda_z * location_depth_loss(
                output.depth, targets.heatmaps, targets.joints[..., 2], targets.joint_weight
            )
        else:
            l_3d = joint_loss(output.joints, targets.joints, targets.joint_weight, cfg.lambda_z)
        bounds = sparsity_bounds(progress, cfg.theta, cfg.anneal_fraction)
        sp = sparsity_terms(output, net, cfg.theta, bounds)
        l_int = l_hem + l_2d
        l_sp = sp.net + sp.lower + sp.upper
        total = cfg.alpha_int * l_int + l_3d + cfg.alpha_sparsity * l_sp
        l_mask = output.joints.new_zeros(())
        if cfg.alpha_mask > 0 and silhouette is not None:
            l_mask = mask_supervision_loss(output, silhouette, cfg.mask_pos_weight, cfg.mask_margin)
            total = total + cfg.alpha_mask * l_mask
        parts = {
            "total": float(total.detach()),
            "hem": float(l_hem.detach()),
            "2d": float(l_2d.detach()),
            "int": float(l_int.detach()),
            "3d": float(l_3d.detach()),
            "sp_net": float(sp.net.detach()),
            "sp_low": float(sp.lower.detach()),
            "sp_up": float(sp.upper.detach()),
            "density": float(sp.density.detach()),
            "mask_bce": float(l_mask.detach()),
            "bound_low": bounds[0],
            "bound_up": bounds[1],
        }
        return total, parts


def silhouette_target(silhouette: Tensor, size: tuple[int, int], margin: int) -> Tensor:
    """(B, 1, h, w) 0/1: a cell is "person" if any silhouette pixel falls in it (± margin)."""
    sil = silhouette.float()
    if sil.dim() == 3:
        sil = sil.unsqueeze(1)
    cells = F.adaptive_max_pool2d(sil, size)
    if margin > 0:
        k = 2 * margin + 1
        cells = F.max_pool2d(cells, kernel_size=k, stride=1, padding=margin)
    return cells


def mask_supervision_loss(
    output: PoseOutput, silhouette: Tensor, pos_weight: float = 4.0, margin: int = 1
) -> Tensor:
    """Mean over gated blocks of the weighted BCE of the mask logits against the silhouette.

    Samples whose silhouette is empty (no label) are left out; 0 when nothing is labelled or the
    network has no gated block.
    """
    sil = silhouette.float()
    labelled = sil.flatten(1).amax(dim=1) > 0
    losses = []
    for mask in output.masks:
        if mask is None or not bool(labelled.any()):
            continue
        logits = mask.logits[labelled]
        target = silhouette_target(sil[labelled], tuple(logits.shape[-2:]), margin)
        weight = torch.ones_like(target) + (pos_weight - 1.0) * target
        losses.append(F.binary_cross_entropy_with_logits(logits.float(), target, weight=weight))
    if not losses:
        return output.joints.new_zeros(())
    return torch.stack(losses).mean()
