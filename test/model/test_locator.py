"""The person locator: the masks it gives every gated block, how they are resampled, and what
the rest of the stack (config, geometry, export) does with a locator network."""

from __future__ import annotations

import pytest
import torch

from sparse_pose_ros.model.locator import LOCATOR_STRIDE, PersonLocator, cells_to_grid
from sparse_pose_ros.model.network import PoseNetwork, movenet_config


def locator_net(size: int = 64, seed: int = 0, share: float = 0.3) -> PoseNetwork:
    """A MoveNet-shaped locator network whose locator turns on about ``share`` of the cells of
    a fixed random image (margin 0, so the share is what the threshold decides)."""
    torch.manual_seed(seed)
    net = PoseNetwork(movenet_config("lightning", input_size=size, gate_strided=True,
                                     mask_source="locator", locator_margin=0)).eval()
    loc = net.backbone.locator
    with torch.no_grad():
        loc.classify.weight.normal_(0, 1.0)
        x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(9))
        raw = loc(x) - loc.offset
        loc.offset.fill_(-float(raw.flatten().quantile(1.0 - share)))
    return net


def test_cells_to_grid_nearest_up_and_any_down() -> None:
    cells = torch.zeros(1, 1, 4, 4)
    cells[0, 0, 1, 2] = 1.0
    up = cells_to_grid(cells, (16, 16))
    assert up.sum() == 16 and up[0, 0, 4:8, 8:12].all()  # the parent cell's 4x4 children
    big = torch.zeros(1, 1, 8, 8)
    big[0, 0, 2, 5] = 1.0
    down = cells_to_grid(big, (4, 4))  # on if any child is, plus one ring
    assert down[0, 0].tolist() == [[0, 1, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1], [0, 0, 0, 0]]
    assert torch.equal(cells_to_grid(cells, (4, 4)), cells)
    alone = cells_to_grid(big, (4, 4), ring=False)  # on if any child is, nothing more
    assert alone[0, 0].tolist() == [[0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert torch.equal(cells_to_grid(cells, (16, 16), ring=False), up)  # finer grids: as before


def test_every_gated_block_executes_the_locator_cells() -> None:
    net = locator_net()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        out = net(x)
        cells = net.backbone.locator.cells(x, margin=0)
    assert 0.1 < float(cells.mean()) < 0.6
    for mask in out.masks:
        assert mask is not None
        assert torch.equal(mask.hard, cells_to_grid(cells, tuple(mask.hard.shape[-2:])))
    # the mask units are not what decides: changing them changes nothing
    with torch.no_grad():
        for b in net.gated_blocks():
            b.mask_unit.conv.bias.fill_(-50.0)
        again = net(x)
    assert torch.equal(again.heatmaps, out.heatmaps)


def test_margin_and_threshold_move_the_density_the_right_way() -> None:
    net = locator_net()
    loc = net.backbone.locator
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        base = float(loc.cells(x, 0).mean())
        wider = float(loc.cells(x, 1).mean())
        net.set_mask_threshold(0.9)
        stricter = float(loc.cells(x, 0).mean())
    assert wider > base > stricter


def test_locator_checkpoint_roundtrip_and_unit_configs_unchanged(tmp_path) -> None:
    from sparse_pose_ros.model.checkpoint import load_checkpoint, save_checkpoint

    net = locator_net()
    path = tmp_path / "loc.safetensors"
    save_checkpoint(path, net)
    back, _ = load_checkpoint(path)
    assert back.cfg.mask_source == "locator" and back.backbone.locator is not None
    assert torch.equal(back.backbone.locator.offset, net.backbone.locator.offset)
    # a unit-masked config serialises as before the locator existed (same model hashes)
    units = movenet_config("lightning", input_size=64)
    assert "mask_source" not in units.to_dict() and "locator_width" not in units.to_dict()
    with pytest.raises(ValueError, match="mask_source"):
        movenet_config("lightning", mask_source="oracle")
    with pytest.raises(ValueError, match="gated"):
        movenet_config("lightning", gated=False, mask_source="locator")


def test_geometry_counts_the_locator_not_the_mask_units() -> None:
    from sparse_pose_ros.runtime.geometry import NetworkGeometry, network_geometry

    net = locator_net()
    geo = network_geometry(net, 64)
    assert geo.locator_macs == net.backbone.locator.macs(64) > 0
    assert geo.mask_unit_macs() == geo.locator_macs
    assert NetworkGeometry.from_json(geo.to_json()) == geo
    # the analytic MAC count matches a hooked count of the convs
    seen = []
    hooks = [m.register_forward_hook(lambda m, a, o: seen.append(
        o.shape[-2] * o.shape[-1] * m.out_channels * m.in_channels // m.groups
        * m.kernel_size[0] * m.kernel_size[1]))
        for m in net.backbone.locator.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        net.backbone.locator(torch.zeros(1, 3, 64, 64))
    for h in hooks:
        h.remove()
    assert sum(seen) == geo.locator_macs


def test_locator_rejects_sizes_off_its_grid_and_onnx_export_says_why(tmp_path) -> None:
    from sparse_pose_ros.export.onnx_export import export_network

    loc = PersonLocator(8)
    with pytest.raises(ValueError, match=str(LOCATOR_STRIDE)):
        loc(torch.zeros(1, 3, 40, 40))
    with pytest.raises(ValueError, match="person locator"):
        export_network(locator_net(), tmp_path / "x.onnx")


def test_folded_batchnorm_is_the_same_function() -> None:
    from sparse_pose_ros.sparse.folding import fold_batchnorm

    torch.manual_seed(3)
    loc = PersonLocator(16).eval()
    for m in loc.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    folded = fold_batchnorm(loc.features)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        assert torch.allclose(loc(x), loc(x, folded), atol=1e-4)
