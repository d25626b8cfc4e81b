"""The lifter's own-2D pairs: the network's 2D on crops of calibrated training frames, paired
with the triangulated depth of the same person in the same view."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fake_label_cache import VIEWS, K, view_videos, write_label_set, write_sources

from sparse_pose_ros import skeleton
from sparse_pose_ros.data.label_cache import iter_images, load_corpus
from sparse_pose_ros.model.network import NetworkConfig, PoseNetwork
from sparse_pose_ros.pipeline.preprocess import crop_window, mean_fill, normalise
from sparse_pose_ros.pipeline.roi import RoiConfig, region_cells, roi_window
from sparse_pose_ros.training.lifter_network_2d import (
    CropDraws,
    draws_for,
    network_2d_pairs,
    share_weights,
)

J = skeleton.NUM_JOINTS


def _cam(seed: int) -> np.ndarray:
    """(2 frames, 2 views, J, 3) skeletons ~3 m in front of each view, 0.2 m across."""
    cam = np.random.default_rng(seed).normal(0.0, 0.1, (2, 2, J, 3))
    cam[..., 2] += 3.0
    return cam


def _cache(root: Path, cam: np.ndarray) -> Path:
    """Held-out sources (with a triangulation too) and a calibrated *training* trial."""
    labels = root / "labels"
    write_sources(labels, "", [True], lambda v, i: True, cam=cam)  # held out: never read
    files, frames = view_videos(root / "media", "train_", "trial", 20, lambda v, i: True)
    write_label_set(labels / "trial", {"id": "trial", "split": "train", "views": list(VIEWS)},
                    files, frames, triangulated=True, cam=cam)
    return labels


class _Probe(torch.nn.Module):
    """A stand-in network whose joints are read off its input's first pixels, so every crop
    gives different 2D (an untrained PoseNetwork puts every joint at the centre)."""

    def __init__(self) -> None:
        super().__init__()
        self.cfg = NetworkConfig(input_size=64, width_mult=0.35, head_channels=16, gated=False)

    def forward(self, x: torch.Tensor, region: torch.Tensor | None = None) -> SimpleNamespace:
        first = x[:, 0].flatten(1)[:, : J * 3]
        return SimpleNamespace(joints=torch.sigmoid(first.reshape(-1, J, 3)))


def _net() -> _Probe:
    return _Probe().eval()


def test_pairs_are_the_networks_2d_on_the_persons_crop_and_its_depth(tmp_path: Path) -> None:
    cam = _cam(0)
    labels = _cache(tmp_path, cam)
    corpus = load_corpus(labels)
    net = _net()
    exact = CropDraws(sizes=(32, 64), per_size=1, scale_jitter=0.0, shift_jitter=0.0)
    xy, z, counts = network_2d_pairs(net, corpus, exact, seed=0)  # type: ignore[arg-type]
    # only the training trial: 2 frames x 2 views x 1 person, at 2 sizes
    assert counts == {"trial": 4}
    assert xy.shape == (8, J, 2) and z.shape == (8, J)
    # the order: every crop at 32, then every crop at 64; rows in manifest order (c1 f0, f1,
    # c2 f0, f1); the depth is that view's triangulated skeleton's, root-relative, in mm
    views = [cam[0, 0], cam[1, 0], cam[0, 1], cam[1, 1]]
    for k in range(2):
        for r, skel in enumerate(views):
            np.testing.assert_allclose(z[4 * k + r].numpy(),
                                       (skel[:, 2] - skel[skeleton.ROOT, 2]) * 1000.0,
                                       rtol=1e-5, atol=1e-3)  # fmt: skip
    # and the 2D is the network's answer on the node's tracking crop around that person
    rgb = dict(iter_images(corpus["trial"]))[2]  # view c2, frame 0
    uvw = cam[0, 1] @ K.T
    box = roi_window(uvw[:, :2] / uvw[:, 2:], 80, 60, 64)
    x = normalise(crop_window(rgb, box, mean_fill(net.cfg.input_mean)), net.cfg.input_mean,
                  net.cfg.input_std)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).joints[0, :, :2] * 64
    torch.testing.assert_close(xy[4 + 2], want, rtol=1e-4, atol=1e-4)
    # with the torso as mid-points, the 2D pelvis is the hips' mid-point
    mid, _, _ = network_2d_pairs(net, corpus, exact, seed=0, midpoint_torso=True)  # type: ignore[arg-type]
    hips = [skeleton.JOINT_NAMES.index(n) for n in ("left_hip", "right_hip")]
    torch.testing.assert_close(mid[:, skeleton.ROOT], mid[:, hips].mean(dim=1))
    assert not torch.allclose(mid, xy)


def test_jittered_crops_differ_and_a_cache_without_training_views_gives_none(tmp_path: Path
                                                                             ) -> None:
    labels = _cache(tmp_path, _cam(1))
    corpus = load_corpus(labels)
    net = _net()
    draws = CropDraws(sizes=(64,), per_size=2)
    a, za, _ = network_2d_pairs(net, corpus, draws, seed=0)  # type: ignore[arg-type]
    b, _, _ = network_2d_pairs(net, corpus, draws, seed=0)  # type: ignore[arg-type]
    c, _, _ = network_2d_pairs(net, corpus, draws, seed=1)  # type: ignore[arg-type]
    assert a.shape == (8, J, 2)
    torch.testing.assert_close(a, b)  # seeded
    assert not torch.allclose(a, c)
    torch.testing.assert_close(za[0], za[1])  # two crops of one person: one depth
    assert not torch.allclose(a[0], a[1])
    held = {sid: ls for sid, ls in corpus.items() if sid != "trial"}
    xy, z, counts = network_2d_pairs(net, held, draws, seed=0)  # type: ignore[arg-type]
    assert xy.shape == (0, J, 2) and z.shape == (0, J) and counts == {}


def test_share_weights_and_draw_options() -> None:
    base = torch.tensor([1.0, 1.0, 2.0])
    w = share_weights(base, 2, 0.25)
    assert w.shape == (5,)
    torch.testing.assert_close(w[3:].sum() / w.sum(), torch.tensor(0.25))
    torch.testing.assert_close(w[:3], base)
    assert share_weights(base, 0, 0.5) is base
    with pytest.raises(ValueError, match="share"):
        share_weights(base, 2, 1.0)
    for bad in ({"sizes": (100,)}, {"sizes": ()}, {"per_size": 0}, {"scale_jitter": 1.0},
                {"shift_jitter": 0.6}):
        with pytest.raises(ValueError):
            CropDraws(**bad)  # type: ignore[arg-type]


def _tiny_net(seed: int) -> PoseNetwork:
    torch.manual_seed(seed)
    return PoseNetwork(NetworkConfig(input_size=64, width_mult=0.35, head_channels=16,
                                     gated=False)).eval()


def test_recipe_lifter_per_checkpoint_learns_its_own_2d_and_is_cached(tmp_path: Path) -> None:
    from sparse_pose_ros.training.frozen_recipe import RecipeConfig, lifter_stage

    labels = _cache(tmp_path, _cam(2))
    cfg = RecipeConfig(out_dir=str(tmp_path / "runs"), labels=str(labels), synthetic="",
                       lifter_steps=10, lifter_views_per_pose=3, lifter_network_2d_share=0.3)
    with pytest.raises(ValueError, match="needs the network"):
        lifter_stage(cfg, {}, 1000.0)
    dense, sparse = _tiny_net(0), _tiny_net(1)
    report: dict = {}
    assert lifter_stage(cfg, report, 1000.0, dense, "dense") is not None
    own = report["lifter_dense"]["network_2d"]
    # 2 frames x 2 views x 1 person, 3 sizes x 2 jittered crops each (CropDraws' defaults),
    # and each crop's strip too (these people fit one)
    assert own["pairs"] == 4 * 3 * 2 * 2 and own["persons_x_views"] == {"trial": 4}
    assert "lifter" not in report and (tmp_path / "runs" / cfg.name / "lifter_dense.pt").is_file()
    again: dict = {}
    lifter_stage(cfg, again, 1000.0, dense, "dense")
    assert again == {}  # the same network: cached
    lifter_stage(cfg, again, 1000.0, sparse, "sparse")
    assert "lifter_sparse" in again  # another checkpoint: its own lifter
    changed: dict = {}
    with torch.no_grad():
        next(dense.parameters()).add_(1.0)
    lifter_stage(cfg, changed, 1000.0, dense, "dense")
    assert "lifter_dense" in changed  # its weights changed: its 2D did, retrained
    with pytest.raises(ValueError, match="lifter_network_2d_share"):
        lifter_stage(RecipeConfig(**{**cfg.__dict__, "lifter_network_2d_share": 1.0}), {},
                     1000.0, dense)


def test_a_crop_whose_person_fits_a_strip_also_gives_the_strips_pair(tmp_path: Path) -> None:
    """As the estimator reads a narrow person's crop through a strip, so the pairs hold that
    strip's 2D (in the square's frame, like the square's) beside the square's, same depth."""
    cam = _cam(3)
    cam[..., 0] *= 0.2  # narrow, upright people: 0.04 m across, 0.2 m tall
    cam[..., 1] *= 2.0
    labels = _cache(tmp_path, cam)
    corpus = load_corpus(labels)
    net = _tiny_net(0)
    squares = CropDraws(sizes=(64,), per_size=1, scale_jitter=0.0, shift_jitter=0.0,
                        strip_widths=())
    strips = CropDraws(sizes=(64,), per_size=1, scale_jitter=0.0, shift_jitter=0.0,
                       strip_widths=(32,))
    sq, zsq, _ = network_2d_pairs(net, corpus, squares, seed=0)
    both, zboth, _ = network_2d_pairs(net, corpus, strips, seed=0)
    assert sq.shape == (4, J, 2) and both.shape == (8, J, 2)  # every person fits the strip
    torch.testing.assert_close(both[:4], sq)  # the squares first, unchanged
    torch.testing.assert_close(zboth[4:], zsq)  # then the strips, same people, same depth
    rgb = dict(iter_images(corpus["trial"]))[2]  # view c2, frame 0: the third pair
    uvw = cam[0, 1] @ K.T
    box = roi_window(uvw[:, :2] / uvw[:, 2:], 80, 60, 64, input_width=32)
    x = normalise(crop_window(rgb, box, mean_fill(net.cfg.input_mean)), net.cfg.input_mean,
                  net.cfg.input_std)
    assert x.shape == (1, 3, 64, 32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).joints[0, :, :2] * 64
    torch.testing.assert_close(both[4 + 2], want, rtol=1e-4, atol=1e-4)
    assert 16 <= float(both[4:, :, 0].min()) and float(both[4:, :, 0].max()) <= 48
    with pytest.raises(ValueError, match="strip_widths"):
        CropDraws(strip_widths=(100,))
    with pytest.raises(ValueError, match="strip_margin"):
        CropDraws(strip_margin=0.5)
    # the strip is chosen with the draws' own margin: a person 0.6 as wide as tall fits the
    # half-width strip at 1.2, not at the square's 1.5
    person = np.c_[np.linspace(0, 60, J), np.linspace(0, 100, J)]
    roi = RoiConfig()
    assert CropDraws(strip_widths=(32,), strip_margin=1.5).strip_for(person, 64, roi) == 0
    assert CropDraws(strip_widths=(32,), strip_margin=1.2).strip_for(person, 64, roi) == 32


def test_a_gated_network_gets_square_crops_only(tmp_path: Path) -> None:
    """The node reads a gated model's crops as squares, so its pairs have no strips."""
    cam = _cam(3)
    cam[..., 0] *= 0.2
    cam[..., 1] *= 2.0
    corpus = load_corpus(_cache(tmp_path, cam))
    torch.manual_seed(0)
    gated = PoseNetwork(NetworkConfig(input_size=64, width_mult=0.35, head_channels=16,
                                      gated=True)).eval()
    draws = CropDraws(sizes=(64,), per_size=1, scale_jitter=0.0, shift_jitter=0.0,
                      strip_widths=(32,))
    xy, _, _ = network_2d_pairs(gated, corpus, draws, seed=0)  # type: ignore[arg-type]
    assert xy.shape == (4, J, 2)


