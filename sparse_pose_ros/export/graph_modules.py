"""PyTorch wrappers that trace a PoseNetwork into the two ONNX graph kinds.

The wrappers reuse the network's own modules (stem, blocks, neck, head), so the exported graph
follows any change to the architecture; only the per-block execution differs:

* ``portable``: a gated block is its masked-dense reference (``InvertedResidual.forward_masked``)
  in standard ONNX ops that any runtime executes;
* ``plugin``: a gated block is one ``sparse_pose_ros::SparseInvertedResidual`` node with
  BN-folded weights (see :mod:`.plugin_op`); ungated blocks stay standard ops.

In both, the mask unit is a standard 1×1 conv compared against the graph input
``mask_threshold_logit`` (shape [1]), so runtimes change the compute budget without re-export,
and each gated block's hard mask is a graph output (``mask_<k>``, k in gated-block order).
"""

from __future__ import annotations

from torch import Tensor, nn

from ..model.blocks import InvertedResidual
from ..model.masks import BlockMask, receptive_mask
from ..model.network import PoseNetwork
from ..runtime.geometry import BlockGeometry, network_geometry
from .plugin_op import PluginNodeBlock

GRAPH_KINDS: tuple[str, ...] = ("portable", "plugin")
INPUT_NAME = "input"
THRESHOLD_INPUT = "mask_threshold_logit"
HEATMAPS_OUTPUT = "heatmaps"
JOINTS_OUTPUT = "joints"


def mask_output_name(k: int) -> str:
    return f"mask_{k}"


class ExportGatedBlock(nn.Module):
    """A gated block: mask unit + threshold, then masked dense or the custom plugin node.

    ``geometry``: the block at the export size; the plugin node needs it for a TF 'SAME'
    stride-2 depthwise, whose pad before (0 on an even side) depends on the input size.
    """

    def __init__(self, block: InvertedResidual, graph: str,
                 geometry: BlockGeometry | None = None) -> None:  # fmt: skip
        super().__init__()
        if block.mask_unit is None:
            raise ValueError("ExportGatedBlock needs a gated block")
        if graph not in GRAPH_KINDS:
            raise ValueError(f"graph must be one of {GRAPH_KINDS}, got {graph!r}")
        self.block = block
        self.graph = graph
        self.node: PluginNodeBlock | None = None
        if graph == "plugin":
            if geometry is None:
                raise ValueError("the plugin node needs the block's geometry (its input size)")
            self.node = PluginNodeBlock(block, geometry.in_hw)

    def forward(self, x: Tensor, threshold_logit: Tensor) -> tuple[Tensor, Tensor]:
        block = self.block
        logits = block.mask_unit.conv(x)  # type: ignore[union-attr]
        hard = (logits >= threshold_logit).to(x.dtype)
        if self.graph == "portable":
            dilated = receptive_mask(hard, block.stride, (x.shape[-2], x.shape[-1]),
                                     pad_before=block.depthwise_pad_before(x))
            mask = BlockMask(hard=hard, dilated=dilated, soft=hard, logits=logits)
            return block.forward_masked(x, mask), hard
        assert self.node is not None
        # the plugin (and its CUDA kernels) write zero / keep X where the mask is off; a
        # skip fill is standard ops after it, as in forward_masked
        return block.fill_skipped(self.node(x, hard), hard), hard


class ExportNetwork(nn.Module):
    """(input[, mask_threshold_logit]) -> (heatmaps, joints, mask_0, ..., mask_{k-1}).

    The threshold input exists only for gated networks. Output shapes: heatmaps (1, J, S/4, S/4),
    joints (1, J, 3), masks (1, 1, h_b, w_b) float 0/1. ``input_size`` (default the network's)
    fixes the padding a TF 'SAME' block's plugin node is built for.
    """

    def __init__(self, net: PoseNetwork, graph: str, input_size: int | None = None) -> None:
        super().__init__()
        self.net = net
        geometry = network_geometry(net, int(input_size or net.cfg.input_size))
        blocks = enumerate(net.backbone.blocks)
        self.gated = nn.ModuleDict(
            {str(i): ExportGatedBlock(b, graph, geometry.blocks[i]) for i, b in blocks if b.gated}
        )

    def forward(self, image: Tensor, threshold_logit: Tensor | None = None) -> tuple[Tensor, ...]:
        backbone = self.net.backbone
        x = backbone.stem(image)
        masks: list[Tensor] = []
        taps: dict[int, Tensor] = {}
        for i, block in enumerate(backbone.blocks):
            key = str(i)
            if key in self.gated:
                if threshold_logit is None:
                    raise ValueError("a gated network needs the threshold input")
                x, hard = self.gated[key](x, threshold_logit)
                masks.append(hard)
            else:
                x = block.forward_dense(x)
            for stride, idx in backbone.tap_after.items():
                if idx == i:
                    taps[stride] = x
        if backbone.last is not None:  # MoveNet's 1×1 conv to 1280
            x = backbone.last(x)
        skips = [taps[s] for s in backbone.skip_strides]
        heatmaps, _triplets, joints, _depth = self.net.run_head(x, skips, masks)
        return (heatmaps, joints, *masks)
