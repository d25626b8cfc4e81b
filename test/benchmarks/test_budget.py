"""Budget benchmark CLI: the pure helpers exactly, the sweep and replay end to end (--quick).

End-to-end runs use a random-init tiny checkpoint and shards of synthetic-looking frames written
with the shard writer (a box-shaped "person" of a chosen size, joints projected with K), so no
renderer is needed and both subcommands finish in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sparse_pose_ros.benchmarks import budget
from sparse_pose_ros.data.shards import write_shard
from sparse_pose_ros.data.synthetic import Frame
from sparse_pose_ros.model.checkpoint import save_checkpoint
from sparse_pose_ros.model.network import NetworkConfig, PoseNetwork

SIZE = 96


def _frame(i: int, rng: np.random.Generator) -> Frame:
    """A frame whose person box side grows with ``i % 6`` (so mask fractions differ)."""
    f = 110.0
    k = np.array([[f, 0, SIZE / 2 - 0.5], [0, f, SIZE / 2 - 0.5], [0, 0, 1]], np.float32)
    root = np.array([0.0, 0.0, 3000.0 - 250.0 * (i % 6)])
    joints_3d = (root + rng.normal(0, 250.0, (17, 3)) * [1, 2, 0.3]).astype(np.float32)
    uv = joints_3d[:, :2] / joints_3d[:, 2:] * f + SIZE / 2 - 0.5
    half = 4 + 5 * (i % 6)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[SIZE // 2 - 2 * half: SIZE // 2 + 2 * half, SIZE // 2 - half: SIZE // 2 + half] = 1
    image = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    image[mask > 0] = (200, 120, 60)
    inside = ((uv >= 0) & (uv <= SIZE - 1)).all(axis=1).astype(np.uint8)
    return Frame(
        image=image, mask=mask, joints_2d=uv.astype(np.float32), joints_3d=joints_3d,
        visible=inside.copy(), in_frame=inside, K=k,
        bbox=np.array([0, 0, SIZE - 1, SIZE - 1], np.float32),
        meta={"family": 0, "style": 0, "subject": 0, "occluded": 0, "elevation_deg": 0.0,
              "height_fraction": 4 * half / SIZE, "mask_fraction": float(mask.mean()),
              "index": i},
        body_pose=np.zeros((21, 3), np.float32), betas=np.zeros(10, np.float32),
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("budget")
    rng = np.random.default_rng(0)
    frames = [_frame(i, rng) for i in range(18)]
    data = root / "test"
    data.mkdir()
    write_shard(data / "test-00000.npz", frames, {"split": "test"})
    torch.manual_seed(0)
    net = PoseNetwork(NetworkConfig(input_size=64, width_mult=0.25, gate_strided=True,
                                    head_channels=16, depth_bins=16)).eval()
    with torch.no_grad():  # spread the mask logits around 0 so the threshold changes the masks
        for block in net.gated_blocks():
            torch.nn.init.normal_(block.mask_unit.conv.weight, std=0.5)
            torch.nn.init.zeros_(block.mask_unit.conv.bias)
    ckpt = root / "tiny.safetensors"
    save_checkpoint(ckpt, net, {"note": "random init, test only"})
    return {"root": root, "data": data, "ckpt": ckpt, "cache": root / "cache"}


def _cli(setup: dict[str, Path], mode: str, out: Path, *extra: str) -> int:
    return budget.main([mode, "--quick", "--checkpoint", str(setup["ckpt"]), "--data",
                        str(setup["data"]), "--cache-dir", str(setup["cache"]), "--out", str(out),
                        *extra])


def test_sweep_quick_writes_json_and_plot(setup: dict[str, Path]) -> None:
    out = setup["root"] / "sweep.json"
    assert _cli(setup, "sweep", out) == 0
    res = json.loads(out.read_text())
    assert [r["threshold"] for r in res["rows"]] == [0.2, 0.5, 0.8]
    for r in res["rows"]:
        assert np.isfinite(r["mpjpe_mm"]) and r["mpjpe_mm"] > 0
        assert 0 < r["pa_mpjpe_mm"] <= r["mpjpe_mm"] + 1e-6  # alignment can only reduce error
        assert 0 < r["latency"]["density_mean"] <= 1.1  # mask units add a little over dense
        assert r["latency"]["n"] == res["data"]["frames"] == 6
        assert r["latency"]["median_ms"] > 0
    for r in res["rows"]:  # per-frame errors (paired statistics) agree with evaluate_model
        assert np.mean(r["per_frame_mpjpe_mm"]) == pytest.approx(r["mpjpe_mm"], abs=0.01)
    dens = [r["latency"]["density_mean"] for r in res["rows"]]
    assert dens[0] > dens[1] > dens[2]  # a higher threshold executes less
    # the same density from the evaluation code and from the backend
    for r in res["rows"]:
        assert r["backbone_flops_fraction"] == pytest.approx(r["latency"]["density_mean"],
                                                             abs=0.02)
    assert res["bounds"]["min_threshold"] <= 0.5 <= res["bounds"]["max_threshold"]
    assert set(res["reference_masked_dense"]["latency"]) == {"0.2", "0.8"}
    assert res["command"].startswith("python -m sparse_pose_ros.benchmarks.budget sweep")
    assert res["load_average_before"] and res["machine"]["cpu_model"]
    assert out.with_suffix(".png").stat().st_size > 10_000


def test_sweep_times_the_masks_own_decision_on_region_backends(setup: dict[str, Path]) -> None:
    """On a backend that honours regions (torch here, sparse-cpu in the node) the sweep must
    still time what the threshold decides: the estimator's video defaults would execute the
    previous pose's region or every cell at every threshold."""
    out = setup["root"] / "sweep_torch.json"
    assert _cli(setup, "sweep", out, "--backend", "torch", "--reference-graph", "") == 0
    dens = [r["latency"]["density_mean"] for r in json.loads(out.read_text())["rows"]]
    assert dens[0] > dens[1] > dens[2]


