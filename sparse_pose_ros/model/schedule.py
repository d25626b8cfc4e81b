"""Training-time control of the mask units: Gumbel temperature/noise, sparsity bounds, optimiser
parameter groups.

Why a scheduler object rather than constructor arguments: τ, the noise switch and the per-block
sparsity bounds change with the epoch, and the loss, the training loop and the checkpoint all
need the same values. Following dynconv (``pose/`` config and ``loss_cost.py``):

- τ = 1 for pose; Gumbel noise on for the first ``1 - noise_off_fraction`` of the epochs, then
  off so the last epochs train the deterministic masks that inference runs;
- per-block bounds start *tight* at θ (every block must execute ≈ θ) and are released over the
  first ``anneal_fraction`` of training with p = cos²(min(1, progress / anneal_fraction)·π/2):
  lower = p·θ, upper = 1 - p·(1 - θ); after that only the network-level budget θ binds, so
  blocks may trade compute among themselves;
- mask-unit convs get no weight decay (dynconv issue #10: decay drags the logits to 0, i.e. to a
  coin flip, and θ is then not reached), optionally a lower learning rate.
"""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from .masks import MaskUnit


def _check_theta(theta: float) -> None:
    if not 0.0 < theta <= 1.0:
        raise ValueError(f"theta (target density) must be in (0, 1], got {theta}")


def sparsity_bounds(
    progress: float, theta: float, anneal_fraction: float = 0.33
) -> tuple[float, float]:
    """Per-block (lower, upper) density bounds at training progress = epoch / epochs in [0, 1]."""
    _check_theta(theta)
    if not 0.0 < anneal_fraction <= 1.0:
        raise ValueError(f"anneal_fraction must be in (0, 1], got {anneal_fraction}")
    if not math.isfinite(progress) or progress < 0.0:
        raise ValueError(f"progress must be a finite number >= 0, got {progress}")
    p = math.cos(min(1.0, progress / anneal_fraction) * math.pi / 2.0) ** 2
    return p * theta, 1.0 - p * (1.0 - theta)


class MaskSchedule:
    """Epoch -> (τ, noise on/off, sparsity bounds) for every mask unit of a network.

    Args:
        epochs: total number of training epochs (> 0).
        tau: Gumbel-softmax temperature (dynconv uses 1 for pose; issue #10 advises <= 1).
        noise_off_fraction: last fraction of the epochs trained without Gumbel noise.
        theta: target fraction of the gated blocks' multiply-adds (the compute budget).
        anneal_fraction: fraction of the epochs over which the per-block bounds are released.
    """

    def __init__(
        self,
        epochs: int,
        tau: float = 1.0,
        noise_off_fraction: float = 0.2,
        theta: float = 0.25,
        anneal_fraction: float = 0.33,
    ) -> None:
        if epochs <= 0:
            raise ValueError(f"epochs must be > 0, got {epochs}")
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        if not 0.0 <= noise_off_fraction <= 1.0:
            raise ValueError(f"noise_off_fraction must be in [0, 1], got {noise_off_fraction}")
        _check_theta(theta)
        sparsity_bounds(0.0, theta, anneal_fraction)  # validates anneal_fraction
        self.epochs = epochs
        self.tau = tau
        self.noise_off_fraction = noise_off_fraction
        self.theta = theta
        self.anneal_fraction = anneal_fraction

    def progress(self, epoch: float) -> float:
        """epoch / epochs, the quantity the loss takes."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        return epoch / self.epochs

    def noise_on(self, epoch: float) -> bool:
        """Gumbel noise during the first (1 - noise_off_fraction) of the epochs."""
        return epoch < self.epochs * (1.0 - self.noise_off_fraction)

    def bounds(self, epoch: float) -> tuple[float, float]:
        """Per-block (lower, upper) density bounds at ``epoch``."""
        return sparsity_bounds(self.progress(epoch), self.theta, self.anneal_fraction)

    def apply(self, net: nn.Module, epoch: float) -> int:
        """Set τ and the noise switch on every MaskUnit of ``net``; returns how many were set."""
        noise = self.noise_on(epoch)
        count = 0
        for module in net.modules():
            if isinstance(module, MaskUnit):
                module.tau = self.tau
                module.gumbel_noise = noise
                count += 1
        return count


def param_groups(
    net: nn.Module, lr: float, weight_decay: float, mask_lr_scale: float = 1.0
) -> list[dict[str, Any]]:
    """Optimiser parameter groups: everything else with ``weight_decay``, mask units without.

    Args:
        net: the network.
        lr: base learning rate.
        weight_decay: decay of the non-mask parameters.
        mask_lr_scale: learning-rate factor of the mask units (dynconv issue #10 suggests < 1
            if the budget θ is not reached).
    """
    if lr <= 0 or weight_decay < 0 or mask_lr_scale <= 0:
        raise ValueError(
            f"need lr > 0, weight_decay >= 0, mask_lr_scale > 0; got {lr}, {weight_decay}, "
            f"{mask_lr_scale}"
        )
    mask_ids = {
        id(p) for m in net.modules() if isinstance(m, MaskUnit) for p in m.parameters()
    }
    mask_params = [p for p in net.parameters() if id(p) in mask_ids]
    other_params = [p for p in net.parameters() if id(p) not in mask_ids]
    groups: list[dict[str, Any]] = [
        {"params": other_params, "lr": lr, "weight_decay": weight_decay, "name": "network"}
    ]
    if mask_params:
        groups.append(
            {"params": mask_params, "lr": lr * mask_lr_scale, "weight_decay": 0.0, "name": "masks"}
        )
    return groups
