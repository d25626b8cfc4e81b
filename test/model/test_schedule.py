"""Mask schedule: Gumbel noise switch, τ, sparsity bounds at chosen epochs, parameter groups."""

from __future__ import annotations

import pytest
import torch

from sparse_pose_ros.model.masks import MaskUnit
from sparse_pose_ros.model.network import NetworkConfig, PoseNetwork
from sparse_pose_ros.model.schedule import MaskSchedule, param_groups, sparsity_bounds


def _tiny_net() -> PoseNetwork:
    return PoseNetwork(NetworkConfig(input_size=64, width_mult=0.35))


@pytest.mark.parametrize(
    ("epoch", "lower", "upper"),
    [
        (0.0, 0.25, 0.25),  # p = cos²(0) = 1: every block held at θ
        (16.5, 0.125, 0.625),  # progress 0.165 = half the anneal: p = cos²(π/4) = 0.5
        (33.0, 0.0, 1.0),  # anneal done: p = cos²(π/2) = 0, blocks free
        (80.0, 0.0, 1.0),
    ],
)
def test_bounds_at_chosen_epochs(epoch: float, lower: float, upper: float) -> None:
    sched = MaskSchedule(epochs=100, theta=0.25, anneal_fraction=0.33)
    lo, up = sched.bounds(epoch)
    assert lo == pytest.approx(lower, abs=1e-12)
    assert up == pytest.approx(upper, abs=1e-12)


def test_bounds_match_loss_helper() -> None:
    sched = MaskSchedule(epochs=40, theta=0.125)
    assert sched.bounds(5) == sparsity_bounds(5 / 40, 0.125, 0.33)


def test_apply_sets_tau_and_noise_on_every_mask_unit() -> None:
    net = _tiny_net()
    sched = MaskSchedule(epochs=10, tau=0.5, noise_off_fraction=0.2)
    units = [m for m in net.modules() if isinstance(m, MaskUnit)]
    assert sched.apply(net, 7) == len(units) > 0
    assert all(u.tau == 0.5 and u.gumbel_noise for u in units)
    sched.apply(net, 8)  # last 20 % of 10 epochs: 8 and 9 without noise
    assert all(not u.gumbel_noise for u in units)


def test_param_groups_exclude_mask_units_from_weight_decay() -> None:
    net = _tiny_net()
    groups = param_groups(net, lr=1e-3, weight_decay=1e-4, mask_lr_scale=0.1)
    assert [g["name"] for g in groups] == ["network", "masks"]
    mask_ids = {id(p) for m in net.modules() if isinstance(m, MaskUnit) for p in m.parameters()}
    assert {id(p) for p in groups[1]["params"]} == mask_ids
    assert groups[1]["weight_decay"] == 0.0 and groups[1]["lr"] == pytest.approx(1e-4)
    assert groups[0]["weight_decay"] == 1e-4
    all_ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(all_ids) == sorted(id(p) for p in net.parameters())  # each exactly once
    torch.optim.AdamW(groups)  # accepted by a real optimiser


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        MaskSchedule(epochs=0)
    with pytest.raises(ValueError):
        MaskSchedule(epochs=10, theta=0.0)
    with pytest.raises(ValueError):
        sparsity_bounds(-0.1, 0.25)
    with pytest.raises(ValueError):
        param_groups(_tiny_net(), lr=0.0, weight_decay=0.0)
