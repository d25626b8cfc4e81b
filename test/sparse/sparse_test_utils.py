"""Helpers shared by the gather-scatter tests (imported by conftest and the test modules)."""

from __future__ import annotations

import torch


def randomise_bn(module: torch.nn.Module, seed: int = 0) -> None:
    """Eval-mode BN with random statistics, so BN folding is really exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
