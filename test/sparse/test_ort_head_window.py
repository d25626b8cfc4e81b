"""The ONNX Runtime head on the read region's window (``sparse.ort_head``): the same heatmaps,
triplets and joints as the PyTorch head on the whole map, with the window smaller than the map
where the region is (so a silent whole-map fallback would not pass for the feature)."""

from __future__ import annotations

import pytest
import torch

from sparse_pose_ros.export.random_model import random_movenet_network
from sparse_pose_ros.sparse.cpu_kernel import load_cpu_kernel
from sparse_pose_ros.sparse.fpn_plan import CppFpn
from sparse_pose_ros.sparse.ort_head import OrtHead, ort_available, region_window

pytestmark = pytest.mark.skipif(not ort_available(), reason="onnxruntime not installed")

#: the head with the neck in ONNX Runtime, and with the compiled FPN in front of it
NECKS = ["ort", pytest.param("compiled", marks=pytest.mark.skipif(
    load_cpu_kernel() is None, reason="the sparse CPU kernel cannot be built here"))]


def _head(net: torch.nn.Module, neck: str, threads: int = 1) -> OrtHead:
    fpn = CppFpn(net, load_cpu_kernel(), threads=threads) if neck == "compiled" else None
    return OrtHead(net, threads=1, neck=fpn)


def _net(size_hw: tuple[int, int]) -> tuple[torch.nn.Module, list[torch.Tensor]]:
    net = random_movenet_network("lightning", input_size=128, seed=11, person_prior=True)
    with torch.no_grad():  # a confident centre: the person box, not "nobody chosen"
        net.movenet.branches["center"].out.bias.fill_(4.0)
        feats, skips, _ = net.backbone(torch.randn(1, 3, *size_hw,
                                                   generator=torch.Generator().manual_seed(2)))
    return net, [feats, *skips]


def _check(net: torch.nn.Module, maps: list[torch.Tensor], gate: torch.Tensor | None,
           head: OrtHead) -> tuple[int, int, int, int]:
    with torch.no_grad():
        want = net.run_head(maps[0], maps[1:], [gate])
        got = head(*(t.permute(0, 2, 3, 1) for t in maps), gate=gate)
    scale = max(1.0, float(want[0].abs().max()))
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-4 * scale)
    torch.testing.assert_close(got[1], want[1], rtol=0, atol=1e-4 * scale)
    torch.testing.assert_close(got[2], want[2], rtol=0, atol=1e-4)
    return head._pasted


@pytest.mark.parametrize("neck", NECKS)
@pytest.mark.parametrize("size_hw", [(128, 128), (128, 96)], ids=["square", "strip"])
def test_windowed_head_equals_the_whole_map_head(size_hw: tuple[int, int], neck: str) -> None:
    net, maps = _net(size_hw)
    h, w = maps[-1].shape[-2:]
    head = _head(net, neck)
    # the person box alone (no gating): windowed
    net.set_head_gating(False)
    assert head.windowed(None)
    _check(net, maps, None, head)
    net.set_head_gating(True)
    g = torch.zeros(1, 1, *maps[0].shape[-2:])
    g[0, 0, 0, 0] = 1.0  # one stride-32 cell in a corner: a window well inside the map
    y0, y1, x0, x1 = _check(net, maps, g, head)
    assert (y1 - y0) * (x1 - x0) < h * w / 2
    # a frame after a larger one: the previous window's cells are reset
    _check(net, maps, torch.ones_like(g), head)
    _check(net, maps, g, head)
    # an empty gate reads everywhere (head_region): the person box alone decides
    _check(net, maps, torch.zeros_like(g), head)


@pytest.mark.parametrize("neck", NECKS)
def test_an_empty_region_reads_the_whole_map(neck: str) -> None:
    """Gate and person box apart: nothing to read, the head's softmax is uniform over the
    whole map (every cell counts), so the window must be the map."""
    net = random_movenet_network("lightning", input_size=256, seed=12, person_prior=True)
    with torch.no_grad():
        for name in ("center", "regress"):  # the person: a 5 x 5 box at the map's centre
            out = net.movenet.branches[name].out
            out.weight.zero_()
            out.bias.fill_(4.0 if name == "center" else 0.0)
        feats, skips, _ = net.backbone(torch.randn(1, 3, 256, 256))
    net.set_head_gating(True)
    maps = [feats, *skips]
    far = torch.zeros(1, 1, *feats.shape[-2:])
    far[0, 0, 0, 0] = 1.0  # the top-left corner's stride-32 cell
    with torch.no_grad():
        y = net.neck(feats, skips)
        assert float(net.head_read_region(y, [far]).sum()) == 0.0
    h, w = y.shape[-2:]
    assert _check(net, maps, far, _head(net, neck)) == (0, h, 0, w)


@pytest.mark.skipif(load_cpu_kernel() is None, reason="the sparse CPU kernel cannot be built here")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("variant", ["thunder", "lightning"])
def test_compiled_fpn_equals_the_torch_neck_and_centre(variant: str, threads: int) -> None:
    """``fpn_plan.CppFpn``: MoveNet's FPN (bilinear x2 with half-pixel centres at the borders,
    laterals, separable convs) and the centre branch's logits, batch 2 on a non-square frame."""
    net = random_movenet_network(variant, input_size=128, seed=13, person_prior=True)
    with torch.no_grad():
        feats, skips, _ = net.backbone(torch.randn(2, 3, 128, 160,
                                                   generator=torch.Generator().manual_seed(3)))
        y = net.neck(feats, skips)
        centre = net.movenet.branches["center"](y)
    fpn = CppFpn(net, load_cpu_kernel(), threads=threads)
    cl = [t.permute(0, 2, 3, 1).contiguous() for t in (feats, *skips)]
    for _ in range(2):  # the second call replays the recorded plan
        got_y, got_c = fpn(*cl)
        torch.testing.assert_close(got_y.permute(0, 3, 1, 2), y, rtol=0,
                                   atol=1e-5 * max(1.0, float(y.abs().max())))
        torch.testing.assert_close(got_c, centre, rtol=0,
                                   atol=1e-5 * max(1.0, float(centre.abs().max())))
    with pytest.raises(ValueError, match="contiguous"):
        fpn(cl[0].permute(0, 2, 1, 3), *cl[1:])


def test_region_window() -> None:
    r = torch.zeros(2, 1, 8, 10).numpy()
    assert region_window(r, 1) == (0, 8, 0, 10)  # empty: the whole map
    r[0, 0, 2, 3] = 1
    r[1, 0, 5, 4] = 1
    assert region_window(r, 0) == (2, 6, 3, 5)  # over the batch
    assert region_window(r, 1) == (1, 7, 2, 6)
    r[0, 0, 7, 9] = 1
    assert region_window(r, 2) == (0, 8, 1, 10)  # clipped
