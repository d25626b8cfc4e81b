"""Augmentations keep image, mask, 2D, 3D and K consistent."""

from __future__ import annotations

import numpy as np
import pytest

from sparse_pose_ros import skeleton
from sparse_pose_ros.data.augment import Augmenter, affine, colour_jitter, hflip
from sparse_pose_ros.data.camera import project


def _sample(frame) -> dict[str, np.ndarray]:
    return {
        "image": frame.image, "mask": frame.mask, "joints_2d": frame.joints_2d,
        "joints_3d": frame.joints_3d, "visible": frame.visible, "in_frame": frame.in_frame,
        "K": frame.K,
    }


def _assert_projects(sample, tol=0.05):
    uv = project(sample["joints_3d"].astype(np.float64), sample["K"])
    assert np.abs(uv - sample["joints_2d"]).max() < tol


def _visible_joints_on_mask(sample) -> float:
    vis = sample["visible"].astype(bool)
    px = np.rint(sample["joints_2d"][vis]).astype(int)
    padded = np.pad(sample["mask"], 2)
    return float(np.mean([padded[y : y + 5, x : x + 5].any() for x, y in px]))


def test_flip_twice_is_identity(train_frames):
    s = _sample(train_frames[0])
    twice = hflip(hflip(s))
    for key in s:
        np.testing.assert_array_equal(twice[key], s[key])


def test_flip_swaps_sides_and_still_projects(train_frames):
    s = _sample(train_frames[1])
    f = hflip(s)
    _assert_projects(f)
    li, ri = skeleton.JOINT_NAMES.index("left_wrist"), skeleton.JOINT_NAMES.index("right_wrist")
    assert f["joints_2d"][li, 0] == pytest.approx(255 - s["joints_2d"][ri, 0], abs=1e-4)
    np.testing.assert_array_equal(f["image"][:, 0], s["image"][:, -1])
    assert _visible_joints_on_mask(f) == pytest.approx(_visible_joints_on_mask(s))


def test_rotation_scale_shift_keep_labels_consistent(train_frames):
    s = _sample(train_frames[2])
    a = affine(s, angle_deg=25.0, scale=1.2, shift=(9.0, -6.0))
    _assert_projects(a)
    # Bone lengths in 3D are unchanged (a rigid rotation about the optical axis).
    for p, c in skeleton.BONES:
        assert np.linalg.norm(a["joints_3d"][c] - a["joints_3d"][p]) == pytest.approx(
            np.linalg.norm(s["joints_3d"][c] - s["joints_3d"][p]), rel=1e-4)
    assert _visible_joints_on_mask(a) > 0.9


def test_joints_leaving_the_frame_lose_visibility(train_frames):
    s = _sample(train_frames[3])
    a = affine(s, angle_deg=0.0, scale=1.0, shift=(400.0, 0.0))
    assert not a["in_frame"].any() and not a["visible"].any()


def test_random_augmenter_and_colour_jitter(train_frames):
    aug = Augmenter(seed=3)
    for frame in train_frames:
        out = aug(_sample(frame))
        _assert_projects(out)
        assert out["image"].shape == (256, 256, 3) and out["image"].dtype == np.uint8
    s = _sample(train_frames[0])
    c = colour_jitter(s, np.random.default_rng(0))
    np.testing.assert_array_equal(c["joints_2d"], s["joints_2d"])
    assert not np.array_equal(c["image"], s["image"])


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError):
        Augmenter(flip_prob=2.0)
    with pytest.raises(ValueError):
        Augmenter(scale_range=(1.2, 0.8))


def test_dataloader_workers_draw_different_augmentations(tmp_path, train_frames):
    import torch

    from sparse_pose_ros.data.shards import ShardDataset, write_shard

    write_shard(tmp_path / "train-00000.npz", [train_frames[0]] * 2, {"split": "train"})
    data = ShardDataset(tmp_path, transform=Augmenter(flip_prob=0.0, colour_strength=0.0))
    loader = torch.utils.data.DataLoader(data, batch_size=1, num_workers=2)
    a, b = (batch["joints_2d"][0] for batch in loader)  # same frame, one per worker
    assert not torch.equal(a, b)


def test_pipeline_jitters_colour_after_the_resize(train_frames):
    """The training pipeline draws the same augmentation as the augmenter alone (same stream,
    same order: geometry, then colour) but applies the colour part at the network size."""
    from sparse_pose_ros.training.transforms import Pipeline, fit_to_input

    s = _sample(train_frames[0])
    piped = Pipeline(128, Augmenter(seed=5))(s)
    aug = Augmenter(seed=5)
    geo = fit_to_input(aug.geometric(s), 128)
    np.testing.assert_array_equal(piped["joints_2d"], geo["joints_2d"])
    np.testing.assert_array_equal(piped["K"], geo["K"])
    assert piped["image"].shape == (128, 128, 3)
    assert not np.array_equal(piped["image"], geo["image"])  # jittered...
    recoloured = aug.photometric(geo)  # ...with the colour draw that follows the geometry
    np.testing.assert_array_equal(piped["image"], recoloured["image"])
    _assert_projects(piped, tol=0.05)