def test_a_gated_network_is_read_at_its_own_size_only(tmp_path: Path) -> None:
    """The sparse model runs its tracking crops at its own input size (at 224 it loses), so its
    pairs are drawn there only, as many per person as the draws take over all their sizes;
    a dense network's draws stay as given."""
    gated = PoseNetwork(NetworkConfig(input_size=64, width_mult=0.35, head_channels=16,
                                      gated=True)).eval()
    draws = CropDraws(sizes=(64, 96, 128), per_size=2, strip_widths=(32,))
    own = draws_for(gated, draws)
    assert (own.sizes, own.per_size, own.strip_widths) == ((64,), 6, ())
    assert draws_for(gated, own) == own  # already resolved: unchanged
    assert draws_for(_tiny_net(0), draws) == draws
    corpus = load_corpus(_cache(tmp_path, _cam(5)))
    sizes: list[int] = []
    forward = PoseNetwork.forward

    def spy(self: PoseNetwork, x: torch.Tensor, with_movenet: bool = False,
            region: torch.Tensor | None = None) -> object:
        sizes.append(int(x.shape[-1]))
        return forward(self, x, with_movenet, region)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(PoseNetwork, "forward", spy)
        xy, _, _ = network_2d_pairs(gated, corpus, draws, seed=0)
    assert set(sizes) == {64} and len(xy) == 4 * 6  # 2 frames x 2 views x 1 person


