"""Smoke training: 30 Adam steps on a tiny fixed batch lower the loss and pull density to θ."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from sparse_pose_ros import skeleton
from sparse_pose_ros.model.losses import LossConfig, PoseLoss
from sparse_pose_ros.model.network import NetworkConfig, PoseNetwork
from sparse_pose_ros.model.schedule import MaskSchedule, param_groups
from sparse_pose_ros.model.targets import build_targets

THETA = 0.25


@pytest.fixture
def one_thread() -> Iterator[None]:
    # Other test processes share the two cores: one thread is ~10x faster than two contended.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


@pytest.mark.parametrize("seed", [0, 1])
def test_thirty_steps_reduce_loss_and_move_density_towards_theta(one_thread, seed: int) -> None:
    torch.manual_seed(seed)
    net = PoseNetwork(NetworkConfig(input_size=64, width_mult=0.35)).train()
    for block in net.gated_blocks():
        # logit 3 -> P(active) = sigmoid(3) ≈ 0.95: density starts far above θ = 0.25.
        torch.nn.init.constant_(block.mask_unit.conv.bias, 3.0)
    sched = MaskSchedule(epochs=30, theta=THETA)
    j = skeleton.NUM_JOINTS
    x = torch.randn(2, 3, 64, 64)
    targets = build_targets(
        torch.rand(2, j, 2) * 0.6 + 0.2, torch.rand(2, j) - 0.5, torch.ones(2, j), 16
    )
    # α_sp = 1 and a 5× mask learning rate so that 30 steps move the masks measurably.
    loss_fn = PoseLoss(LossConfig(alpha_sparsity=1.0, theta=THETA))
    opt = torch.optim.Adam(param_groups(net, lr=1e-2, weight_decay=0.0, mask_lr_scale=5.0))
    totals, densities = [], []
    for step in range(30):
        sched.apply(net, step)
        out = net(x)
        loss, parts = loss_fn(out, targets, net, progress=sched.progress(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        totals.append(parts["total"])
        densities.append(parts["density"])
    assert all(torch.isfinite(torch.tensor(totals)))
    assert _mean(totals[-3:]) < 0.5 * _mean(totals[:3]), totals
    start, end = _mean(densities[:3]), _mean(densities[-3:])
    assert start > 0.9, densities
    assert abs(end - THETA) < abs(start - THETA) - 0.15, densities
