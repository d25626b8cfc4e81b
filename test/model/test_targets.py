"""Target builders on hand-checked tiny cases (heatmaps, HEMlets triplets, Λ, joints)."""

from __future__ import annotations

import math

import pytest
import torch

from sparse_pose_ros import skeleton
from sparse_pose_ros.model.targets import (
    DEFAULT_EPSILON,
    build_targets,
    relative_depth,
    root_relative_depth,
)

J, P = skeleton.NUM_JOINTS, skeleton.NUM_BONES
SIZE = 4


def _pixel_centre(i: int) -> float:
    return (i + 0.5) / SIZE


def _batch(child_z: float, parent_z: float = 0.0) -> tuple[torch.Tensor, ...]:
    """All joints at pixel (0, 0) except the right hip (child of part 0) at pixel (3, 3)."""
    j2d = torch.full((1, J, 2), _pixel_centre(0))
    j2d[0, 1] = _pixel_centre(3)
    z = torch.zeros(1, J)
    z[0, 0], z[0, 1] = parent_z, child_z
    return j2d, z, torch.ones(1, J)


def test_bone_zero_is_pelvis_to_right_hip() -> None:
    assert skeleton.BONES[0] == (0, 1)  # the hand cases below rely on this


def test_relative_depth_polarity_and_tolerance() -> None:
    zp = torch.zeros(5)
    zc = torch.tensor([0.2, -0.2, 0.03, 0.05, -0.05])
    # farther by 0.2 -> -1, nearer by 0.2 -> +1, within ε (0.05, boundary inclusive) -> 0
    assert relative_depth(zp, zc, 0.05).tolist() == [-1, 1, 0, 0, 0]
    assert relative_depth(zp, zc, 0.0).tolist() == [-1, 1, -1, -1, 1]
    with pytest.raises(ValueError):
        relative_depth(zp, zc, -0.1)


def test_heatmap_gaussian_values() -> None:
    j2d, z, vis = _batch(0.0)
    t = build_targets(j2d, z, vis, SIZE, sigma=1.0)
    hm = t.heatmaps[0, 0]  # pelvis at pixel (0, 0)
    assert hm[0, 0].item() == pytest.approx(1.0)
    assert hm[0, 1].item() == pytest.approx(math.exp(-0.5))  # one pixel away, σ = 1
    assert hm[1, 1].item() == pytest.approx(math.exp(-1.0))  # (1² + 1²) / 2
    assert t.heatmaps[0, 1, 3, 3].item() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("child_z", "channel"),
    [(0.3, 0), (-0.3, 2), (0.02, 1)],  # farther -> T^-1, nearer -> T^+1, within ε -> T^0
)
def test_triplet_channel_selection(child_z: float, channel: int) -> None:
    j2d, z, vis = _batch(child_z)
    t = build_targets(j2d, z, vis, SIZE, sigma=1.0, epsilon=0.05)
    part0 = t.triplets[0, 0:3]  # [-1, 0, +1] of pelvis -> right hip
    # The parent always sits in T^0.
    assert part0[1, 0, 0].item() == pytest.approx(1.0)
    # The child sits in exactly the selected channel.
    assert part0[channel, 3, 3].item() == pytest.approx(1.0)
    for other in {0, 1, 2} - {channel}:
        if other == 1:  # T^0 still holds the parent's far tail exp(-9) at (3, 3)
            assert part0[1, 3, 3].item() == pytest.approx(math.exp(-9.0))
        else:
            assert torch.count_nonzero(part0[other]).item() == 0


def test_lambda_masks_parts_with_unlabelled_or_outside_joints() -> None:
    j2d, z, vis = _batch(0.3)
    vis[0, 2] = 0.0  # right knee unlabelled -> parts (1, 2) and (2, 3) unknown
    j2d[0, 13, 0] = 1.2  # left wrist outside the image -> part (12, 13) unknown
    t = build_targets(j2d, z, vis, SIZE)
    per_part = t.triplet_weight[0].reshape(P, 3, SIZE, SIZE)
    unknown = {skeleton.BONES.index((1, 2)), skeleton.BONES.index((2, 3)),
               skeleton.BONES.index((12, 13))}
    for k in range(P):
        expected = 0.0 if k in unknown else 1.0
        assert torch.all(per_part[k] == expected), k
    assert t.joint_weight[0, 2].item() == 0.0 and t.joint_weight[0, 13].item() == 0.0
    assert torch.count_nonzero(t.heatmaps[0, 2]).item() == 0
    assert torch.count_nonzero(t.heatmaps[0, 13]).item() == 0


def test_shapes_joints_and_clamp() -> None:
    b = 2
    j2d = torch.rand(b, J, 2)
    z = torch.zeros(b, J)
    z[1, 5] = 1.5
    t = build_targets(j2d, z, torch.ones(b, J), 8)
    assert t.heatmaps.shape == (b, J, 8, 8)
    assert t.triplets.shape == t.triplet_weight.shape == (b, 3 * P, 8, 8)
    assert t.joints.shape == (b, J, 3) and t.joint_weight.shape == (b, J)
    assert torch.equal(t.joints[..., :2], j2d)
    assert t.joints[1, 5, 2].item() == 1.0  # clamped to the representable range


def test_root_relative_depth_mm() -> None:
    cam = torch.zeros(J, 3)
    cam[:, 2] = 3000.0
    cam[1, 2], cam[2, 2] = 3100.0, 2950.0
    z = root_relative_depth(cam, 1000.0)
    assert z[:3].tolist() == pytest.approx([0.0, 0.1, -0.05])
    with pytest.raises(ValueError):
        root_relative_depth(cam, 0.0)


def test_bad_inputs_raise_value_error() -> None:
    j2d, z, vis = _batch(0.0)
    with pytest.raises(ValueError, match="joints2d"):
        build_targets(j2d[:, :5], z, vis, SIZE)
    with pytest.raises(ValueError, match="NaN"):
        build_targets(j2d, z * float("nan"), vis, SIZE)
    with pytest.raises(ValueError, match="heatmap_size"):
        build_targets(j2d, z, vis, 0)
    assert DEFAULT_EPSILON > 0
