"""The compiled FPN + person box + window head + readout (``sparse.window_head_plan``): the
same heatmaps, triplets and joints as the PyTorch network (``PoseNetwork.run_head``), reading
only the region's bounding box (so a silent whole-map fallback would not pass for the feature),
in every configuration the shipped checkpoints use and the ones they do not."""

from __future__ import annotations

import itertools

import pytest
import torch

from sparse_pose_ros.backends.base import joint_confidence
from sparse_pose_ros.export.random_model import random_movenet_network
from sparse_pose_ros.model.heads import REGION_OFF_LOGIT
from sparse_pose_ros.sparse.cpu_kernel import load_cpu_kernel
from sparse_pose_ros.sparse.executor import SparsePoseNetwork
from sparse_pose_ros.sparse.window_head_plan import CppNeckHead, supported, window_head_weights

pytestmark = pytest.mark.skipif(load_cpu_kernel() is None,
                                reason="the sparse CPU kernel cannot be built here")


def _net(readout: int = 2, lifter: int = 64, midpoints: bool = True, person: bool = True,
         size: int = 128, seed: int = 11) -> torch.nn.Module:
    net = random_movenet_network("lightning", input_size=size, seed=seed, person_prior=person,
                                 readout_window=readout, lifter_hidden=lifter,
                                 midpoint_torso=midpoints)  # fmt: skip
    with torch.no_grad():
        if person:  # a confident centre: the person box, not "nobody chosen"
            net.movenet.branches["center"].out.bias.fill_(4.0)
        if net.lifter is not None:  # a lifter whose output depends on its input
            gen = torch.Generator().manual_seed(seed)
            for m in net.lifter.mlp:
                if isinstance(m, torch.nn.Linear):
                    m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * 0.2)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return net


def _maps(net: torch.nn.Module, hw: tuple[int, int], batch: int = 1) -> list[torch.Tensor]:
    with torch.no_grad():
        feats, skips, _ = net.backbone(torch.randn(batch, 3, *hw,
                                                   generator=torch.Generator().manual_seed(2)))
    return [feats, *skips]


def _check(net: torch.nn.Module, maps: list[torch.Tensor], gate: torch.Tensor | None,
           head: CppNeckHead) -> tuple[int, int, int, int]:
    with torch.no_grad():
        want = net.run_head(maps[0], maps[1:], [gate])
        got = head(*(t.permute(0, 2, 3, 1).contiguous() for t in maps), gate=gate)
    read = want[0][want[0] > REGION_OFF_LOGIT]  # empty where the region is
    scale = max(1.0, float(read.abs().max())) if read.numel() else 1.0
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-4 * scale)
    torch.testing.assert_close(got[1], want[1], rtol=0, atol=1e-4 * scale)
    torch.testing.assert_close(got[2][..., :2], want[2][..., :2], rtol=0, atol=1e-4)
    # the lifter's z: float noise of x, y divided by the skeleton's radius (tiny where random
    # heatmaps read out near the map's centre; ONNX Runtime differs from torch as much there)
    torch.testing.assert_close(got[2][..., 2], want[2][..., 2], rtol=0, atol=2e-3)
    # each joint's confidence, computed beside the readout from the window alone: the same as
    # the backends' joint_confidence over the whole map the head wrote
    want_conf = torch.stack([torch.from_numpy(joint_confidence(m.numpy())) for m in want[0]])
    torch.testing.assert_close(head.confidence(), want_conf, rtol=1e-5, atol=1e-6)
    return head.window()


CONFIGS = list(itertools.product([0, 2], [0, 64], [False, True], [False, True]))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("readout", "lifter", "midpoints", "person"), CONFIGS,
                         ids=[f"r{r}-lift{lf}-mid{int(m)}-person{int(p)}"
                              for r, lf, m, p in CONFIGS])  # fmt: skip
def test_the_compiled_head_equals_the_torch_head(readout: int, lifter: int, midpoints: bool,
                                                 person: bool, threads: int) -> None:
    net = _net(readout, lifter, midpoints, person)
    for hw in ((128, 128), (128, 96)):  # square and a tracking strip
        maps = _maps(net, hw)
        h, w = maps[-1].shape[-2:]
        head = CppNeckHead(net, load_cpu_kernel(), threads=threads)
        net.set_head_gating(False)
        window = _check(net, maps, None, head)
        if person:  # the person box alone: a window inside the map
            assert window != (0, h, 0, w)
        else:
            assert window == (0, h, 0, w)
        net.set_head_gating(True)
        g = torch.zeros(1, 1, *maps[0].shape[-2:])
        g[0, 0, 0, 0] = 1.0  # one stride-32 cell in a corner: a small window
        y0, y1, x0, x1 = _check(net, maps, g, head)
        assert (y1 - y0) * (x1 - x0) < h * w / 2
        # a larger window, then the small one again: the larger one's cells are reset
        _check(net, maps, torch.ones_like(g), head)
        _check(net, maps, g, head)
        # an empty gate reads everywhere (head_region): the person box alone decides
        _check(net, maps, torch.zeros_like(g), head)


