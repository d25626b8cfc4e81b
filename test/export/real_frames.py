"""Real photographs, letterboxed and normalised as the node does, for parity tests.

A uniquely named module (not conftest.py) so `from real_frames import ...` is unambiguous when
several test folders each have a conftest."""

from __future__ import annotations

from pathlib import Path

import matplotlib.cbook
import numpy as np
import skimage.data
import skimage.io

from sparse_pose_ros.pipeline.preprocess import letterbox, mean_fill, normalise

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def real_photos() -> dict[str, np.ndarray]:
    """RGB uint8 photographs shipped with scikit-image and matplotlib (two show a person)."""
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = skimage.io.imread(f)
    return {
        "astronaut": skimage.data.astronaut(),
        "grace_hopper": np.ascontiguousarray(hopper[..., :3]),
        "coffee": skimage.data.coffee(),  # landscape: letterbox pads top and bottom
        "rocket": skimage.data.rocket(),
    }


def frames(input_size: int, names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Network inputs (1, 3, S, S) float32 from the real photos."""
    out = {}
    for name, rgb in real_photos().items():
        if names is None or name in names:
            canvas, _ = letterbox(rgb, input_size, fill=mean_fill(MEAN))
            out[name] = normalise(canvas, MEAN, STD)
    return out


def trained_checkpoints() -> list[Path]:
    root = Path(__file__).resolve().parents[2] / "models"
    return sorted(root.glob("*.safetensors")) if root.is_dir() else []
