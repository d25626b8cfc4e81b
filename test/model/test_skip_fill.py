"""``skip_fill``: what a gated block writes at the cells its mask skips."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from sparse_pose_ros.model.blocks import InvertedResidual
from sparse_pose_ros.model.masks import BlockMask, receptive_mask
from sparse_pose_ros.model.network import PoseNetwork, movenet_config


def _mask(block: InvertedResidual, x: torch.Tensor, hard: torch.Tensor) -> BlockMask:
    dil = receptive_mask(hard, block.stride, (x.shape[-2], x.shape[-1]),
                         pad_before=block.depthwise_pad_before(x))
    return BlockMask(hard=hard, dilated=dil, soft=hard, logits=hard * 2 - 1)


@pytest.mark.parametrize("stride, c_in, c_out", [(1, 8, 8), (2, 8, 12)])
def test_skipped_cells_take_the_fill_active_cells_the_block(stride: int, c_in: int,
                                                            c_out: int) -> None:
    torch.manual_seed(0)
    block = InvertedResidual(c_in, c_out, stride, 4, gated=True, skip_fill=True).eval()
    fill = torch.randn(c_out)
    block.skip_fill.copy_(fill)
    x = torch.randn(1, c_in, 8, 8)
    ho = 8 // stride
    hard = (torch.rand(1, 1, ho, ho) < 0.5).float()
    with torch.no_grad():
        out = block.forward_masked(x, _mask(block, x, hard))
        dense = block.forward_dense(x)
    on, off = hard[0, 0] > 0, hard[0, 0] == 0
    assert on.any() and off.any()
    torch.testing.assert_close(out[0][:, on], dense[0][:, on])
    base = x[0][:, off] if block.use_residual else 0.0
    torch.testing.assert_close(out[0][:, off], base + fill[:, None].expand(-1, int(off.sum())))


def test_config_and_checkpoint_carry_the_fill(tmp_path) -> None:
    from sparse_pose_ros.model.checkpoint import load_checkpoint, save_checkpoint

    cfg = movenet_config("lightning", input_size=64, gate_strided=True)
    assert "skip_fill" not in cfg.to_dict()  # earlier checkpoints' configs and hashes stay
    with pytest.raises(ValueError, match="skip_fill"):
        movenet_config("lightning", gated=False, skip_fill=True)
    net = PoseNetwork(replace(cfg, skip_fill=True)).eval()
    assert all(b.skip_fill is not None for b in net.gated_blocks())
    assert all(b.skip_fill is None for b in net.backbone.blocks if not b.gated)
    for i, b in enumerate(net.gated_blocks()):
        b.skip_fill.fill_(0.5 + i)
    path = tmp_path / "fill.safetensors"
    save_checkpoint(path, net)
    back, _ = load_checkpoint(path)
    assert back.cfg.skip_fill
    for a, b in zip(back.gated_blocks(), net.gated_blocks(), strict=True):
        assert torch.equal(a.skip_fill, b.skip_fill)


def test_branch_means_are_the_mean_branch_output_of_every_cell() -> None:
    """What the fit stores: per gated block, project(depthwise(expand(X))) averaged over every
    cell of the letterboxed frames with every cell executed (computed here from each block's
    captured input, independently of the fit's reading of the forward pass)."""
    import numpy as np

    from sparse_pose_ros.export.random_model import randomize_network
    from sparse_pose_ros.pipeline.preprocess import letterbox, mean_fill, normalise
    from sparse_pose_ros.training.skip_fill import branch_means

    torch.manual_seed(0)
    net = randomize_network(PoseNetwork(movenet_config("lightning", input_size=64,
                                                       gate_strided=True)), seed=3).eval()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (48, 80, 3), dtype=np.uint8) for _ in range(2)]
    got, n = branch_means(net, frames)
    assert n == 2
    blocks = net.gated_blocks()
    inputs: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(blocks))}
    hooks = [b.register_forward_pre_hook(lambda m, a, i=i: inputs[i].append(a[0]))
             for i, b in enumerate(blocks)]
    with torch.no_grad():
        for rgb in frames:
            canvas, _ = letterbox(rgb, 64, mean_fill(net.cfg.input_mean))
            x = torch.from_numpy(normalise(canvas, net.cfg.input_mean, net.cfg.input_std))
            net.backbone(x, torch.ones(1, 1, 4, 4))
        for h in hooks:
            h.remove()
        for i, b in enumerate(blocks):
            fs = [b.project(b.depthwise(b.expand(x) if b.expand is not None else x))
                  for x in inputs[i]]
            want = torch.cat([f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]) for f in fs]).mean(0)
            torch.testing.assert_close(got[i], want, atol=1e-4, rtol=1e-4)
    relu = PoseNetwork(movenet_config("lightning", input_size=64, gate_strided=True,
                                      residual_activation="relu")).eval()
    with pytest.raises(ValueError, match="ReLU residual"):
        branch_means(relu, frames)


def test_a_filled_model_reads_a_region_without_the_coarse_ring() -> None:
    """A caller's region reaches the stride-32 blocks without the one-cell ring when the
    skipped cells hold the fill (``Backbone.region_ring``); without the fill the ring stays,
    and the locator's cells keep it either way."""
    cfg = movenet_config("lightning", input_size=128, gate_strided=True)
    cells = torch.zeros(1, 1, 8, 8)
    cells[0, 0, 3, 4] = 1.0
    for fill, ring_cells in ((False, 9), (True, 1)):
        net = PoseNetwork(replace(cfg, skip_fill=fill)).eval()
        assert net.backbone.region_ring is not fill
        for masks, coarse_cells in ((net.backbone.masks_from_region(cells, (128, 128)),
                                     ring_cells),
                                    (net.backbone.masks_from_cells(cells, (128, 128)), 9)):
            coarse = [m for m in masks if m is not None and m.shape[-1] == 4]
            fine = [m for m in masks if m is not None and m.shape[-1] == 16]
            assert coarse and all(int(m.sum()) == coarse_cells for m in coarse)
            assert fine and all(int(m.sum()) == 4 for m in fine)  # the cell's 2 x 2 children
