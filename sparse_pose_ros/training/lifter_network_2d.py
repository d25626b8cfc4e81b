"""The network's own 2D on real training frames, paired with their triangulated depth: lifter
training pairs whose 2D mistakes are the ones the lifter will be fed.

Why: the lifter (``model.lifter``) reads depth off the shape of the 2D skeleton. Trained on
exact 2D with synthetic Gaussian noise and merged left/right pairs only, it met a different
kind of error on the node's path: on the held-out Pose2Sim trial, exact 2D gave 49 mm and the
network's 2D at the node's 192 px tracking crops 86 mm. The multiview training trial has the
network's real mistakes at hand: run the network on crops around each triangulated person
(the node's tracking crop, drawn with jitter in position and size, at several crop sizes) and
pair its 2D with the person's depth in that view. A 30 % share of such pairs in the lifter's
draws brought the held-out error at crops 192 from 86 to 77–79 mm, by the lifter's seed
(``docs/network.md`` §5e).

Only training-split sources are read (``data.lifter_poses.view_skeletons``); the network's
weights are not touched.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .. import skeleton
from ..data.label_cache import LabelSet, iter_images
from ..data.lifter_poses import view_skeletons
from ..model.network import PoseNetwork
from ..pipeline.preprocess import crop_window, mean_fill, normalise
from ..pipeline.roi import (
    CROP_INPUT_WIDTHS,
    STRIP_MARGIN,
    RoiConfig,
    every_cell,
    region_cells,
    roi_window,
    strip_fits,
)


@dataclass(frozen=True)
class CropDraws:
    """How each triangulated person is cropped (``train_lifter --network-2d-*``).

    Attributes:
        sizes: network input sides, px (the node's tracking crop is 224 by default; 192 and
            256 are its other settings).
        per_size: jittered crops per person, view and size.
        scale_jitter: the crop's box scaled by a factor uniform in 1 ± this (the node's crop
            comes from the previous frame's predicted joints, not the true ones).
        shift_jitter: the box moved by a normal draw of this × its larger side, per axis.
        batch: crops per network call.
        strip_widths: strips of a crop the network also reads, as the estimator does
            (``PoseEstimator.strip_backends``): each drawn crop whose person fits one
            (``pipeline.roi.strip_fits``, the narrowest that fits, widths below the crop's
            size) gives a second pair, from that strip, beside the square's. Why both: the
            node reads strips when the person fits and the square otherwise, and the strip's
            2D errs differently at its edges (held-out crops 192, strips 96/128/160, the
            square crops' lifter: 81 mm against 79 for the square alone).
    """

    sizes: tuple[int, ...] = (192, 224, 256)
    per_size: int = 2
    scale_jitter: float = 0.08
    shift_jitter: float = 0.03
    batch: int = 16
    strip_widths: tuple[int, ...] = CROP_INPUT_WIDTHS
    #: the estimator's ``strip_margin`` the strips are chosen with
    strip_margin: float = STRIP_MARGIN

    def __post_init__(self) -> None:
        if not self.sizes or min(self.sizes) < 32 or any(s % 32 for s in self.sizes):
            raise ValueError(f"sizes must be multiples of 32, >= 32, got {self.sizes}")
        if self.per_size < 1 or self.batch < 1:
            raise ValueError("per_size and batch must be >= 1")
        if not 0 <= self.scale_jitter < 1 or not 0 <= self.shift_jitter <= 0.5:
            raise ValueError("scale_jitter must be in [0, 1), shift_jitter in [0, 0.5]")
        if any(w < 32 or w % 32 for w in self.strip_widths):
            raise ValueError(f"strip_widths must be multiples of 32, >= 32, got "
                             f"{self.strip_widths}")
        RoiConfig(strip_margin=self.strip_margin)  # its range

    def strip_for(self, joints: np.ndarray, size: int, roi: RoiConfig) -> int:
        """The strip width the estimator would read for ``joints`` at ``size`` with ``roi``'s
        window and this :attr:`strip_margin` (0: none)."""
        roi = dataclasses.replace(roi, strip_margin=self.strip_margin)
        for width in sorted(w for w in self.strip_widths if w < size):
            if strip_fits(joints, size, width, roi):
                return width
        return 0


def _person_crops(corpus: dict[str, LabelSet], draws: CropDraws, rng: np.random.Generator,
                  fill: tuple[int, int, int], counts: dict[str, int]
                  ) -> Iterator[tuple[tuple[int, int], np.ndarray, np.ndarray, np.ndarray]]:
    """((size, strip width or 0), uint8 crop, (17,) root-relative depth mm, (S/16, S/16)
    execution region) of every drawn crop of every triangulated person of the training
    sources, frame by frame (a crop's strip right after its square). The region is the one
    the estimator hands a gated model on such a crop: the drawn joints' cells
    (``pipeline.roi.region_cells``, the node's default expand and margin; every cell where
    they give none, as ``dense_until_found`` runs). ``counts`` gains the persons × views used
    per source; ``fill`` pads a crop past the frame's edge."""
    roi = RoiConfig(strip_margin=draws.strip_margin)
    for sid, ls in sorted(corpus.items()):
        if ls.split != "train":
            continue
        skels = {row: (s, k) for row, s, k in view_skeletons(ls)}
        if not skels:
            continue
        for row, rgb in iter_images(ls):
            if row not in skels:
                continue
            h, w = rgb.shape[:2]
            for cam in skels[row][0]:
                uvw = cam @ skels[row][1].T
                uv = uvw[:, :2] / uvw[:, 2:]
                centre, extent = uv.mean(axis=0), float(np.ptp(uv, axis=0).max())
                depth = (cam[:, 2] - cam[skeleton.ROOT, 2]) * 1000.0
                used = False
                for size in draws.sizes:
                    for _ in range(draws.per_size):
                        scale = rng.uniform(1 - draws.scale_jitter, 1 + draws.scale_jitter)
                        shift = rng.normal(0.0, draws.shift_jitter, 2) * extent
                        seen = (uv - centre) * scale + centre + shift
                        box = roi_window(seen, w, h, size, roi)
                        if box is None:  # the person fills the frame: no tracking crop
                            continue
                        cells = region_cells(seen, box)
                        if cells is None:  # as dense_until_found runs it
                            cells = every_cell(size)
                        yield (size, 0), crop_window(rgb, box, fill), depth, cells
                        used = True
                        width = draws.strip_for(seen, size, roi)
                        if width:
                            box = roi_window(seen, w, h, size, roi, width)
                            if box is not None:
                                yield (size, width), crop_window(rgb, box, fill), depth, cells
                counts[sid] = counts.get(sid, 0) + int(used)


@torch.no_grad()
def network_2d_pairs(net: PoseNetwork, corpus: dict[str, LabelSet], draws: CropDraws,
                     seed: int, midpoint_torso: bool = False
                     ) -> tuple[torch.Tensor, torch.Tensor, dict[str, int]]:
    """(N, J, 2) the network's 2D joints in input pixels of its crop's square, (N, J) the
    triangulated root-relative depth in mm, and the persons × views used per source (see the
    module docstring): every square crop of the first size, then its strips narrowest first,
    then the next size. With ``midpoint_torso`` the 2D torso joints are the mid-points the
    lifter of such a network reads (``PoseNetwork.refine_joints``; idempotent for a network
    that already outputs them). Empty tensors when the corpus has no training source with
    calibrated views. Crops go through the network ``draws.batch`` at a time as they are cut,
    so only a batch per size and width is held. A gated network computes each crop's 2D on the
    region the estimator would give it there (the drawn joints' cells, ``_person_crops``), not
    on its locator's masks: in video the node's gated model runs on the previous pose's region,
    and the pairs should carry the mistakes of that path."""
    rng = np.random.default_rng(seed)
    model = copy.deepcopy(net).float().eval()
    cfg = model.cfg
    draws = draws_for(model, draws)
    m = torch.tensor(skeleton.midpoint_matrix() if midpoint_torso
                     else np.eye(skeleton.NUM_JOINTS).tolist(), dtype=torch.float32)
    keys = [(s, w) for s in draws.sizes for w in (0, *sorted(draws.strip_widths)) if w < s]
    pending: dict[tuple[int, int], list[np.ndarray]] = {k: [] for k in keys}
    regions: dict[tuple[int, int], list[np.ndarray]] = {k: [] for k in keys}
    gated = strips_refused(model)
    xy: dict[tuple[int, int], list[torch.Tensor]] = {k: [] for k in keys}
    depth: dict[tuple[int, int], list[np.ndarray]] = {k: [] for k in keys}

    def run(key: tuple[int, int]) -> None:
        x = np.concatenate([normalise(c, cfg.input_mean, cfg.input_std) for c in pending[key]])
        region = torch.from_numpy(np.stack(regions[key])[:, None]) if gated else None
        joints = model(torch.from_numpy(x), region=region).joints.float()  # strip: square frame
        xy[key].append((m @ joints)[..., :2] * key[0])
        pending[key].clear()
        regions[key].clear()

    counts: dict[str, int] = {}
    # padded where the crop leaves the frame with the input mean, as the estimator's crops are
    for key, crop, z, cells in _person_crops(corpus, draws, rng,
                                             mean_fill(tuple(cfg.input_mean)), counts):
        pending[key].append(crop)
        regions[key].append(cells)
        depth[key].append(z)
        if len(pending[key]) == draws.batch:
            run(key)
    for key in keys:
        if pending[key]:
            run(key)
    out = [t for k in keys for t in xy[k]]
    if not out:
        return (torch.zeros(0, skeleton.NUM_JOINTS, 2), torch.zeros(0, skeleton.NUM_JOINTS),
                counts)  # fmt: skip
    z_mm = np.stack([d for k in keys for d in depth[k]])
    return torch.cat(out), torch.as_tensor(z_mm, dtype=torch.float32), counts


def draws_for(net: torch.nn.Module, draws: CropDraws) -> CropDraws:
    """``draws`` as the node reads ``net``'s tracking crops. A dense network: as given (its
    ``crop_input_size`` is the user's pick among the sizes, and strips where the person fits).
    A gated one: squares only (its masks are square) and at its own input size only, with as
    many crops per person as ``draws`` takes over all its sizes — the sparse model runs its
    crops at its own size (``crop_input_size`` 0: at 224 it loses, ``models/MODEL_CARD.md``),
    so 2D read at other sizes is a mistake it will not make (held-out tracking, sparse model:
    65.1 / 42.3 mm against 65.7 / 43.2 with the 192 / 224 / 256 draws)."""
    if not strips_refused(net):
        return draws
    own = int(net.cfg.input_size)  # type: ignore[union-attr]
    return dataclasses.replace(draws, sizes=(own,), strip_widths=(),
                               per_size=draws.per_size * len(draws.sizes))


def strips_refused(net: torch.nn.Module) -> bool:
    """Whether the node reads ``net``'s crops as squares only: a gated network's masks are
    square (``torch_backend.checked_strip_width``), so its lifter has no strip pairs to learn."""
    gated = getattr(net, "gated_blocks", None)
    return bool(gated()) if callable(gated) else False


def share_weights(base: torch.Tensor, extra: int, share: float) -> torch.Tensor:
    """(len(base) + extra,) draw weights: ``base`` as given, then ``extra`` equal weights that
    together make ``share`` of the total (0 < share < 1)."""
    if not 0 < share < 1:
        raise ValueError(f"share must be in (0, 1), got {share}")
    if extra <= 0:
        return base
    each = float(base.sum()) * share / (1 - share) / extra
    return torch.cat([base, torch.full((extra,), each)])

