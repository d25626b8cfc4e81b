"""A few training steps on tiny rendered shards: outputs, resume, checkpoint meta, CLI errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sparse_pose_ros.model.checkpoint import load_checkpoint, read_metadata
from sparse_pose_ros.training import evaluate, train


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_train_then_resume_matches_an_uninterrupted_run(make_config, tmp_path: Path) -> None:
    cfg = make_config()
    run_dir = tmp_path / "runs"
    # Uninterrupted reference run.
    assert train.main(["--config", str(cfg), "--name", "straight", "--no-progress"]) == 0
    # Interrupted after epoch 1, then resumed.
    assert (
        train.main(
            ["--config", str(cfg), "--name", "resumed", "--no-progress", "--stop-after", "1"]
        )
        == 0
    )
    half = read_metadata(run_dir / "resumed" / "last.safetensors")
    assert half["meta"]["epochs_done"] == 1
    assert not (run_dir / "resumed" / "final.safetensors").exists()
    assert train.main(["--config", str(cfg), "--name", "resumed", "--no-progress", "--resume"]) == 0

    straight = load_file(str(run_dir / "straight" / "final.safetensors"))
    resumed = load_file(str(run_dir / "resumed" / "final.safetensors"))
    assert straight.keys() == resumed.keys()
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=0, atol=0, msg=name)

    # The optimiser state is plain tensors/containers: loadable with weights_only=True.
    state = torch.load(run_dir / "resumed" / "last_state.pt", weights_only=True)
    assert state["epoch"] == 2 and state["step"] == 6  # 12 frames / batch 4 = 3 steps x 2

    rows = _rows(run_dir / "resumed" / "train.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 7))
    assert all(float(r["total"]) > 0 for r in rows)
    evals = _rows(run_dir / "resumed" / "eval.csv")
    assert [int(r["epoch"]) for r in evals] == [1, 2]


def test_checkpoint_meta_records_command_config_data_and_metrics(
    make_config, tmp_path: Path
) -> None:
    cfg = make_config(optim={"epochs": 1})
    export = tmp_path / "models" / "smoke.safetensors"
    assert train.main(["--config", str(cfg), "--no-progress", "--export", str(export)]) == 0
    net, info = load_checkpoint(export)
    meta = info["meta"]
    assert "--config" in meta["command"]
    assert "input_size: 64" in meta["config_yaml"]
    assert meta["data"]["train_frames"] == 12 and meta["data"]["test_frames"] == 8
    assert meta["epochs"] == 1 and meta["epochs_done"] == 1
    m = meta["metrics"]
    assert m["samples"] == 8
    assert m["mpjpe_mm"] > 0 and 0.0 <= m["pck@0.1"] <= 1.0
    assert 0.0 < m["backbone_flops_fraction"] <= 1.1
    assert net.cfg.input_size == 64 and net.cfg.gated


def test_dense_model_trains_without_masks(make_config) -> None:
    cfg = make_config(model={"gated": False}, loss={"alpha_sparsity": 0.0}, optim={"epochs": 1})
    assert train.main(["--config", str(cfg), "--no-progress", "--name", "dense"]) == 0
    info = read_metadata(Path(cfg).parent / "runs" / "dense" / "final.safetensors")
    m = info["meta"]["metrics"]
    assert m["gated_blocks"] == [] and m["backbone_flops_fraction"] == pytest.approx(1.0)


def test_evaluate_cli_writes_the_accuracy_json(
    make_config, tiny_shards: Path, tmp_path: Path
) -> None:
    cfg = make_config(optim={"epochs": 1})
    assert train.main(["--config", str(cfg), "--no-progress"]) == 0
    ckpt = tmp_path / "runs" / "smoke" / "final.safetensors"
    out = tmp_path / "acc.json"
    rc = evaluate.main(
        [
            "--checkpoint",
            str(ckpt),
            "--data",
            str(tiny_shards),
            "--out",
            str(out),
            "--threads",
            "1",
            "--batch-size",
            "3",
        ]
    )
    assert rc == 0
    report = json.loads(out.read_text())
    m = report["metrics"]
    assert report["model"] == "final" and report["data"]["frames"] == 8
    assert m["samples"] == 8
    assert set(m["mask"]) == {str(i) for i in m["gated_blocks"]}
    first = m["mask"][str(m["first_gated_block"])]
    assert 0.0 <= first["recall"] <= 1.0 and 0.0 <= first["precision"] <= 1.0
    n_blocks = sum(row[2] for row in report["network"]["arch"])
    assert len(m["per_block_density"]) == n_blocks and report["command"]
    # the crop protocols ran on every frame, boxes from the first pass / from the truth
    for key in ("metrics_two_pass", "metrics_gt_box"):
        assert report[key]["samples"] == 8 and report[key]["mpjpe_mm"] > 0
    assert m["torso"] == "as labelled"
    # a network that outputs the mid-point torso is scored against labels in that definition
    from dataclasses import replace

    from sparse_pose_ros.model.checkpoint import load_checkpoint, save_checkpoint
    from sparse_pose_ros.model.network import PoseNetwork

    net, _ = load_checkpoint(ckpt)
    mid = PoseNetwork(replace(net.cfg, midpoint_torso=True))
    mid.load_state_dict(net.state_dict())
    save_checkpoint(tmp_path / "mid.safetensors", mid, {})
    assert evaluate.main(["--checkpoint", str(tmp_path / "mid.safetensors"), "--data",
                          str(tiny_shards), "--out", str(out), "--threads", "1"]) == 0
    again = json.loads(out.read_text())["metrics"]
    assert again["torso"] == "midpoints" and again["mpjpe_mm"] > 0


def test_bad_inputs_give_exit_code_2_not_a_traceback(make_config, tmp_path: Path) -> None:
    bad = make_config(name="bad", optim={"epochs": 0})
    assert train.main(["--config", str(bad), "--no-progress"]) == 2
    cfg = make_config()
    assert train.main(["--config", str(cfg), "--no-progress", "--resume", "--name", "none"]) == 2
    assert (
        train.main(
            ["--config", str(cfg), "--no-progress", "--data-root", str(tmp_path / "missing")]
        )
        == 2
    )
    assert evaluate.main(["--checkpoint", str(tmp_path / "missing.safetensors")]) == 2


def test_init_from_copies_matching_tensors_and_leaves_mask_units_fresh(tmp_path: Path) -> None:
    from sparse_pose_ros.export.random_model import random_network
    from sparse_pose_ros.model.checkpoint import save_checkpoint
    from sparse_pose_ros.model.network import NetworkConfig, PoseNetwork

    src = tmp_path / "dense.safetensors"
    save_checkpoint(src, random_network(gated=False, input_size=64, seed=3))
    dense = load_file(str(src))
    torch.manual_seed(0)
    net = PoseNetwork(NetworkConfig(input_size=64, width_mult=0.5, gate_strided=True))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    info = train.init_from(net, src)
    after = net.state_dict()
    copied = [k for k in after if k in dense and dense[k].shape == after[k].shape]
    assert info["copied"] == len(copied) > 0 and info["fresh"] == len(after) - len(copied)
    for k in copied:
        torch.testing.assert_close(after[k], dense[k], rtol=0, atol=0, msg=k)
    masks = [k for k in after if "mask_unit" in k]
    assert masks and all(torch.equal(after[k], before[k]) for k in masks)


def test_init_from_refuses_another_width(tmp_path: Path) -> None:
    from sparse_pose_ros.export.random_model import random_network
    from sparse_pose_ros.model.checkpoint import save_checkpoint
    from sparse_pose_ros.model.network import NetworkConfig, PoseNetwork

    src = tmp_path / "dense.safetensors"
    save_checkpoint(src, random_network(gated=False, input_size=64, width_mult=1.0, seed=3))
    net = PoseNetwork(NetworkConfig(input_size=64, width_mult=0.5, gate_strided=True))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match="another architecture"):
        train.init_from(net, src)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_init_from_is_a_new_run_not_a_resume(make_config, tmp_path: Path) -> None:
    cfg = make_config()
    missing = tmp_path / "missing.safetensors"
    args = ["--config", str(cfg), "--no-progress", "--init-from"]
    assert train.main([*args, str(missing)]) == 2
    from sparse_pose_ros.export.random_model import random_network
    from sparse_pose_ros.model.checkpoint import save_checkpoint

    src = tmp_path / "dense.safetensors"
    save_checkpoint(src, random_network(gated=False, input_size=64, seed=3))
    assert train.main([*args, str(src), "--resume"]) == 2


def _movenet_model_section() -> dict:
    from sparse_pose_ros.model.network import movenet_config

    d = movenet_config("lightning", input_size=64).to_dict()
    d.pop("extra", None)
    return d


def test_heads_train_on_frozen_imported_features(make_config, tmp_path: Path) -> None:
    """The MoveNet recipe's mechanics: start from an imported checkpoint, freeze backbone, FPN
    and MoveNet's heads (mask units still learn), keep the folded BatchNorm in eval mode; the
    frozen tensors and BN statistics come out bit-identical, the HEMlets head moves. Without
    ``freeze_batchnorm`` an imported checkpoint is refused."""
    from sparse_pose_ros.export.random_model import randomize_network
    from sparse_pose_ros.model.checkpoint import load_checkpoint, save_checkpoint
    from sparse_pose_ros.model.network import PoseNetwork, movenet_config

    src = tmp_path / "imported.safetensors"
    torch.manual_seed(0)
    imported = randomize_network(PoseNetwork(movenet_config("lightning", input_size=64)), seed=2)
    save_checkpoint(src, imported, meta={"source": {"package": "test", "model": "lightning"}})
    model = _movenet_model_section()
    refused = make_config("refused", model=model,
                          optim={"epochs": 1, "freeze": ["backbone", "neck", "movenet"]})
    assert train.main(["--config", str(refused), "--no-progress", "--init-from", str(src)]) == 2
    cfg = make_config("frozen", model=model, run={"name": "frozen"},
                      optim={"epochs": 1, "freeze": ["backbone", "neck", "movenet"],
                             "freeze_batchnorm": True})
    assert train.main(["--config", str(cfg), "--no-progress", "--init-from", str(src)]) == 0
    trained, _ = load_checkpoint(tmp_path / "runs" / "frozen" / "final.safetensors")
    before, after = imported.state_dict(), trained.state_dict()
    frozen = [k for k in before if k.split(".")[0] in ("backbone", "neck", "movenet")
              and ".mask_unit." not in k]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("head."))
    assert any(not torch.equal(before[k], after[k]) for k in before if ".mask_unit." in k)