def test_a_gated_network_reads_each_crop_on_the_region_the_estimator_gives_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In video the node's gated model runs on the previous pose's region, not its locator's
    masks: each crop's pairs come from that region (the drawn joints' cells), and the 2D is
    what the network gives on it."""
    cam = _cam(4)
    cam[..., 0] *= 0.2  # an upright person: the region leaves the crop's sides out
    cam[..., 1] *= 2.0
    corpus = load_corpus(_cache(tmp_path, cam))
    torch.manual_seed(0)
    gated = PoseNetwork(NetworkConfig(input_size=128, width_mult=0.35, head_channels=16,
                                      gated=True, mask_source="locator")).eval()
    draws = CropDraws(sizes=(128,), per_size=1, scale_jitter=0.0, shift_jitter=0.0, batch=1)
    seen: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    forward = PoseNetwork.forward

    def spy(self: PoseNetwork, x: torch.Tensor, with_movenet: bool = False,
            region: torch.Tensor | None = None) -> object:
        seen.append((x.clone(), None if region is None else region.clone()))
        return forward(self, x, with_movenet, region)

    monkeypatch.setattr(PoseNetwork, "forward", spy)
    xy, _, _ = network_2d_pairs(gated, corpus, draws, seed=0)  # type: ignore[arg-type]
    monkeypatch.setattr(PoseNetwork, "forward", forward)
    assert len(seen) == len(xy) == 4
    # the regions the estimator would hand it, crop by crop (no jitter: the true joints')
    ls = corpus["trial"]
    from sparse_pose_ros.data.lifter_poses import view_skeletons

    skels = {row: (s, k) for row, s, k in view_skeletons(ls)}
    expected = []
    for row, rgb in iter_images(ls):
        if row not in skels:
            continue
        for c in skels[row][0]:
            uvw = c @ skels[row][1].T
            uv = uvw[:, :2] / uvw[:, 2:]
            box = roi_window(uv, rgb.shape[1], rgb.shape[0], 128, RoiConfig())
            cells = region_cells(uv, box)
            assert cells is not None and 0 < cells.mean() < 1
            expected.append(cells)
    for (x, region), cells, pair in zip(seen, expected, xy, strict=True):
        assert region is not None and region.shape == (1, 1, 8, 8)
        np.testing.assert_array_equal(region[0, 0].numpy(), cells)
        with torch.no_grad():
            out = gated(x, region=region)
            locator = gated(x)
        torch.testing.assert_close(pair, out.joints[0, :, :2] * 128)
        # the region gates the network differently from its locator: it changes what it sees
        assert not torch.allclose(out.heatmaps, locator.heatmaps)
