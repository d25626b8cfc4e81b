"""Config validation, LR schedule, resize transform and the 3D lift of the evaluation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sparse_pose_ros.model.targets import root_relative_depth
from sparse_pose_ros.training.config import apply_overrides, config_from_dict, load_config
from sparse_pose_ros.training.evaluation import lift_to_camera
from sparse_pose_ros.training.train import lr_factor, sparsity_weight
from sparse_pose_ros.training.transforms import fit_to_input

CONFIGS = Path(__file__).resolve().parents[2] / "training_configs"


@pytest.mark.parametrize(
    "name", ["tiny_dense", "tiny_sparse", "tiny_sparse_allgated", "full_dense", "full_sparse"]
)
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.model.gated == ("sparse" in name)
    assert cfg.run.name == name
    if cfg.model.gated:
        assert cfg.loss.alpha_sparsity > 0 and 0 < cfg.loss.theta <= 0.3
    else:
        assert cfg.loss.alpha_sparsity == 0


@pytest.mark.parametrize("name", ["movenet_thunder_real", "movenet_lightning_real"])
def test_shipped_recipes_load(name: str) -> None:
    """The frozen-backbone recipes parse (unknown keys would be refused) and are dispatched."""
    from sparse_pose_ros.training.frozen_recipe import RecipeConfig, is_frozen_recipe

    path = CONFIGS / f"{name}.yaml"
    assert is_frozen_recipe(path)
    cfg = RecipeConfig.from_yaml(path)
    assert cfg.name == name and cfg.readout_window > 0 and 0.9 < cfg.mask_recall < 1.0


def test_unknown_keys_and_bad_values_are_value_errors() -> None:
    with pytest.raises(ValueError, match="unknown key"):
        config_from_dict({"optim": {"learning_rate": 1.0}})
    with pytest.raises(ValueError, match="unknown config section"):
        config_from_dict({"optimiser": {}})
    with pytest.raises(ValueError):
        config_from_dict({"optim": {"epochs": 0}})
    with pytest.raises(ValueError):
        config_from_dict({"data": {"dataset": "coco"}})
    with pytest.raises(ValueError):
        config_from_dict({"model": {"input_size": 100}})


def test_overrides_parse_yaml_values() -> None:
    raw = apply_overrides({"optim": {"epochs": 3}}, ["optim.epochs=7", "model.gated=false"])
    cfg = config_from_dict(raw)
    assert cfg.optim.epochs == 7 and cfg.model.gated is False
    with pytest.raises(ValueError, match="section.key=value"):
        apply_overrides({}, ["epochs=3"])


def test_lr_warms_up_linearly_then_decays_by_cosine_to_the_floor() -> None:
    total, warm, floor = 100, 10, 0.05
    assert lr_factor(0, total, warm, floor) == pytest.approx(0.1)
    assert lr_factor(9, total, warm, floor) == pytest.approx(1.0)
    assert lr_factor(10, total, warm, floor) == pytest.approx(1.0)
    mid = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * 0.5))
    assert lr_factor(55, total, warm, floor) == pytest.approx(mid)
    assert lr_factor(100, total, warm, floor) == pytest.approx(floor)
    values = [lr_factor(s, total, warm, floor) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def _frame(size: int = 256) -> dict:
    rng = np.random.default_rng(0)
    K = np.array([[300.0, 0, 130.0], [0, 300.0, 125.0], [0, 0, 1]], np.float32)
    j3 = rng.normal(0, 300, (17, 3)) + np.array([0, 0, 4000.0])
    uvw = j3 @ K.T.astype(np.float64)
    mask = np.zeros((size, size), np.uint8)
    mask[100:180, 110:150] = 1
    return {
        "image": rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
        "mask": mask,
        "joints_2d": (uvw[:, :2] / uvw[:, 2:]).astype(np.float32),
        "joints_3d": j3.astype(np.float32),
        "in_frame": np.ones(17, np.uint8),
        "K": K,
    }


def test_fit_to_input_keeps_projection_labels_and_mask_consistent() -> None:
    src = _frame()
    out = fit_to_input(src, 128)
    assert out["image"].shape == (128, 128, 3) and out["mask"].shape == (128, 128)
    uvw = out["joints_3d"].astype(np.float64) @ out["K"].astype(np.float64).T
    np.testing.assert_allclose(uvw[:, :2] / uvw[:, 2:], out["joints_2d"], atol=1e-3)
    assert set(np.unique(out["mask"])) <= {0, 1}
    assert out["mask"].sum() == pytest.approx(src["mask"].sum() / 4, rel=0.05)
    np.testing.assert_array_equal(out["joints_3d"], src["joints_3d"])
    with pytest.raises(ValueError, match="square"):
        fit_to_input({**src, "image": src["image"][:200]}, 128)


def test_lift_to_camera_inverts_the_targets_with_the_true_root_depth() -> None:
    frame = fit_to_input(_frame(), 128)
    j3 = torch.from_numpy(frame["joints_3d"])[None]
    xy = (torch.from_numpy(frame["joints_2d"])[None] + 0.5) / 128
    z = root_relative_depth(j3, 1000.0)
    joints = torch.cat([xy, z[..., None]], dim=-1).double()
    lifted = lift_to_camera(
        joints, torch.from_numpy(frame["K"])[None].double(), j3[:, 0, 2].double(), 128, 1000.0
    )
    torch.testing.assert_close(lifted, j3.double(), atol=1e-2, rtol=0)


def test_sparsity_weight_is_zero_during_the_delay_then_ramps_linearly() -> None:
    assert sparsity_weight(0.1, 2.0, 0.25, 0.25) == 0.0
    assert sparsity_weight(0.25, 2.0, 0.25, 0.25) == pytest.approx(0.0)
    assert sparsity_weight(0.375, 2.0, 0.25, 0.25) == pytest.approx(1.0)
    assert sparsity_weight(0.9, 2.0, 0.25, 0.25) == pytest.approx(2.0)
    assert sparsity_weight(0.0, 2.0, 0.0, 0.0) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        config_from_dict({"masks": {"sparsity_delay": 0.8, "sparsity_ramp": 0.5}})
