"""Random-weight networks that exercise every code path, for parity tests and benchmarks.

A freshly constructed PoseNetwork has BatchNorm at identity statistics and mask units biased
"all on", so a test on it would not notice a wrong BN fold or a broken mask. These helpers
randomise BN statistics and give the mask units a zero bias with a weight scale that makes roughly
half of the positions active, so exports and runtimes must get folding, thresholds and masking
right to match. Trained weights are never needed.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..model.network import NetworkConfig, PoseNetwork, movenet_config


@torch.no_grad()
def randomize_network(net: PoseNetwork, seed: int = 0, mask_bias: float = 0.0) -> PoseNetwork:
    """Randomise BN statistics/affine parameters and mask-unit weights in place (eval mode).

    Args:
        net: network to modify.
        seed: RNG seed, so tests are reproducible.
        mask_bias: mask-unit bias; 0 gives about half of the positions active, negative fewer.
    """
    gen = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
            m.weight.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
            m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
    for block in net.gated_blocks():
        conv = block.mask_unit.conv  # type: ignore[union-attr]
        std = 1.0 / math.sqrt(conv.in_channels)
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * std)
        conv.bias.fill_(mask_bias)
    return net.eval()


def random_network(
    gated: bool = True,
    input_size: int = 64,
    seed: int = 0,
    width_mult: float = 0.5,
    mask_bias: float = 0.0,
    **config: object,
) -> PoseNetwork:
    """A small randomised PoseNetwork (eval mode); extra keyword args go to NetworkConfig."""
    torch.manual_seed(seed)
    cfg = NetworkConfig(input_size=input_size, gated=gated, width_mult=width_mult, **config)
    return randomize_network(PoseNetwork(cfg), seed=seed, mask_bias=mask_bias)


@torch.no_grad()
def random_movenet_network(
    variant: str,
    gated: bool = True,
    input_size: int | None = None,
    seed: int = 0,
    mask_bias: float = 0.0,
    **overrides: object,
) -> PoseNetwork:
    """MoveNet's architecture (``movenet_config(variant)``: TF 'SAME' stride-2 convs, stride 32,
    1×1 to 1280, FPN neck, separable head pre-conv) with random weights, for runtime parity.

    On top of :func:`randomize_network` the HEMlets head's 1×1 convs get unit-scale weights and
    biases: their near-zero init (std 1e-3) would leave heatmaps almost flat, and then a parity
    test on them could not see a wrong neck or padding.
    """
    torch.manual_seed(seed)
    cfg = movenet_config(variant, gated=gated, **overrides)
    if input_size is not None:
        cfg = NetworkConfig.from_dict({**cfg.to_dict(), "input_size": int(input_size)})
    net = randomize_network(PoseNetwork(cfg), seed=seed, mask_bias=mask_bias)
    gen = torch.Generator().manual_seed(seed + 1)
    for conv in (net.head.heatmap, net.head.triplet, net.head.depth):
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen)
                          / math.sqrt(conv.in_channels))
        conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen) * 0.1)
    return net.eval()
