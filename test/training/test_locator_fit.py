"""The locator learns where a person-like shape is and its calibration hits the recall asked."""

from __future__ import annotations

import numpy as np
import torch

from sparse_pose_ros.model.locator import PersonLocator
from sparse_pose_ros.training.locator_fit import calibrate, cell_targets, fit_locator


def _scenes(n: int, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Dark noisy images with one bright upright box (the "person") at a random place."""
    rng = np.random.default_rng(seed)
    images = (rng.random((n, size, size, 3)) * 70).astype(np.uint8)
    person = np.zeros((n, size, size), np.float32)
    for i in range(n):
        h, w = rng.integers(14, 30), rng.integers(6, 12)
        y, x = rng.integers(0, size - h), rng.integers(0, size - w)
        images[i, y:y + h, x:x + w] = (220, 190, 170)
        person[i, y:y + h, x:x + w] = 1.0
    return images, person


def _normalise(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def test_cell_targets_mark_cells_with_person_pixels() -> None:
    person = torch.zeros(1, 1, 64, 64)
    person[0, 0, 20:22, 40:41] = 1.0
    cells = cell_targets(person, (4, 4))
    assert cells.sum() == 1 and cells[0, 0, 1, 2] == 1


def test_fit_locator_finds_the_box_and_calibrates_recall() -> None:
    torch.manual_seed(0)
    images, person = _scenes(400)
    loc = PersonLocator(width=16)
    report = fit_locator(loc, images, person, _normalise, epochs=25, recall=0.95, batch=32,
                         lr=1e-2)
    assert report["losses"][-1] < 0.6 * report["losses"][0]
    assert report["cell_recall"] >= 0.94
    # it found the box, not everything: far fewer cells on than a blanket mask
    assert report["cells_on"] < 0.4
    # on new scenes the calibrated operating point holds up
    test_images, test_person = _scenes(100, seed=5)
    fresh = calibrate(loc, test_images, test_person, _normalise, recall=0.9, margin=0)
    assert fresh["cell_recall"] >= 0.89 and fresh["cells_on"] < 0.6
    assert fresh["pixel_recall_with_margin"] >= 0.9