def test_replay_quick_runs_the_control_loop(setup: dict[str, Path]) -> None:
    out = setup["root"] / "replay.json"
    assert _cli(setup, "replay", out) == 0
    res = json.loads(out.read_text())
    trace = res["trace"]
    assert len(trace) == 15 and len(res["fixed_threshold_trace"]) == 15
    lo, hi = res["controller"]["min_threshold"], res["controller"]["max_threshold"]
    assert all(lo - 1e-9 <= r["threshold"] <= hi + 1e-9 for r in trace)
    assert all(r["threshold"] == 0.5 for r in res["fixed_threshold_trace"])
    assert res["budget"]["target_ms"] > 0
    assert [s["scene"] for s in res["summary"]["segments"]] == ["small", "large", "medium"]
    fr = [s["mask_fraction_mean"] for s in res["summary"]["segments"]]
    assert fr[0] < fr[2] < fr[1]
    share = res["summary"]["within_tolerance_after_settling"]
    assert share["frames"] == 3 * (5 - 2) and 0.0 <= share["fraction"] <= 1.0
    assert out.with_suffix(".png").stat().st_size > 10_000


def test_replay_explicit_target_is_used(setup: dict[str, Path]) -> None:
    out = setup["root"] / "replay_target.json"
    assert _cli(setup, "replay", out, "--target-ms", "1e-3", "--no-baseline", "--no-plot",
                "--bounds", "0.3,0.7") == 0
    res = json.loads(out.read_text())
    assert res["budget"]["target_ms"] == pytest.approx(1e-3)
    assert res["fixed_threshold_trace"] is None
    assert (res["controller"]["min_threshold"], res["controller"]["max_threshold"]) == (0.3, 0.7)
    assert set(res["calibration_median_ms"]["small"]) >= {"0.3", "0.7"}
    # an unreachable budget pushes the threshold up, never past the upper bound
    ts = [r["threshold"] for r in res["trace"]]
    assert ts[-1] > ts[0] and max(ts) <= 0.7 + 1e-9


