"""The person prior: joints read only inside the box of the person MoveNet's centre and regression
heads pick (model/movenet_head.py ``person_region``, ``NetworkConfig.person_prior``), its
export, and the tool that turns it on for a trained checkpoint (training/readout_settings.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from sparse_pose_ros.backends.base import joint_confidence
from sparse_pose_ros.model.checkpoint import load_checkpoint, save_checkpoint
from sparse_pose_ros.model.heads import REGION_OFF_LOGIT
from sparse_pose_ros.model.movenet_head import NUM_KEYPOINTS, person_region
from sparse_pose_ros.model.network import NetworkConfig, PoseNetwork, movenet_config
from sparse_pose_ros.training.readout_settings import main as readout_main
from sparse_pose_ros.training.readout_settings import set_readout

H = W = 16  # a 64-px MoveNet-architecture input has 16×16 stride-4 maps


class Constant(nn.Module):
    """A head branch replaced by a fixed output (batch 1), whatever the features."""

    def __init__(self, value: Tensor) -> None:
        super().__init__()
        self.register_buffer("value", value)

    def forward(self, feats: Tensor) -> Tensor:
        return self.value.expand(feats.shape[0], *self.value.shape[1:])


def _centres(*cells: tuple[int, int, float]) -> Tensor:
    """Centre logits: -10 everywhere, ``logit`` at each (row, col)."""
    c = torch.full((1, 1, H, W), -10.0)
    for y, x, logit in cells:
        c[0, 0, y, x] = logit
    return c


def _regress(dy: float, dx: float) -> Tensor:
    """Every cell regresses keypoints spread over ±dy rows and ±dx columns around it."""
    reg = torch.zeros(1, 2 * NUM_KEYPOINTS, H, W)
    offsets = torch.linspace(-1.0, 1.0, NUM_KEYPOINTS)
    reg[0, 0::2] = (dy * offsets).view(-1, 1, 1)
    reg[0, 1::2] = (dx * offsets).view(-1, 1, 1)
    return reg


def _branches(centres: Tensor, regress: Tensor) -> nn.ModuleDict:
    return nn.ModuleDict({"center": Constant(centres), "regress": Constant(regress)})


def test_box_of_the_person_nearest_the_centre_grown_by_the_margin():
    # two equally confident people: one 1 cell from the map's centre (8, 8), one far right
    branches = _branches(_centres((8, 7, 3.0), (8, 14, 3.0)), _regress(5.0, 2.0))
    region = person_region(branches, torch.zeros(1, 4, H, W), margin=0.3, min_cells=2.0)
    assert region.shape == (1, 1, H, W)
    # rough keypoints: rows 3..13, cols 5..9; pad = max(0.3 × 10, 2) = 3
    want = torch.zeros(H, W)
    want[0:16, 2:13] = 1.0
    torch.testing.assert_close(region[0, 0], want)


def test_small_person_gets_the_minimum_margin():
    branches = _branches(_centres((4, 4, 2.0)), _regress(1.0, 1.0))
    region = person_region(branches, torch.zeros(1, 4, H, W), margin=0.3, min_cells=2.0)
    rows, cols = torch.nonzero(region[0, 0], as_tuple=True)
    # keypoints 3..5 in both axes, 2 cells each side
    assert (rows.min().item(), rows.max().item()) == (1, 7)
    assert (cols.min().item(), cols.max().item()) == (1, 7)


def test_more_confident_person_wins_over_a_nearer_faint_one():
    # the centre score is weighted by 1 / (distance + 1.8): a clear person 4 cells away beats a
    # faint one at the centre (MoveNet's own choice)
    branches = _branches(_centres((8, 8, -1.0), (8, 12, 4.0)), _regress(1.0, 1.0))
    region = person_region(branches, torch.zeros(1, 4, H, W))
    cols = torch.nonzero(region[0, 0], as_tuple=True)[1]
    assert cols.min().item() == 9 and cols.max().item() == 15


def test_person_prior_needs_movenet_heads():
    with pytest.raises(ValueError, match="movenet_heads"):
        NetworkConfig(person_prior=True)
    assert movenet_config("lightning", input_size=64, person_prior=True).person_prior


def _two_person_net(person_prior: bool) -> PoseNetwork:
    """A random 64-px MoveNet-architecture network whose heatmaps have two blobs per joint: a
    weaker one at the left person (cols 2..5) and a stronger one at the right person (cols
    11..14); the centre heads point at the left one, nearest the middle."""
    torch.manual_seed(0)
    net = PoseNetwork(movenet_config("lightning", input_size=64, width_mult=0.35, gated=False,
                                     person_prior=person_prior)).eval()
    assert net.movenet is not None
    net.movenet.branches["center"] = Constant(_centres((8, 6, 3.0), (8, 13, 2.0)))
    net.movenet.branches["regress"] = Constant(_regress(4.0, 1.0))
    heat = torch.full((1, 17, H, W), -5.0)
    heat[..., 7:10, 3:6] = 2.0  # left person, peaked at (8, 4)
    heat[..., 8, 4] = 4.0
    heat[..., 7:10, 11:14] = 6.0  # right person, stronger
    net.head.heatmap = Constant(heat)
    net.head.triplet = Constant(torch.zeros(1, net.head.triplet.out_channels, H, W))
    return net


def test_joints_and_confidence_follow_the_chosen_person():
    image = torch.zeros(1, 3, 64, 64)
    with torch.no_grad():
        plain = _two_person_net(False)(image)
        prior = _two_person_net(True)(image)
    # without the prior every joint goes to the stronger (right) blob
    assert (plain.joints[0, :, 0] > 0.6).all()
    # with it, to the chosen (left) one; outside its box the maps are switched off
    assert (prior.joints[0, :, 0] < 0.45).all()
    outside = prior.heatmaps[0, :, :, 12:]
    assert (outside == REGION_OFF_LOGIT).all()
    conf = joint_confidence(prior.heatmaps[0].numpy())
    assert (conf > 0.9).all()


def _tiny_checkpoint(path: Path, **cfg) -> PoseNetwork:
    torch.manual_seed(1)
    net = PoseNetwork(movenet_config("lightning", input_size=64, width_mult=0.35, gated=False,
                                     **cfg)).eval()
    save_checkpoint(path, net.half(), meta={"variant": "dense"})
    return net


def test_readout_tool_changes_the_config_not_the_weights(tmp_path):
    src = tmp_path / "m.safetensors"
    _tiny_checkpoint(src)
    before, info0 = load_checkpoint(src)
    assert info0["fp16"] and not before.cfg.person_prior
    out = tmp_path / "pp.safetensors"
    assert readout_main(["--checkpoint", str(src), "--person-prior", "on", "--out", str(out)]) == 0
    after, info = load_checkpoint(out)
    assert after.cfg.person_prior and info["fp16"]
    assert info["model_hash"] != info0["model_hash"]  # runtimes re-export it
    for k, v in before.state_dict().items():
        assert torch.equal(v, after.state_dict()[k]), k
    (entry,) = info["meta"]["readout_changes"]
    assert entry["changes"] == {"person_prior": True}
    assert entry["from_model_hash"] == info0["model_hash"]
    assert info["meta"]["variant"] == "dense"  # the training record is kept
    # and back off, in place: a second entry
    assert readout_main(["--checkpoint", str(out), "--person-prior", "off"]) == 0
    again, info2 = load_checkpoint(out)
    assert not again.cfg.person_prior and len(info2["meta"]["readout_changes"]) == 2


def test_readout_tool_sets_the_whole_frame_input_size(tmp_path, capsys):
    """``--input-size``: the checkpoint's own size changes (every runtime's default input), the
    weights and the other settings do not; a size off the output stride is refused."""
    src = tmp_path / "m.safetensors"
    _tiny_checkpoint(src, person_prior=True)
    before, info0 = load_checkpoint(src)
    assert readout_main(["--checkpoint", str(src), "--input-size", "96"]) == 0
    after, info = load_checkpoint(src)
    assert (before.cfg.input_size, after.cfg.input_size) == (64, 96)
    assert after.cfg.person_prior and info["model_hash"] != info0["model_hash"]
    for k, v in before.state_dict().items():
        assert torch.equal(v, after.state_dict()[k]), k
    assert info["meta"]["readout_changes"][-1]["changes"] == {"input_size": 96}
    with torch.no_grad():  # it runs at its new size
        assert after.float()(torch.zeros(1, 3, 96, 96)).heatmaps.shape[-1] == 96 // 4
    assert readout_main(["--checkpoint", str(src), "--input-size", "80"]) == 2  # not / 32
    assert "input" in capsys.readouterr().err
    assert load_checkpoint(src)[0].cfg.input_size == 96  # the file is left as it was
    with pytest.raises(SystemExit):  # nothing to change
        readout_main(["--checkpoint", str(src)])


def test_readout_tool_refuses_what_it_cannot_do(tmp_path, capsys):
    src = tmp_path / "plain.safetensors"
    torch.manual_seed(0)
    save_checkpoint(src, PoseNetwork(NetworkConfig(input_size=64, width_mult=0.35)))
    assert readout_main(["--checkpoint", str(src), "--person-prior", "on"]) == 2
    assert "movenet_heads" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not readout settings"):
        set_readout(src, src, "test", gated=False)
    assert readout_main(["--checkpoint", str(tmp_path / "missing.safetensors"),
                         "--person-prior", "on"]) == 2


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_exported_graph_keeps_the_prior(tmp_path, runtime):
    """The prior in the exported graph (the regression read at the chosen centre from its 3 x 3
    patch: Gather ops) gives the PyTorch joints and the same box, in each dense runtime."""
    pytest.importorskip(runtime)
    from sparse_pose_ros.backends import create_backend

    path = tmp_path / "pp.safetensors"
    net = _tiny_checkpoint(path, person_prior=True)
    backend = create_backend(runtime, str(path), "cpu", cache_dir=str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32)
    assert backend.info.person_prior  # read back from the export's metadata (diagnostics)
    assert create_backend("torch", str(path), "cpu").info.person_prior
    got = backend.infer(image)
    with torch.no_grad():
        want = net.float()(torch.from_numpy(image))
    np.testing.assert_allclose(got.joints, want.joints[0].numpy(), atol=2e-3)
    off = want.heatmaps[0].numpy() == REGION_OFF_LOGIT
    assert off.any() and not off.all()
    np.testing.assert_array_equal(got.heatmaps == REGION_OFF_LOGIT, off)


def test_exported_graph_has_no_argmax(tmp_path):
    """The readout's and the prior's argmaxes export as reductions, not ArgMax: OpenVINO runs an
    ArgMax as a stable TopK that cost up to 17 % of a strip's network (model/index_ops.py)."""
    onnx = pytest.importorskip("onnx")
    from sparse_pose_ros.export.onnx_export import export_network

    torch.manual_seed(1)
    net = PoseNetwork(movenet_config("lightning", input_size=64, width_mult=0.35, gated=False,
                                     person_prior=True, readout_window=2)).eval()
    for graph in ("portable", "plugin"):
        path = export_network(net, tmp_path / f"{graph}.onnx", graph)
        ops = {node.op_type for node in onnx.load(str(path)).graph.node}
        assert "ReduceMin" in ops, graph  # the readout's and the prior's index
        assert not ops & {"ArgMax", "TopK"}, (graph, ops & {"ArgMax", "TopK"})


