"""``python -m sparse_pose_ros.export``: files, names, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnx

from sparse_pose_ros.export.cli import main
from sparse_pose_ros.export.metadata import read_metadata
from sparse_pose_ros.export.random_model import random_network
from sparse_pose_ros.model.checkpoint import save_checkpoint


def test_cli_writes_both_graphs(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    ckpt = tmp_path / "tiny.safetensors"
    digest = save_checkpoint(ckpt, random_network(gated=True, input_size=64))
    out = tmp_path / "out"
    assert main(["--checkpoint", str(ckpt), "--out", str(out), "--input-size", "96"]) == 0
    portable, plugin = out / "tiny_portable_96.onnx", out / "tiny_plugin_96.onnx"
    assert f"portable: {portable}" in capsys.readouterr().out
    for path, kind in ((portable, "portable"), (plugin, "plugin")):
        meta = read_metadata(path)
        assert (meta.graph, meta.info.input_size, meta.info.model_hash) == (kind, 96, digest)
        assert meta.opset == 17
        model = onnx.load(str(path))
        dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        assert dims == [1, 3, 96, 96]


def test_cli_errors(tmp_path: Path) -> None:
    assert main(["--checkpoint", str(tmp_path / "none.safetensors"), "--out", str(tmp_path)]) == 2
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(ckpt, random_network(gated=False, input_size=64))
    bad = ["--checkpoint", str(ckpt), "--out", str(tmp_path), "--input-size", "50"]
    assert main(bad) == 2


def test_module_entry_point(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sparse_pose_ros.export", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0 and "--graph" in proc.stdout
