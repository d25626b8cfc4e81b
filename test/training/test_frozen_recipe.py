"""The frozen-backbone recipe end to end on a tiny imported network and a tiny label cache."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from sparse_pose_ros import skeleton
from sparse_pose_ros.data import label_cache as lc
from sparse_pose_ros.data.real_sources import SOURCES_BY_ID


def _fake_label_set(folder: Path, n: int = 6) -> None:
    """``n`` still frames of a bright figure on a dark background, labelled as a training
    source (joints on the figure, the figure as the teacher's mask)."""
    rng = np.random.default_rng(0)
    rec = dict(SOURCES_BY_ID["sam2_juggle"].record())
    rec["id"], rec["split"] = "fake", "train"
    frames, files = [], []
    bp = {k: np.zeros((n, *shape), np.float32) for k, shape in lc.BLAZEPOSE_ARRAYS.items()}
    masks = {}
    for i in range(n):
        img = (rng.random((120, 160, 3)) * 60).astype(np.uint8)
        x0, y0 = 40 + 10 * i, 20
        img[y0:y0 + 80, x0:x0 + 30] = (230, 200, 180)
        path = folder / f"f{i}.png"
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), img)
        fid = f"fake_f{i:05d}"
        frames.append({"id": fid, "member": f"f{i}.png", "view": None, "index": None,
                       "width": 160, "height": 120, "detected": {"blazepose": True}})
        files.append({"member": f"f{i}.png", "path": str(path)})
        ys = np.linspace(y0 + 5, y0 + 75, skeleton.NUM_JOINTS)
        xs = x0 + 15 + 8 * np.sin(np.arange(skeleton.NUM_JOINTS))
        bp["h36m_px"][i] = np.stack([xs, ys], 1)
        bp["h36m_visibility"][i] = 1.0
        bp["h36m_world_m"][i] = rng.normal(0, 0.2, (skeleton.NUM_JOINTS, 3))
        m = np.zeros((30, 40), np.uint8)
        m[y0 // 4:(y0 + 80) // 4, x0 // 4:(x0 + 30) // 4] = 255
        masks[fid] = m
    bp["detected"] = np.ones(n, bool)
    bp["frame_ids"] = np.array([f["id"] for f in frames])
    lc.write_label_set(folder, {"source": rec, "frames": frames, "files": files}, bp, masks)


@pytest.fixture()
def imported(tmp_path: Path) -> Path:
    from sparse_pose_ros.export.random_model import randomize_network
    from sparse_pose_ros.model.checkpoint import save_checkpoint
    from sparse_pose_ros.model.network import PoseNetwork, movenet_config

    torch.manual_seed(0)
    net = randomize_network(PoseNetwork(movenet_config("lightning", input_size=64)), seed=2)
    path = tmp_path / "imported.safetensors"
    save_checkpoint(path, net, meta={"source": {"package": "test", "model": "lightning"}})
    return path

def _locator_recipe(tmp_path: Path, imported: Path, **overrides: object) -> dict:
    """A fake training label set and a small locator-masked recipe config (a dict) on it."""
    _fake_label_set(tmp_path / "labels" / "fake")
    cfg = {"recipe": "frozen_backbone", "name": "r", "out_dir": str(tmp_path / "runs"),
           "init_from": str(imported), "labels": str(tmp_path / "labels"), "synthetic": "",
           "crops_per_frame": 2, "pastes": 4, "epochs": 2, "sparse_epochs": 1,
           "batch_size": 4, "mask_cells": 4, "threads": 1, "mask_source": "locator",
           "locator_epochs": 3, "locator_recall": 0.9, "region_share": 0.5,
           "dense_out": str(tmp_path / "dense.safetensors"),
           "sparse_out": str(tmp_path / "sparse.safetensors")}
    cfg.update(overrides)
    return cfg



def test_recipe_trains_heads_and_masks_on_frozen_features(tmp_path: Path, imported: Path
                                                          ) -> None:
    from sparse_pose_ros.model.checkpoint import load_checkpoint
    from sparse_pose_ros.training import train

    _fake_label_set(tmp_path / "labels" / "fake")
    cfg = {"recipe": "frozen_backbone", "name": "r", "out_dir": str(tmp_path / "runs"),
           "init_from": str(imported), "labels": str(tmp_path / "labels"), "synthetic": "",
           "crops_per_frame": 2, "pastes": 4, "epochs": 3, "sparse_epochs": 1,
           "batch_size": 4, "mask_cells": 4, "threads": 1,
           "dense_out": str(tmp_path / "dense.safetensors"),
           "sparse_out": str(tmp_path / "sparse.safetensors")}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert train.main(["--config", str(path)]) == 0  # dispatched by the `recipe` key

    src, _ = load_checkpoint(imported)
    dense, dinfo = load_checkpoint(tmp_path / "dense.safetensors")
    sparse, sinfo = load_checkpoint(tmp_path / "sparse.safetensors")
    assert not dense.cfg.gated and sparse.cfg.gated and sparse.cfg.gate_strided
    assert len(sparse.gated_blocks()) == len(sparse.backbone.blocks)
    assert dinfo["meta"]["recipe"] == "frozen_backbone" and sinfo["meta"]["variant"] == "sparse"
    # both saved with the person prior (the recipe's default), the source network without it
    assert dense.cfg.person_prior and sparse.cfg.person_prior and not src.cfg.person_prior
    # fp16 storage: the frozen backbone is the imported one to fp16 precision, the head moved.
    s0, s1 = src.state_dict(), dense.state_dict()
    frozen = [k for k in s0 if k.startswith(("backbone.", "neck.", "movenet."))
              and ".mask_unit." not in k]
    assert frozen and all(torch.allclose(s0[k], s1[k], rtol=1e-3, atol=1e-3) for k in frozen)
    assert not torch.allclose(s0["head.depth.weight"], s1["head.depth.weight"])
    # head_pre starts as MoveNet's keypoint branch: it must have moved away from random init.
    report = json.loads((tmp_path / "runs" / "r" / "recipe.json").read_text())
    assert len(report["masks"]) == len(sparse.backbone.blocks)
    assert all(m["recall"] >= 0.9 for m in report["masks"])
    losses = [e["total"] for e in report["dense_head"]]
    assert losses[-1] < losses[0]
    # A second run reuses the cached stages (features are not recomputed).
    seconds = report["features_seconds"]
    assert train.main(["--config", str(path), "--resume"]) == 0
    again = json.loads((tmp_path / "runs" / "r" / "recipe.json").read_text())
    assert again["features_seconds"] == seconds


def test_fit_mask_unit_reaches_the_recall_target() -> None:
    from sparse_pose_ros.training.frozen_recipe import fit_mask_unit

    rng = np.random.default_rng(1)
    y = rng.random(2000) < 0.5
    x = rng.normal(0, 1, (2000, 8)).astype(np.float32)
    x[:, 0] += 2.0 * y  # one informative channel
    pos = np.full(2000, 100)
    neg = np.full(2000, 900)
    w, b, stats = fit_mask_unit(x, y, pos, neg, recall=0.95)
    fired = x @ w + b >= 0
    assert abs(fired[y].mean() - 0.95) < 0.01
    assert fired[~y].mean() < 0.6  # the informative channel is used
    assert abs(stats["density"] - (0.1 * fired[y].mean() + 0.9 * fired[~y].mean())) < 1e-6


def test_recipe_refuses_a_checkpoint_that_is_not_imported(tmp_path: Path) -> None:
    from sparse_pose_ros.export.random_model import random_network
    from sparse_pose_ros.model.checkpoint import save_checkpoint
    from sparse_pose_ros.training import frozen_recipe

    path = tmp_path / "plain.safetensors"
    save_checkpoint(path, random_network(gated=False, input_size=64, seed=3))
    cfg = frozen_recipe.RecipeConfig(init_from=str(path))
    with pytest.raises(ValueError, match="not an imported MoveNet"):
        frozen_recipe.build_network(cfg)
    with pytest.raises(ValueError, match="unknown keys"):
        (tmp_path / "bad.yaml").write_text("recipe: frozen_backbone\nepochz: 3\n")
        frozen_recipe.RecipeConfig.from_yaml(tmp_path / "bad.yaml")


def test_recipe_with_a_person_locator(tmp_path: Path, imported: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """``mask_source: locator``: the sparse checkpoint's masks come from a trained, calibrated
    locator; the dense checkpoint is the same as with mask units."""
    from sparse_pose_ros.model.checkpoint import load_checkpoint
    from sparse_pose_ros.training import train

    cfg = _locator_recipe(tmp_path, imported, lifter_steps=20, lifter_views_per_pose=2,
                          midpoint_torso=True)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert train.main(["--config", str(path)]) == 0
    dense, _ = load_checkpoint(tmp_path / "dense.safetensors")
    sparse, sinfo = load_checkpoint(tmp_path / "sparse.safetensors")
    assert not dense.cfg.gated and dense.backbone.locator is None
    assert sparse.cfg.mask_source == "locator" and sinfo["meta"]["mask_source"] == "locator"
    report = json.loads((tmp_path / "runs" / "r" / "recipe.json").read_text())
    assert "masks" not in report  # no mask unit was fitted
    loc = report["locator"]
    assert loc["epochs"] == 3 and abs(loc["cell_recall"] - 0.9) < 0.1
    assert json.loads(sinfo["meta"]["masks"])["offset"] == loc["offset"]
    assert (tmp_path / "runs" / "r" / "locator.pt").is_file()
    # both checkpoints carry the same depth lifter, trained on the cache's real 3D skeletons
    assert dense.lifter is not None and sparse.lifter is not None
    assert dense.cfg.midpoint_torso and sparse.cfg.midpoint_torso
    for k, v in dense.lifter.state_dict().items():
        torch.testing.assert_close(sparse.lifter.state_dict()[k], v)
    lift = report["lifter"]
    assert lift["real_poses"] == {"fake:blazepose_world": 6} and lift["steps"] == 20
    assert lift["train_pairs"] == 6 * 2 and "synthetic_frames" not in lift
    x = torch.zeros(1, 3, 64, 64)
    with torch.no_grad():
        out = sparse(x)
        cells = sparse.backbone.locator_masks(x)
    assert all(torch.equal(m.hard, c) for m, c in zip(out.masks, cells, strict=True))
    # dense_share changes only the sparse head: it is fine-tuned again (not the cached one),
    # on features of which that share are the dense ones; the gated features are reused
    seconds = report["sparse_features_seconds"]
    head = torch.load(tmp_path / "runs" / "r" / "sparse_head.pt", weights_only=True)
    cfg["dense_share"] = 1.0
    path.write_text(yaml.safe_dump(cfg))
    assert train.main(["--config", str(path)]) == 0
    again = json.loads((tmp_path / "runs" / "r" / "recipe.json").read_text())
    assert again["sparse_features_seconds"] == seconds
    assert again["lifter"] == lift  # cached: same settings, not retrained
    assert again["sparse_dense_rows"] == len(np.load(tmp_path / "runs" / "r"
                                                     / "dense_features.npz")["feats"])
    moved = torch.load(tmp_path / "runs" / "r" / "sparse_head.pt", weights_only=True)
    assert any(not torch.equal(head[k], moved[k]) for k in head)
    # with the network's own 2D each checkpoint gets its own lifter (this cache has no
    # calibrated views, so no such pairs; test_lifter_network_2d.py has a cache with them),
    # read as the saved checkpoint reads it: with the person prior
    from sparse_pose_ros.training import frozen_recipe

    read_with: list[tuple[bool, bool]] = []
    own_2d = frozen_recipe.with_network_2d

    def recorded(net, *args, **kwargs):  # type: ignore[no-untyped-def]
        read_with.append((net.cfg.person_prior, net.cfg.gated))
        return own_2d(net, *args, **kwargs)

    monkeypatch.setattr(frozen_recipe, "with_network_2d", recorded)
    cfg["lifter_network_2d_share"] = 0.3
    path.write_text(yaml.safe_dump(cfg))
    assert train.main(["--config", str(path)]) == 0
    # the dense stage reads as the dense checkpoint (ungated: whole crops and strips), then
    # the sparse one as the gated checkpoint
    assert read_with == [(True, False), (True, True)]
    key = json.loads((tmp_path / "runs" / "r" / "lifter_dense.json").read_text())
    assert key["person_prior"] is True  # a lifter of the 2D read without it is not reused
    own = json.loads((tmp_path / "runs" / "r" / "recipe.json").read_text())
    assert "lifter" not in own and own["sparse_features_seconds"] == seconds
    for variant in ("dense", "sparse"):
        assert own[f"lifter_{variant}"]["network_2d"]["pairs"] == 0
        assert (tmp_path / "runs" / "r" / f"lifter_{variant}.pt").is_file()


def test_with_dense_rows_replaces_the_drawn_share() -> None:
    from sparse_pose_ros.training.frozen_recipe import with_dense_rows

    sparse = np.zeros((400, 2, 3, 3), np.float16)
    dense = np.ones_like(sparse)
    mixed, rows = with_dense_rows(sparse.copy(), dense, 0.25, seed=0)
    assert 0.15 < rows.mean() < 0.35
    assert (mixed[rows] == 1).all() and (mixed[~rows] == 0).all()
    assert not with_dense_rows(sparse.copy(), dense, 0.0, seed=0)[1].any()
    assert with_dense_rows(sparse.copy(), dense, 1.0, seed=0)[1].all()
    with pytest.raises(ValueError, match="differ"):
        with_dense_rows(sparse, dense[:3], 0.5, seed=0)
    with pytest.raises(ValueError, match="dense_share"):
        with_dense_rows(sparse, dense, 1.5, seed=0)


def test_lifter_stage_is_cached_per_setting_and_off_by_default(tmp_path: Path) -> None:
    from sparse_pose_ros.training.frozen_recipe import RecipeConfig, lifter_stage

    _fake_label_set(tmp_path / "labels" / "fake")
    base = RecipeConfig(out_dir=str(tmp_path / "runs"), labels=str(tmp_path / "labels"),
                        synthetic="", lifter_steps=10, lifter_views_per_pose=3)
    report: dict = {"lifter": "stale"}
    assert lifter_stage(RecipeConfig(lifter_steps=0), report, 1000.0) is None
    assert "lifter" not in report  # a record of an earlier setting is not ours
    first = lifter_stage(base, report, 1000.0)
    assert first is not None and not first.training and report["lifter"]["train_pairs"] == 18
    again: dict = {}
    cached = lifter_stage(base, again, 1000.0)
    assert again == {}  # loaded, not trained
    for k, v in first.state_dict().items():
        torch.testing.assert_close(cached.state_dict()[k], v)
    changed: dict = {}
    lifter_stage(RecipeConfig(**{**base.__dict__, "lifter_views_per_pose": 5}), changed, 1000.0)
    assert changed["lifter"]["train_pairs"] == 30
    torso: dict = {}  # another torso definition is another lifter: trained, not loaded
    lifter_stage(RecipeConfig(**{**base.__dict__, "midpoint_torso": True}), torso, 1000.0)
    assert torso["lifter"]["train_pairs"] == 18
    _fake_label_set(tmp_path / "labels" / "fake", n=8)  # the cache gained skeletons (a teacher)
    grown: dict = {}
    lifter_stage(base, grown, 1000.0)
    assert grown["lifter"]["train_pairs"] == 24  # retrained on them, not the cached lifter
    trusted: dict = {}  # another weighting is another lifter
    lifter_stage(RecipeConfig(**{**base.__dict__, "lifter_weighting": "trust"}), trusted, 1000.0)
    assert trusted["lifter"]["weighting"] == "trust"
    with pytest.raises(ValueError, match="lifter_weighting"):
        lifter_stage(RecipeConfig(**{**base.__dict__, "lifter_weighting": "x"}), {}, 1000.0)


def test_train_lifter_cli_adds_the_label_cache_skeletons(tmp_path: Path, tiny_shards: Path
                                                         ) -> None:
    from sparse_pose_ros.model.checkpoint import load_checkpoint, save_checkpoint
    from sparse_pose_ros.model.network import NetworkConfig, PoseNetwork
    from sparse_pose_ros.training.train_lifter import main

    _fake_label_set(tmp_path / "labels" / "fake")
    net = PoseNetwork(NetworkConfig(input_size=64, width_mult=0.35, head_channels=16,
                                    gated=False))
    ckpt, out = tmp_path / "net.safetensors", tmp_path / "lifted.safetensors"
    save_checkpoint(ckpt, net, {})
    common = ["--checkpoint", str(ckpt), "--data", str(tiny_shards), "--out", str(out),
              "--steps", "20", "--batch-size", "8", "--hidden", "16", "--eval-frames", "0"]
    assert main([*common, "--real-labels", str(tmp_path / "labels"),
                 "--views-per-pose", "3"]) == 0
    _, info = load_checkpoint(out)
    record = info["meta"]["lifter"]
    # the network's own 2D is asked for by default, but this cache has no calibrated views
    own = record["train_sources"].pop("network_2d")
    assert own["pairs"] == 0 and own["share"] == 0.3 and own["persons_x_views"] == {}
    assert record["train_sources"] == {"synthetic_frames": 12, "views_per_real_pose": 3,
                                       "synthetic_torso": "midpoints",
                                       "real_poses": {"fake:blazepose_world": 6}}
    assert record["train_frames"] == 12 + 6 * 3
    # a missing label cache or a bad view count: refused, nothing written
    out.unlink()
    assert main([*common, "--real-labels", str(tmp_path / "missing")]) == 2
    for bad in (["--views-per-pose", "0"], ["--network-2d-share", "1"],
                ["--network-2d-sizes", "100"], ["--network-2d-crops", "0"]):
        with pytest.raises(SystemExit):
            main([*common, *bad])
    assert not out.exists()


def test_recipe_fits_the_skip_fill_of_the_sparse_checkpoint_only(tmp_path: Path,
                                                                  imported: Path) -> None:
    """``skip_fill: true``: every gated block of the sparse checkpoint carries the mean branch
    output of the training frames, fitted before its head's gated features; the dense
    checkpoint has none; turning it on recomputes the gated features (they depend on it)."""
    from sparse_pose_ros.model.checkpoint import load_checkpoint
    from sparse_pose_ros.training import train
    from sparse_pose_ros.training.skip_fill import branch_means, training_frames

    cfg = _locator_recipe(tmp_path, imported, crops_per_frame=1, pastes=2, epochs=1,
                          locator_epochs=1)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert train.main(["--config", str(path)]) == 0
    first = json.loads((tmp_path / "runs" / "r" / "recipe.json").read_text())
    assert "skip_fill" not in first
    key_before = np.load(tmp_path / "runs" / "r" / "sparse_features.npz")["masks"]
    cfg.update(skip_fill=True, skip_fill_frames=4)
    path.write_text(yaml.safe_dump(cfg))
    assert train.main(["--config", str(path)]) == 0
    report = json.loads((tmp_path / "runs" / "r" / "recipe.json").read_text())
    assert report["skip_fill"]["frames"] == 4 and report["skip_fill"]["per_source"] == 4
    # the gated features' cache key holds the fills, so they were computed again
    key_after = np.load(tmp_path / "runs" / "r" / "sparse_features.npz")["masks"]
    assert key_after.size > key_before.size
    dense, _ = load_checkpoint(tmp_path / "dense.safetensors")
    sparse, _ = load_checkpoint(tmp_path / "sparse.safetensors")
    assert not dense.cfg.skip_fill and sparse.cfg.skip_fill
    assert all(b.skip_fill is None for b in dense.backbone.blocks)
    # the stored fill is the mean branch output over every cell of those frames
    want, n = branch_means(sparse.float(), training_frames(tmp_path / "labels", 4))
    assert n == 4
    for b, w in zip(sparse.gated_blocks(), want, strict=True):
        torch.testing.assert_close(b.skip_fill.float(), w, atol=2e-3, rtol=2e-3)
        assert float(b.skip_fill.abs().max()) > 0


def test_the_gated_features_key_holds_the_region_ring() -> None:
    """A cache of gated features made while regions still reached the stride-32 grid with a
    ring is not reused once the network reads them without it (a filled model): the key
    differs, so the recipe recomputes the features and fine-tunes the sparse head again."""
    from sparse_pose_ros.model.network import NetworkConfig, PoseNetwork
    from sparse_pose_ros.training.frozen_recipe import sparse_features_key

    net = PoseNetwork(NetworkConfig(width_mult=0.35, input_size=64, gated=True))
    state = {"a.skip_fill": torch.ones(3)}
    net.backbone.region_ring = True
    ring = sparse_features_key(net, state, 0.7)
    net.backbone.region_ring = False
    plain = sparse_features_key(net, state, 0.7)
    assert ring.shape == plain.shape and not np.array_equal(ring, plain)
    assert not np.array_equal(plain, sparse_features_key(net, state, 0.5))
    assert np.array_equal(plain, sparse_features_key(net, state, 0.7))