def test_no_box_where_nobody_is_clear_enough():
    # the best centre scores sigmoid(-2) = 0.12 < PERSON_MIN_SCORE: the whole map stays on
    branches = _branches(_centres((8, 8, -2.0)), _regress(1.0, 1.0))
    region = person_region(branches, torch.zeros(1, 4, H, W))
    assert region.eq(1).all()
    # the same person, clearer, gets its box
    region = person_region(_branches(_centres((8, 8, 0.0)), _regress(1.0, 1.0)),
                           torch.zeros(1, 4, H, W))
    assert 0 < region.sum() < H * W


def test_branch_at_equals_the_whole_map_branch_at_the_cell() -> None:
    """The regression read at the chosen centre from its 3×3 patch alone is the whole-map
    branch's value there, at the map's borders and corners too (zero padding), per batch item."""
    from sparse_pose_ros.model.movenet_head import MoveNetBranch, branch_at

    torch.manual_seed(0)
    branch = MoveNetBranch(6, 12, 2 * NUM_KEYPOINTS).eval()
    feats = torch.randn(3, 6, H, W)
    with torch.no_grad():
        full = branch(feats)
        for cy, cx in ((0, 0), (H - 1, W - 1), (0, 7), (9, W - 1), (5, 6)):
            ys = torch.tensor([cy, H - 1 - cy, 3])
            xs = torch.tensor([cx, 2, W - 1 - cx])
            got = branch_at(branch, feats, ys, xs)
            want = full[torch.arange(3), :, ys, xs]
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
