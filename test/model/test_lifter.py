"""Depth lifter: normalisation invariances, root at zero, refine keeps x/y, attached to the
network, and the training CLI end to end on a tiny rendered-label fixture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fake_shard_frame import FakeShardFrame

from sparse_pose_ros import skeleton
from sparse_pose_ros.model.lifter import PoseLifter, normalise_2d
from sparse_pose_ros.model.network import NetworkConfig, PoseNetwork

J = skeleton.NUM_JOINTS


def test_normalisation_ignores_position_and_scale():
    torch.manual_seed(0)
    xy = torch.rand(3, J, 2)
    moved = xy * 2.5 + torch.tensor([0.3, -0.1])
    torch.testing.assert_close(normalise_2d(xy), normalise_2d(moved))
    f = normalise_2d(xy).view(3, J, 2)
    assert torch.allclose(f[:, skeleton.ROOT], torch.zeros(3, 2))
    assert torch.allclose(f.pow(2).sum(-1).mean(-1), torch.ones(3), atol=1e-5)
    collapsed = normalise_2d(torch.full((1, J, 2), 0.5))  # untrained network: no blow-up
    assert torch.isfinite(collapsed).all() and collapsed.abs().max() == 0


def test_lifter_root_is_zero_and_refine_keeps_xy():
    lifter = PoseLifter(32).eval()
    joints = torch.rand(2, J, 3)
    out = lifter.refine(joints)
    torch.testing.assert_close(out[..., :2], joints[..., :2])
    assert torch.all(out[:, skeleton.ROOT, 2] == 0)
    with pytest.raises(ValueError):
        lifter(torch.rand(2, J, 3))
    with pytest.raises(ValueError):
        PoseLifter(0)


def test_network_with_lifter_uses_its_depth():
    torch.manual_seed(0)
    base = dict(input_size=64, width_mult=0.35, head_channels=16, gated=False)
    plain = PoseNetwork(NetworkConfig(**base)).eval()
    lifted = PoseNetwork(NetworkConfig(**base, lifter_hidden=16)).eval()
    state = {**plain.state_dict(), **{k: v for k, v in lifted.state_dict().items()
                                      if k.startswith("lifter.")}}  # fmt: skip
    lifted.load_state_dict(state)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = plain(x), lifted(x)
    torch.testing.assert_close(a.joints[..., :2], b.joints[..., :2])
    torch.testing.assert_close(b.joints, lifted.lifter.refine(a.joints))
    with pytest.raises(ValueError):
        NetworkConfig(**base, lifter_hidden=-1)


def test_midpoint_matrix_defines_the_torso():
    m = np.array(skeleton.midpoint_matrix())
    idx = {n: i for i, n in enumerate(skeleton.JOINT_NAMES)}
    rng = np.random.default_rng(0)
    x = rng.normal(size=(J, 3))
    y = m @ x
    np.testing.assert_allclose(y[idx["pelvis"]], (x[idx["left_hip"]] + x[idx["right_hip"]]) / 2)
    np.testing.assert_allclose(
        y[idx["thorax"]], (x[idx["left_shoulder"]] + x[idx["right_shoulder"]]) / 2)
    np.testing.assert_allclose(y[idx["spine"]], (y[idx["pelvis"]] + y[idx["thorax"]]) / 2)
    torso = {j for j, _, _ in skeleton.MIDPOINT_JOINTS}
    others = [j for j in range(J) if j not in torso]
    np.testing.assert_array_equal(y[others], x[others])
    np.testing.assert_allclose(m @ m, m)  # applying it twice changes nothing


def test_network_midpoint_torso_output():
    """The torso joints come out as mid-points in the image and in depth (root at 0), every
    other joint's image position is the head's, and no weight is added: a checkpoint of the
    same lifter without the flag has the same tensors."""
    from sparse_pose_ros.training.train_lifter import attach

    torch.manual_seed(0)
    base = dict(input_size=64, width_mult=0.35, head_channels=16, gated=False)
    plain = PoseNetwork(NetworkConfig(**base)).eval()
    lifter = PoseLifter(16).eval()
    mid, raw = attach(plain, lifter, 16, midpoint_torso=True), attach(plain, lifter, 16)
    assert mid.cfg.midpoint_torso and not raw.cfg.midpoint_torso
    assert NetworkConfig.from_dict(mid.cfg.to_dict()).midpoint_torso
    assert mid.state_dict().keys() == raw.state_dict().keys()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        head, out = plain(x).joints, mid(x).joints
    m = torch.tensor(skeleton.midpoint_matrix())
    torch.testing.assert_close(out[..., :2], m @ head[..., :2])
    torch.testing.assert_close(out[..., 2:], m @ out[..., 2:])  # depth follows it too
    assert torch.all(out[:, skeleton.ROOT, 2] == 0)
    assert not torch.equal(out[..., :2], head[..., :2])  # it did move the torso
    with torch.no_grad():
        lifted_from_mid = lifter.refine(m @ head)
    others = [j for j in range(J) if j not in {t for t, _, _ in skeleton.MIDPOINT_JOINTS}]
    z = lifted_from_mid[..., 2] - (lifted_from_mid[..., 1, 2] + lifted_from_mid[..., 4, 2])[
        :, None] / 2  # the lifter's depth re-rooted at the hips' mid-point
    torch.testing.assert_close(out[:, others, 2], z[:, others])


def _write_split(root, split: str, n: int, seed: int) -> None:
    """Shards whose labels are a simple projected skeleton family (no rendering needed)."""
    from sparse_pose_ros.data.shards import write_shard

    rng = np.random.default_rng(seed)
    (root / split).mkdir(parents=True)
    frames = []
    for i in range(n):
        j3 = np.zeros((J, 3), np.float32)
        j3[:, 0] = rng.normal(0, 150, J)
        j3[:, 1] = np.linspace(-800, 800, J) + rng.normal(0, 30, J)
        # depth follows the 2D shape, whatever its roll or mirror image: learnable
        j3[:, 2] = 3000 + 0.3 * np.linalg.norm(j3[:, :2] - j3[:1, :2], axis=1)
        K = np.array([[200, 0, 31.5], [0, 200, 31.5], [0, 0, 1]], np.float32)
        uv = (j3 @ K.T)[:, :2] / j3[:, 2:3]
        frames.append(FakeShardFrame(np.zeros((64, 64, 3), np.uint8),
                                     np.zeros((64, 64), np.uint8), uv, j3, K, i))  # fmt: skip
    write_shard(root / split / f"{split}-00000.npz", frames, {"split": split, "seed": seed,
                "first": 0, "count": n, "outfits": False})  # fmt: skip


def test_train_lifter_cli_attaches_a_working_lifter(tmp_path):
    from sparse_pose_ros.model.checkpoint import load_checkpoint, save_checkpoint
    from sparse_pose_ros.training.train_lifter import main

    _write_split(tmp_path / "data", "train", 64, 0)
    _write_split(tmp_path / "data", "test", 16, 1)
    torch.manual_seed(0)
    net = PoseNetwork(NetworkConfig(input_size=64, width_mult=0.35, head_channels=16,
                                    gated=False))  # fmt: skip
    ckpt = tmp_path / "net.safetensors"
    save_checkpoint(ckpt, net, {"note": "untrained"})
    out = tmp_path / "lifted.safetensors"
    rc = main(["--checkpoint", str(ckpt), "--data", str(tmp_path / "data"), "--out", str(out),
               "--steps", "300", "--batch-size", "32", "--hidden", "32", "--eval-frames", "8",
               "--noise", "0.02"])
    assert rc == 0
    loaded, info = load_checkpoint(out)
    assert loaded.cfg.lifter_hidden == 32 and loaded.lifter is not None
    assert loaded.cfg.midpoint_torso  # the default: the real labels' torso definition
    record = info["meta"]["lifter"]
    assert record["steps"] == 300 and record["train_frames"] == 64
    # it learned the family's depth rule: far better than answering depth 0 (the root's)
    from sparse_pose_ros.data.shards import ShardDataset
    from sparse_pose_ros.training.metrics import mpjpe

    gt = ShardDataset(tmp_path / "data" / "test").labels["joints_3d"].astype(np.float64)
    flat = gt.copy()
    flat[..., 2] = gt[:, :1, 2]
    flat[..., :2] *= flat[..., 2:] / gt[..., 2:]  # same pixels, every joint at the root's depth
    ceiling, flat_err = record["held_out"]["true_2d_mpjpe_mm"], mpjpe(flat, gt)
    assert ceiling < 0.6 * flat_err
    assert "full_frame" in record["held_out"] and "gt_box" in record["held_out"]
    assert info["meta"]["note"] == "untrained"  # the network's own record is kept
    # the network part is unchanged
    for k, v in net.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    assert info["meta"]["lifter"]["train_sources"]["synthetic_torso"] == "midpoints"
    assert record["held_out"]["torso"] == "midpoints"
    # the body-size prior: without real labels, the training renders' median bones (midpoints)
    from sparse_pose_ros.data.lifter_poses import median_bone_lengths

    train3d = ShardDataset(tmp_path / "data" / "train").labels["joints_3d"].astype(np.float64)
    mid = np.einsum("ij,njd->nid", np.asarray(skeleton.midpoint_matrix()), train3d)
    np.testing.assert_allclose(loaded.cfg.bone_lengths_mm, median_bone_lengths(mid), rtol=1e-5)
    assert record["bone_lengths_mm"] == [round(v, 1) for v in loaded.cfg.bone_lengths_mm]
    assert not info["fp16"]  # a float32 input stays float32
    half = tmp_path / "half.safetensors"  # the shipped checkpoints' storage
    save_checkpoint(half, PoseNetwork(net.cfg).half(), {})
    assert main(["--checkpoint", str(half), "--data", str(tmp_path / "data"), "--out", str(out),
                 "--steps", "5", "--batch-size", "8", "--hidden", "8", "--eval-frames", "0",
                 "--no-midpoint-torso", "--bone-lengths", "h36m", "--weighting", "trust"]) == 0
    loaded, info = load_checkpoint(out)
    assert not loaded.cfg.midpoint_torso and info["fp16"]  # and it stays half precision
    assert loaded.cfg.bone_lengths_mm == ()  # the fit's Human3.6M default
    assert info["meta"]["lifter"]["weighting"] == "trust"
    assert info["meta"]["lifter"]["train_sources"]["synthetic_torso"] == "smplx_joints"
    assert main(["--checkpoint", str(tmp_path / "missing.safetensors"), "--data",
                 str(tmp_path / "data"), "--out", str(out)]) == 2


def test_runtimes_report_and_carry_the_midpoint_torso(tmp_path):
    """A checkpoint with ``midpoint_torso`` says so in every runtime's ModelInfo (the node
    reports it), and the exported ONNX graph computes the same joints as PyTorch."""
    from sparse_pose_ros.backends import create_backend
    from sparse_pose_ros.model.checkpoint import save_checkpoint
    from sparse_pose_ros.training.train_lifter import attach

    torch.manual_seed(0)
    base = dict(input_size=64, width_mult=0.35, head_channels=16, gated=False)
    net = attach(PoseNetwork(NetworkConfig(**base)).eval(), PoseLifter(16).eval(), 16,
                 midpoint_torso=True)
    ckpt = tmp_path / "mid.safetensors"
    save_checkpoint(ckpt, net, {})
    ref = create_backend("torch", ckpt, device="cpu")
    ort = create_backend("onnxruntime", ckpt, device="cpu", cache_dir=tmp_path / "cache")
    assert ref.info.midpoint_torso and ort.info.midpoint_torso
    x = np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32)
    np.testing.assert_allclose(ort.infer(x).joints, ref.infer(x).joints, atol=2e-3)
    plain = tmp_path / "plain.safetensors"
    save_checkpoint(plain, PoseNetwork(NetworkConfig(**base)), {})
    assert not create_backend("torch", plain, device="cpu").info.midpoint_torso


def test_runtimes_carry_the_models_bone_lengths(tmp_path):
    """The body-size prior a checkpoint carries reaches every runtime's ModelInfo (the lift
    reads it there), in metres; a checkpoint without one keeps its old config and hash."""
    from sparse_pose_ros.backends import create_backend
    from sparse_pose_ros.model.checkpoint import load_checkpoint, save_checkpoint
    from sparse_pose_ros.training.train_lifter import attach

    torch.manual_seed(0)
    base = dict(input_size=64, width_mult=0.35, head_channels=16, gated=False)
    bones = tuple(100.0 + 10 * i for i in range(skeleton.NUM_BONES))
    net = attach(PoseNetwork(NetworkConfig(**base)).eval(), PoseLifter(16).eval(), 16,
                 midpoint_torso=True, bone_lengths_mm=bones)
    ckpt = tmp_path / "bones.safetensors"
    save_checkpoint(ckpt, net, {})
    assert load_checkpoint(ckpt)[0].cfg.bone_lengths_mm == bones
    want = tuple(v / 1000 for v in bones)
    for name in ("torch", "onnxruntime"):
        info = create_backend(name, ckpt, device="cpu", cache_dir=tmp_path / "cache").info
        np.testing.assert_allclose(info.bone_lengths_m, want)
    # an exported file whose stored lengths are not the skeleton's bones is refused, not misread
    import json

    import onnx

    from sparse_pose_ros.export.metadata import parse_metadata
    from sparse_pose_ros.runtime.model_info import BackendError

    exported = next((tmp_path / "cache").rglob("*.onnx"))
    props = {p.key: p.value for p in onnx.load(str(exported), load_external_data=False)
             .metadata_props}  # fmt: skip
    np.testing.assert_allclose(parse_metadata(props, "x.onnx").info.bone_lengths_m, want)
    config = json.loads(props["network_config"])
    for bad in ([1.0, 2.0], [-1.0] * skeleton.NUM_BONES, ["x"] * skeleton.NUM_BONES):
        tampered = {**props, "network_config": json.dumps({**config, "bone_lengths_mm": bad})}
        with pytest.raises(BackendError, match="x.onnx: malformed"):
            parse_metadata(tampered, "x.onnx")
    plain = PoseNetwork(NetworkConfig(**base))
    assert "bone_lengths_mm" not in plain.cfg.to_dict()  # earlier checkpoints' hash unchanged
    assert NetworkConfig.from_dict(net.cfg.to_dict()) == net.cfg
    save_checkpoint(tmp_path / "plain.safetensors", plain, {})
    assert create_backend("torch", tmp_path / "plain.safetensors", device="cpu"
                          ).info.bone_lengths_m == ()


@pytest.mark.parametrize("bad", [(1.0,) * 3, (0.0,) * skeleton.NUM_BONES,
                                 (float("nan"),) * skeleton.NUM_BONES])
def test_network_config_refuses_bad_bone_lengths(bad):
    with pytest.raises(ValueError, match="bone_lengths_mm"):
        NetworkConfig(input_size=64, width_mult=0.35, gated=False, bone_lengths_mm=bad)


def test_trust_weights_follow_the_pairs_and_steer_sampling():
    """One weight per pair in training_pairs' order (renders, then each real source's views),
    the recipe's depth trust; and a zero weight keeps its pairs out of every batch."""
    from sparse_pose_ros.data.teacher_samples import DEPTH_WEIGHT
    from sparse_pose_ros.training.train_lifter import LifterTraining, train, trust_weights

    record = {"synthetic_frames": 2, "views_per_real_pose": 3,
              "real_poses": {"a:triangulated_people": 1, "a:blazepose_world": 2}}
    w = trust_weights(record)
    want = [DEPTH_WEIGHT["synthetic"]] * 2 + [DEPTH_WEIGHT["triangulated"]] * 3 + [
        DEPTH_WEIGHT["blazepose_world"]] * 6
    np.testing.assert_allclose(w.numpy(), want)
    # pairs with weight 0 carry absurd depths: a lifter that never saw them stays sane
    rng = torch.Generator().manual_seed(0)
    xy = torch.rand(64, J, 2, generator=rng)
    z = torch.zeros(64, J)
    z[32:] = 50.0
    weights = torch.cat([torch.ones(32), torch.zeros(32)])
    spec = LifterTraining(steps=60, batch_size=16, hidden=16)
    got = train(xy, z, spec, weights)(xy[:4]).detach()
    assert float(got.abs().max()) < 5.0
    with pytest.raises(ValueError, match="weights"):
        train(xy, z, spec, torch.zeros(64))
