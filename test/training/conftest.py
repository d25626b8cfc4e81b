"""Tiny synthetic shards rendered once per test session (skipped where the renderer cannot run)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 training and 8 test frames of synth_v1's generator at 256×256, in shards of 4/8."""
    try:
        from sparse_pose_ros.data.generate import generate
        from sparse_pose_ros.data.synthetic import SyntheticGenerator  # noqa: F401  (GL import)
    except Exception as exc:  # noqa: BLE001 — OSMesa/pyrender missing shows up as many types
        pytest.skip(f"synthetic renderer unavailable ({type(exc).__name__}: {exc})")
    root = tmp_path_factory.mktemp("synth")
    try:
        generate(root / "train", "train", 12, 1, 0, 4, show_progress=False)
        generate(root / "test", "test", 8, 1, 1, 8, show_progress=False)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"synthetic renderer failed here ({type(exc).__name__}: {exc})")
    return root


def _write_config(path: Path, data_root: Path, out_dir: Path, **sections: dict) -> Path:
    """A fast config (64 px input, width 0.25, batch 4) with section overrides."""
    cfg = {
        "model": {
            "input_size": 64,
            "width_mult": 0.25,
            "gated": True,
            "gate_strided": True,
            "head_channels": 16,
        },
        "loss": {"alpha_sparsity": 1.0, "theta": 0.3},
        "masks": {"mask_lr_scale": 10.0},
        "optim": {"epochs": 2, "batch_size": 4, "lr": 0.002, "warmup_epochs": 0.5},
        "data": {"root": str(data_root), "workers": 0},
        "eval": {"every_epochs": 1, "max_frames": 8, "batch_size": 4},
        "run": {"name": "smoke", "out_dir": str(out_dir), "threads": 1, "log_every": 1},
    }
    for section, values in sections.items():
        cfg[section].update(values)
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def make_config(tmp_path: Path, tiny_shards: Path):
    """``make_config(name, **sections)`` -> path of a fast config over the tiny shards."""

    def make(name: str = "smoke", **sections: dict) -> Path:
        return _write_config(tmp_path / f"{name}.yaml", tiny_shards, tmp_path / "runs", **sections)

    return make