def test_a_batch_reads_the_union_of_its_regions() -> None:
    net = _net(person=False)
    net.set_head_gating(True)
    maps = _maps(net, (128, 160), batch=2)  # stride-32 grid 4 x 5, map 32 x 40
    g = torch.zeros(2, 1, *maps[0].shape[-2:])
    g[0, 0, 0, 0] = 1.0  # dilated: cells 0-1 -> map rows / columns 0-15
    g[1, 0, 1, 1] = 1.0  # dilated: cells 0-2 -> map rows / columns 0-23
    head = CppNeckHead(net, load_cpu_kernel(), threads=2)
    assert _check(net, maps, g, head) == (0, 24, 0, 24)


@pytest.mark.parametrize("readout", [0, 2])
def test_an_empty_region_reads_the_whole_map(readout: int) -> None:
    """Gate and person box apart: nothing to read, the softmax is uniform over the map (also
    with a readout window: every cell is off, so the window changes nothing)."""
    net = _net(readout=readout, lifter=0, midpoints=False, size=256, seed=12)
    with torch.no_grad():
        for name in ("center", "regress"):  # the person: a 5 x 5 box at the map's centre
            out = net.movenet.branches[name].out
            out.weight.zero_()
            out.bias.fill_(4.0 if name == "center" else 0.0)
    net.set_head_gating(True)
    maps = _maps(net, (256, 256))
    far = torch.zeros(1, 1, *maps[0].shape[-2:])
    far[0, 0, 0, 0] = 1.0
    with torch.no_grad():
        y = net.neck(maps[0], maps[1:])
        assert float(net.head_read_region(y, [far]).sum()) == 0.0
    h, w = y.shape[-2:]
    assert _check(net, maps, far, CppNeckHead(net, load_cpu_kernel())) == (0, h, 0, w)


def test_a_faint_centre_reads_the_whole_map() -> None:
    """Below ``PERSON_MIN_SCORE`` nobody is chosen: the whole map, as without the prior."""
    net = _net()
    with torch.no_grad():
        out = net.movenet.branches["center"].out
        out.weight.zero_()
        out.bias.fill_(-4.0)  # sigmoid 0.018
    net.set_head_gating(False)
    maps = _maps(net, (128, 128))
    h, w = maps[-1].shape[-2:]
    assert _check(net, maps, None, CppNeckHead(net, load_cpu_kernel())) == (0, h, 0, w)


def test_new_weights_need_refresh_and_a_changed_config_records_again() -> None:
    net = _net()
    net.set_head_gating(False)
    maps = _maps(net, (128, 128))
    head = CppNeckHead(net, load_cpu_kernel(), threads=2)
    _check(net, maps, None, head)
    with torch.no_grad():
        net.head.heatmap.bias.add_(1.0)
        net.lifter.mlp[0].bias.add_(0.5)
    head.refresh()
    _check(net, maps, None, head)
    net.cfg = type(net.cfg).from_dict({**net.cfg.to_dict(), "person_prior": False})
    h, w = maps[-1].shape[-2:]
    assert _check(net, maps, None, head) == (0, h, 0, w)


def test_the_sparse_network_runs_the_compiled_head_and_matches_torch() -> None:
    net = _net(size=128)
    net.set_head_gating(True)
    runner = SparsePoseNetwork(net, kernel="cpp", threads=2)
    assert runner.head == "cpp" and runner._neck_head is not None
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = net(x)
        got = runner(x)
    torch.testing.assert_close(got.joints, want.joints, rtol=0, atol=1e-3)
    inside = want.heatmaps > REGION_OFF_LOGIT
    torch.testing.assert_close(got.heatmaps[inside], want.heatmaps[inside], rtol=0, atol=1e-3)
    assert torch.equal(got.heatmaps <= REGION_OFF_LOGIT, ~inside)


def test_refusals() -> None:
    assert supported(_net()) is None
    volumetric = random_movenet_network("lightning", input_size=128, depth_mode="volumetric")
    assert "factorized" in (supported(volumetric) or "")
    with pytest.raises(ValueError, match="cannot run"):
        window_head_weights(volumetric)
    net = _net()
    net.set_head_gating(True)
    head = CppNeckHead(net, load_cpu_kernel())
    maps = [t.permute(0, 2, 3, 1).contiguous() for t in _maps(net, (128, 128))]
    with pytest.raises(ValueError, match=r"\(B, 1, h, w\)"):
        head(*maps, gate=torch.zeros(1, 4, 4))