def test_missing_checkpoint_and_bad_arguments(setup: dict[str, Path], tmp_path: Path) -> None:
    assert budget.main(["sweep", "--checkpoint", str(tmp_path / "nope.safetensors"),
                        "--out", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()
    with pytest.raises(SystemExit):
        budget.main(["sweep", "--thresholds", "0.2,1.5"])
    with pytest.raises(SystemExit):
        budget.main(["replay", "--settle-frames", "10", "--segment-frames", "10"])
    with pytest.raises(SystemExit):
        budget.main(["replay", "--bounds", "0.7,0.3"])


def _errors(means: list[float], noise: float, n: int = 400, seed: int = 0) -> list[np.ndarray]:
    """Per-frame errors: a shared per-frame difficulty + the threshold's mean + private noise."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(30, 70, n)
    return [base + (m - 50.0) + rng.normal(0, noise, n) for m in means]


TS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
DENS = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]


def test_recommend_bounds_rule() -> None:
    # clear effects, little noise: 0.3 and below are > 1 % better; 0.8 is > 10 % worse
    rec = budget.recommend_bounds(TS, _errors([45, 46, 47, 49.9, 50, 51, 53, 56, 70], 0.5), DENS)
    assert (rec["min_threshold"], rec["max_threshold"]) == (0.1, 0.7)
    assert rec["reference_mpjpe_mm"] == pytest.approx(50.0, abs=2.0)
    d = rec["paired_delta_mm"]["0.8"]
    assert d["mean"] == pytest.approx(6.0, abs=0.2) and 0 < d["ci95_half_width"] < 0.2
    # the same means drowned in per-frame noise: nothing is significantly better, and the
    # intervals of the high thresholds reach past the 10 % limit -> the reference only
    noisy = budget.recommend_bounds(TS, _errors([45, 46, 47, 49.9, 50, 51, 53, 56, 70], 60.0),
                                    DENS)
    assert noisy["min_threshold"] == 0.5 and noisy["max_threshold"] < 0.8
    # identical accuracy everywhere: max stops where density stops falling (0.7 here)
    flat = budget.recommend_bounds(TS[::-1], _errors([50] * 9, 1.0)[::-1],
                                   [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.2, 0.2, 0.2][::-1])
    assert (flat["min_threshold"], flat["max_threshold"]) == (0.5, 0.7)
    assert flat["density_floor_from_threshold"] == 0.7
    with pytest.raises(ValueError):
        budget.recommend_bounds([0.2, 0.8], _errors([1.0, 2.0], 1.0), [0.5, 0.4])  # no 0.5
    with pytest.raises(ValueError):
        budget.recommend_bounds([0.5], _errors([1.0, 2.0], 1.0), [0.5])


def test_paired_delta() -> None:
    mean, half = budget.paired_delta(np.array([2.0, 4.0, 6.0]), np.array([1.0, 2.0, 3.0]))
    assert mean == pytest.approx(2.0)
    assert half == pytest.approx(1.96 * 1.0 / np.sqrt(3))
    with pytest.raises(ValueError):
        budget.paired_delta(np.array([]), np.array([]))


def test_select_clip_orders_scenes_by_person_size() -> None:
    frac = np.array([0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6])
    clip = budget.select_clip(frac, 3)
    assert clip["small"] == [1, 3, 5]
    assert clip["large"] == [2, 4, 6]
    assert clip["medium"] == [0, 7, 8]
    with pytest.raises(ValueError):
        budget.select_clip(frac, 4)


def test_choose_target_between_bounds() -> None:
    cal = {"a": {"0.2": 10.0, "0.8": 4.0}, "b": {"0.2": 12.0, "0.8": 6.0}}
    t = budget.choose_target(cal, 0.2, 0.8)
    assert t["feasible_for_every_scene"] and t["target_ms"] == pytest.approx(8.0)
    cal = {"a": {"0.2": 5.0, "0.8": 3.0}, "b": {"0.2": 12.0, "0.8": 9.0}}
    t = budget.choose_target(cal, 0.2, 0.8)
    assert not t["feasible_for_every_scene"]
    assert t["target_ms"] == pytest.approx(0.5 * (6.0 + 8.5))


def test_settled_share_skips_settling_frames() -> None:
    trace = [{"latency_ms": v} for v in (50, 50, 10, 10.5, 9.5, 50, 50, 10, 12, 10)]
    res = budget.settled_share(trace, [(0, 5), (5, 10)], 10.0, 0.1, settle=2)
    assert res["frames"] == 6
    assert res["per_segment"] == [1.0, pytest.approx(2 / 3)]
    assert res["fraction"] == pytest.approx(5 / 6)
    # a deadline's view: frames under the target count, frames over it by more than 10 % not
    res = budget.settled_share(trace, [(0, 5), (5, 10)], 11.0, 0.1, settle=2, below_ok=True)
    assert res["per_segment"] == [1.0, 1.0]  # 12 <= 1.1 * 11
    res = budget.settled_share(trace, [(0, 5), (5, 10)], 10.0, 0.1, settle=2, below_ok=True)
    assert res["per_segment"] == [1.0, pytest.approx(2 / 3)]  # 12 > 1.1 * 10
    low = [{"latency_ms": v} for v in (5.0, 5.0, 5.0)]
    assert budget.settled_share(low, [(0, 3)], 10.0, 0.1, settle=0)["fraction"] == 0.0
    assert budget.settled_share(low, [(0, 3)], 10.0, 0.1, settle=0,
                                below_ok=True)["fraction"] == 1.0


def test_replay_on_real_video_from_the_label_cache(setup: dict[str, Path]) -> None:
    """--real plays label-cache sources one after the other (each a scene, in video order) with
    their calibrated intrinsics where they have them, the node's nominal view elsewhere."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from fake_label_cache import write_sources

    labels = setup["root"] / "labels"
    write_sources(labels, "", still_detected=(True, False), view_detected=lambda v, i: True)
    out = setup["root"] / "replay_real.json"
    assert _cli(setup, "replay", out, "--real", str(labels), "--real-sources", "views,stills",
                "--no-plot", "--segment-frames", "5") == 0
    res = json.loads(out.read_text())
    assert res["clip"]["scenes"] == ["views", "stills"]
    assert res["clip"]["frames_per_scene"] == [4, 2] and len(res["trace"]) == 6
    assert res["clip"]["data"] == str(labels) and "real video" in res["clip"]["selection"]
    assert set(res["calibration_median_ms"]) == {"views", "stills"}
    segs = res["summary"]["segments"]
    assert [s["scene"] for s in segs] == ["views", "stills"]
    assert segs[0]["mask_fraction_mean"] > 0  # BlazePose's mask share of the image
    assert all(r["latency_ms"] > 0 for r in res["trace"])
    # a source the cache does not have is an error, not an empty scene
    assert _cli(setup, "replay", setup["root"] / "x.json", "--real", str(labels),
                "--real-sources", "nope", "--no-plot") == 2
    assert not (setup["root"] / "x.json").exists()


def _dense_replay(setup: dict[str, Path], name: str, sources: str, *extra: str
                  ) -> tuple[list[str], Path]:  # fmt: skip
    """The argv of a quick ``replay --knob strip-floor`` of a tiny dense checkpoint on the
    fake label cache's views (``sources``, comma-separated), and its output path."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from fake_label_cache import write_sources

    torch.manual_seed(0)
    dense = setup["root"] / f"{name}.safetensors"
    save_checkpoint(dense, PoseNetwork(NetworkConfig(input_size=64, width_mult=0.25,
                                                     head_channels=16, depth_bins=16,
                                                     gated=False)).eval(), {"note": "test"})
    labels = setup["root"] / f"labels_{name}"
    write_sources(labels, "", still_detected=(True, False), view_detected=lambda v, i: True)
    out = setup["root"] / f"replay_{name}.json"
    return ["replay", "--quick", "--checkpoint", str(dense), "--cache-dir",
            str(setup["cache"]), "--out", str(out), "--backend", "torch", "--knob",
            "strip-floor", "--real", str(labels), "--real-sources", sources,
            "--segment-frames", "5",
            "--recheck-ratio", "0",  # an untrained crop's confidence falls: no re-reads
            *extra], out


def test_replay_moves_a_dense_models_strip_floor(setup: dict[str, Path]) -> None:
    """--knob strip-floor: the node's default path for a dense model (tracking crops read as
    strips), the controller's level mapped onto a floor under the strip width; a generous
    budget raises the floor on tracked frames (whole frames leave it alone) and the strips
    widen with it; the fixed run has no floor; a gated model is refused (its knob is the
    threshold)."""
    from sparse_pose_ros.pipeline.strip_budget import LEVEL_BOUNDS

    args, out = _dense_replay(setup, "strips", "views", "--no-plot", "--confidence-threshold",
                              "0", "--target-ms", "10000")
    assert budget.main(args) == 0
    res = json.loads(out.read_text())
    assert res["knob"].startswith("strip_floor") and res["crop_input_size"] == 224
    lo, hi = LEVEL_BOUNDS
    assert set(res["calibration_median_ms"]["views"]) >= {f"{lo:g}", f"{hi:g}"}
    trace = res["trace"]
    assert len(trace) == 4 and trace[0]["strip_floor"] == 0.0  # the default path at first
    floors = [r["strip_floor"] for r in trace]
    assert all(b >= a - 1e-9 for a, b in zip(floors, floors[1:], strict=False))
    assert floors[-1] > 0.0
    # every tracked frame reads a strip at or above the floor it was given (or the square)
    for r in trace[1:]:
        assert r["input_width"] >= r["strip_floor"] * 224 - 1e-6
    assert "strip_floor_mean" in res["summary"]["segments"][0]
    assert all(r["strip_floor"] == 0.0 for r in res["fixed_threshold_trace"])
    # a gated checkpoint has no strips to move
    gated = [*args[:3], str(setup["ckpt"]), *args[4:]]
    assert budget.main(gated) == 2


def test_replay_shrinks_a_dense_models_whole_frames(setup: dict[str, Path]) -> None:
    """--whole-frame-sizes: whole frames (here every frame: nobody is found) feed a second
    controller that reads them at a smaller square when over the budget; the fixed run keeps
    the model's own size; the trace says which frames were whole."""
    import cv2

    args, out = _dense_replay(setup, "whole", "views,views,views", "--confidence-threshold",
                              "1", "--target-ms", "0.01", "--whole-frame-sizes", "32,48")

    cv2.setNumThreads(2)
    assert budget.main(args) == 0
    res = json.loads(out.read_text())
    assert cv2.getNumThreads() == 1  # the replay's process is set up as the node's
    assert res["whole_frame_sizes"] == [32, 48, 64] and "whole_size" in res["knob"]
    assert out.with_suffix(".png").stat().st_size > 0  # the plot draws both knobs
    assert "consecutive" in res["clip"]["selection"]
    trace = res["trace"]
    assert all(not r["tracked"] for r in trace)
    assert trace[0]["whole_size"] == 64 and trace[0]["input_height"] == 64  # starts at its own
    sizes = [r["whole_size"] for r in trace]
    assert all(b <= a for a, b in zip(sizes, sizes[1:], strict=False)) and sizes[-1] < 64
    assert all(r["input_height"] == r["input_width"] == r["whole_size"] for r in trace)
    assert all(r["whole_size"] == 64 for r in res["fixed_threshold_trace"])
    ceiling = res["summary"]["same_setting_within_tolerance_of_its_median"]
    assert ceiling["frames"] == 6 and ceiling["settings"] >= 1 and 0 < ceiling["fraction"] <= 1
    for seg in res["summary"]["segments"]:  # three plays of the 4-frame source
        assert seg["whole_frames"] == 4 - res["settle_frames"] and seg["strip_frames"] == 0


def test_the_jitter_ceiling_groups_frames_by_the_setting_they_ran() -> None:
    from sparse_pose_ros.benchmarks.budget_replay import setting_jitter_share

    row = {"tracked": True, "input_height": 224.0, "input_width": 128.0}
    trace = [{**row, "latency_ms": v} for v in (99.0, 10.0, 10.5, 9.6, 13.0)]
    trace += [{**row, "input_width": 192.0, "latency_ms": v} for v in (20.0, 20.0, 30.0)]
    out = setting_jitter_share(trace, [(0, 8)], 0.1, 1)  # the first frame settles
    # 128 px: median 10.25, 13.0 is out; 192 px: median 20, 30 is out
    assert out == {"fraction": 5 / 7, "frames": 7, "settings": 2}


def test_real_clips_play_consecutive_frames_unless_spread(setup: dict[str, Path]) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from fake_label_cache import write_sources

    from sparse_pose_ros.benchmarks.budget_replay import real_clip

    labels = setup["root"] / "labels_order"
    write_sources(labels, "", still_detected=(True, False), view_detected=lambda v, i: True)
    _, every, _ = real_clip(str(labels), ["views"], 0)
    _, first, _ = real_clip(str(labels), ["views"], 3)
    _, spread, _ = real_clip(str(labels), ["views"], 3, contiguous=False)
    assert len(every) > 3
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, every[:3], strict=True))
    assert np.array_equal(spread[-1].image, every[-1].image)  # spread reaches the end
    assert not np.array_equal(first[-1].image, every[-1].image)
