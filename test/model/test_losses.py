"""Loss values on hand-made tiny cases (numbers worked out in the comments)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from sparse_pose_ros import skeleton
from sparse_pose_ros.model.blocks import ConvBN, InvertedResidual
from sparse_pose_ros.model.losses import (
    LossConfig,
    PoseLoss,
    heatmap_loss,
    hem_loss,
    joint_loss,
    location_depth_loss,
    sparsity_terms,
)
from sparse_pose_ros.model.masks import BlockMask, receptive_mask
from sparse_pose_ros.model.network import NetworkConfig, PoseNetwork
from sparse_pose_ros.model.targets import build_targets


def test_hem_loss_by_hand() -> None:
    pred = torch.zeros(1, 2, 2, 2)
    target = torch.zeros(1, 2, 2, 2)
    target[0, 0, 0, 0], target[0, 1, 0, 0] = 1.0, 0.5
    both = torch.ones_like(target)
    # (1² + 0.5²) summed over pixels, averaged over 2 maps: 1.25 / 2
    assert hem_loss(pred, target, both).item() == pytest.approx(0.625)
    first = both.clone()
    first[0, 1] = 0.0  # Λ drops map 1: 1² over 1 map
    assert hem_loss(pred, target, first).item() == pytest.approx(1.0)
    assert hem_loss(pred, target, torch.zeros_like(target)).item() == 0.0


def test_heatmap_kl_by_hand() -> None:
    logits = torch.tensor([0.0, math.log(3.0)]).view(1, 1, 1, 2).repeat(1, 2, 1, 1)
    # softmax = [0.25, 0.75]
    target = torch.tensor([[1.0, 1.0], [1.0, 0.0]]).view(1, 2, 1, 2)
    kl_uniform = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # = 0.5·ln(4/3)
    kl_onehot = math.log(1.0 / 0.25)  # = ln 4
    w = torch.ones(1, 2)
    assert heatmap_loss(logits, target, w).item() == pytest.approx((kl_uniform + kl_onehot) / 2)
    w[0, 1] = 0.0
    assert heatmap_loss(logits, target, w).item() == pytest.approx(kl_uniform)
    # Perfect prediction of a normalised target: 0.
    perfect = torch.log(torch.tensor([0.5, 0.5])).view(1, 1, 1, 2)
    assert heatmap_loss(perfect, target[:, :1], torch.ones(1, 1)).item() == pytest.approx(0.0)


def test_joint_loss_by_hand() -> None:
    pred = torch.tensor([[[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]]])
    target = torch.tensor([[[0.6, 0.3, 0.5], [0.2, 0.0, -0.1]]])
    weight = torch.tensor([[1.0, 0.5]])
    # joint 0: 0.1 + 0.2 + 2·0.5 = 1.3; joint 1: 0.2 + 0 + 2·0.1 = 0.4
    # (1·1.3 + 0.5·0.4) / 1.5 = 1.0
    assert joint_loss(pred, target, weight, lambda_z=2.0).item() == pytest.approx(1.0)


def _one_block_case(active: list[tuple[int, int]]):
    """One gated block C_b = 4, t = 2 (C_e = 8), on a 4×4 map (8×8 input, stride-2 stem)."""
    block = InvertedResidual(4, 4, 1, 2, gated=True)
    net = SimpleNamespace(backbone=SimpleNamespace(stem=ConvBN(3, 4, 3, stride=2), blocks=[block]))
    hard = torch.zeros(1, 1, 4, 4)
    for i, j in active:
        hard[0, 0, i, j] = 1.0
    hard.requires_grad_(True)
    dilated = receptive_mask(hard, 1, (4, 4))
    mask = BlockMask(hard=hard, dilated=dilated, soft=hard.detach(), logits=hard.detach())
    out = SimpleNamespace(masks=[mask], joints=torch.zeros(1), heatmaps=torch.zeros(1, 1, 2, 2))
    return net, out, hard


def test_sparsity_terms_by_hand() -> None:
    net, out, hard = _one_block_case([(0, 0), (3, 3)])
    # F_b = 16·(9·8 + 2·4·8) = 2176; corners dilate to 4 + 4 = 8 input positions:
    # F_sp = 8·4·8 + 2·(9·8 + 8·4) = 256 + 208 = 464; s = 464/2176 = 29/136
    s = 29 / 136
    tight = sparsity_terms(out, net, theta=0.25, bounds=(0.25, 0.25))
    assert tight.density.item() == pytest.approx(s)
    assert tight.net.item() == pytest.approx((s - 0.25) ** 2)  # = 25/18496
    assert tight.lower.item() == pytest.approx((0.25 - s) ** 2)
    assert tight.upper.item() == 0.0
    loose = sparsity_terms(out, net, theta=0.25, bounds=(0.0, 1.0))
    assert loose.lower.item() == 0.0 and loose.upper.item() == 0.0
    high = sparsity_terms(out, net, theta=0.1, bounds=(0.1, 0.15))
    assert high.upper.item() == pytest.approx((s - 0.15) ** 2)
    # Gradient reaches the hard mask (straight-through path): d(density)/d(hard).
    tight.net.backward()
    assert hard.grad is not None and hard.grad.abs().sum() > 0


def test_dense_network_has_zero_sparsity_terms() -> None:
    net = PoseNetwork(NetworkConfig(input_size=64, width_mult=0.35, gated=False))
    out = net(torch.randn(1, 3, 64, 64))
    sp = sparsity_terms(out, net, theta=0.25, bounds=(0.25, 0.25))
    assert sp.net.item() == sp.lower.item() == sp.upper.item() == 0.0
    assert sp.density.item() == 1.0


def test_pose_loss_combines_parts() -> None:
    torch.manual_seed(0)
    net = PoseNetwork(NetworkConfig(input_size=64, width_mult=0.35)).train()
    out = net(torch.randn(2, 3, 64, 64))
    j = skeleton.NUM_JOINTS
    targets = build_targets(torch.rand(2, j, 2), torch.rand(2, j) - 0.5, torch.ones(2, j), 16)
    cfg = LossConfig(alpha_int=0.3, lambda_z=2.0, alpha_sparsity=0.5, theta=0.25)
    total, parts = PoseLoss(cfg)(out, targets, net, progress=0.1)
    expected = (
        0.3 * (parts["hem"] + parts["2d"])
        + parts["3d"]
        + 0.5 * (parts["sp_net"] + parts["sp_low"] + parts["sp_up"])
    )
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert parts["int"] == pytest.approx(parts["hem"] + parts["2d"], rel=1e-6)
    assert 0.0 < parts["density"] <= 1.0
    lo, up = parts["bound_low"], parts["bound_up"]
    p = math.cos(0.1 / 0.33 * math.pi / 2) ** 2
    assert (lo, up) == pytest.approx((p * 0.25, 1 - p * 0.75))
    total.backward()


def test_location_depth_loss_by_hand() -> None:
    """Joint 0's Gaussian covers two cells (masses 3 and 1 -> weights 0.75, 0.25), depth there
    0.5 and -0.5, truth 0.1: 0.75·0.4 + 0.25·0.6 = 0.45. Joint 1 has weight 0 and a wild map.
    Depth far from the true position does not count (the location-map reading)."""
    depth = torch.zeros(1, 2, 2, 2)
    depth[0, 0, 0, 0], depth[0, 0, 0, 1], depth[0, 0, 1, 1] = 0.5, -0.5, 0.99
    heat = torch.zeros(1, 2, 2, 2)
    heat[0, 0, 0, 0], heat[0, 0, 0, 1] = 3.0, 1.0
    heat[0, 1] = 1.0
    z = torch.tensor([[0.1, -0.9]])
    loss = location_depth_loss(depth, heat, z, torch.tensor([[1.0, 0.0]]))
    assert loss.item() == pytest.approx(0.45)
    depth.requires_grad_(True)
    location_depth_loss(depth, heat, z, torch.tensor([[1.0, 0.0]])).backward()
    assert depth.grad[0, 0, 1, 1] == 0 and depth.grad[0, 1].abs().sum() == 0


def test_location_supervision_replaces_the_integral_z() -> None:
    """With ``depth_supervision: location`` L_3D = L1(x, y) + λ·location loss."""
    torch.manual_seed(0)
    net = PoseNetwork(NetworkConfig(input_size=64, width_mult=0.35, gated=False)).train()
    out = net(torch.randn(2, 3, 64, 64))
    j = skeleton.NUM_JOINTS
    targets = build_targets(torch.rand(2, j, 2), torch.rand(2, j) - 0.5, torch.ones(2, j), 16)
    cfg = LossConfig(lambda_z=2.0, depth_supervision="location")
    _, parts = PoseLoss(cfg)(out, targets, net, progress=0.5)
    xy = joint_loss(out.joints, targets.joints, targets.joint_weight, 0.0)
    loc = location_depth_loss(out.depth, targets.heatmaps, targets.joints[..., 2],
                              targets.joint_weight)  # fmt: skip
    assert parts["3d"] == pytest.approx((xy + 2.0 * loc).item(), rel=1e-5)
    with pytest.raises(ValueError):
        LossConfig(depth_supervision="volume")


def test_loss_config_validation() -> None:
    with pytest.raises(ValueError):
        LossConfig(alpha_int=-1.0)
    with pytest.raises(ValueError):
        LossConfig(theta=1.5)


def test_silhouette_target_pools_and_dilates_by_hand() -> None:
    from sparse_pose_ros.model.losses import silhouette_target

    sil = torch.zeros(1, 8, 8)
    sil[0, 5, 2] = 1  # one person pixel -> cell (2, 1) of a 4x4 grid
    cells = silhouette_target(sil, (4, 4), margin=0)
    expected = torch.zeros(1, 1, 4, 4)
    expected[0, 0, 2, 1] = 1
    assert torch.equal(cells, expected)
    dilated = silhouette_target(sil, (4, 4), margin=1)
    assert dilated.sum() == 9 and dilated[0, 0, 1:4, 0:3].all()


def test_mask_supervision_loss_by_hand_and_gradient() -> None:
    from sparse_pose_ros.model.losses import mask_supervision_loss

    logits = torch.zeros(2, 1, 2, 2, requires_grad=True)
    hard = (logits >= 0).float()
    masks = [None, BlockMask(hard=hard, dilated=hard, soft=torch.sigmoid(logits), logits=logits)]
    out = SimpleNamespace(masks=masks, joints=torch.zeros(2, 17, 3))
    sil = torch.zeros(2, 4, 4)
    sil[0, 0, 0] = 1  # sample 0: person in the top-left cell; sample 1: unlabelled (left out)
    loss = mask_supervision_loss(out, sil, pos_weight=4.0, margin=0)
    # sample 0 only: BCE(0-logit) = ln 2 per cell, weights 4 (person) + 1 + 1 + 1 over 4 cells
    assert loss.item() == pytest.approx(math.log(2) * 7 / 4, rel=1e-6)
    loss.backward()
    assert logits.grad[0, 0, 0, 0] < 0 < logits.grad[0, 0, 1, 1]  # raise person, lower rest
    assert torch.all(logits.grad[1] == 0)


def test_pose_loss_adds_mask_term_only_when_enabled() -> None:
    torch.manual_seed(0)
    net = PoseNetwork(NetworkConfig(input_size=64, width_mult=0.35, head_channels=16))
    out = net(torch.randn(2, 3, 64, 64))
    t = build_targets(torch.rand(2, 17, 2), torch.zeros(2, 17), torch.ones(2, 17), 16)
    sil = torch.zeros(2, 64, 64)
    sil[:, 20:40, 25:35] = 1
    off, parts_off = PoseLoss(LossConfig())(out, t, net, 0.5, silhouette=sil)
    on, parts_on = PoseLoss(LossConfig(alpha_mask=2.0))(out, t, net, 0.5, silhouette=sil)
    assert parts_off["mask_bce"] == 0.0 and parts_on["mask_bce"] > 0
    assert on.item() == pytest.approx(off.item() + 2.0 * parts_on["mask_bce"], rel=1e-5)
