"""Real held-out evaluation: metric helpers by hand, and the CLI end to end on a tiny fake label
cache (PNG stills + a two-view AVI source with triangulated labels) with tiny random networks.

The end-to-end test labels the fake cache with the evaluated network's own predictions, so the
CLI must report a perfect score (PCK 1, MPJPE 0), and with the labels shifted it must drop.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fake_label_cache import J, K, write_label_set, write_sources
from torch import nn

from sparse_pose_ros import skeleton
from sparse_pose_ros.backends import create_backend
from sparse_pose_ros.data import label_cache as lc
from sparse_pose_ros.evaluation import real_heldout as rh
from sparse_pose_ros.export.random_model import randomize_network
from sparse_pose_ros.model.checkpoint import save_checkpoint
from sparse_pose_ros.model.network import NetworkConfig, PoseNetwork, movenet_config
from sparse_pose_ros.pipeline.estimator import PoseEstimator, execution_mask
from sparse_pose_ros.pipeline.lift import Intrinsics
from sparse_pose_ros.pipeline.preprocess import Letterbox
from sparse_pose_ros.pipeline.roi import STRIP_MARGIN

# ---------------------------------------------------------------------------------------------
# helpers, hand-computed


def test_movenet_is_compared_on_its_own_joints() -> None:
    names = {skeleton.JOINT_NAMES[j] for j in rh.MOVENET_JOINTS}
    assert len(names) == 15 and not names & {"spine", "head_top"}
    assert {"pelvis", "thorax", "neck_nose", "left_wrist", "right_ankle"} <= names


def test_pck_block_counts_visible_joints_against_the_teacher_box() -> None:
    ref = np.zeros((2, J, 2))
    ref[:, :, 0] = np.arange(J) * 10.0  # box 160 px
    vis = np.ones((2, J), bool)
    vis[1] = False  # frame 2: nothing counted
    pred = ref.copy()
    pred[0, 0, 1] += 15.0  # 15/160 < 0.1
    pred[0, 1, 1] += 20.0  # 0.125: misses @0.1, hits @0.2
    pred[0, 2, 1] += 40.0  # 0.25: misses both
    pred[1] += 1000.0  # not counted
    box = np.array([160.0, 160.0])
    b = rh.pck_block(pred, ref, vis, box)
    assert b["frames"] == 1 and b["keypoints_counted"] == J
    assert b["pck@0.1"] == pytest.approx((J - 2) / J)
    assert b["pck@0.2"] == pytest.approx((J - 1) / J)
    assert b["per_joint_pck@0.1"]["right_hip"] == 0.0
    assert b["mean_error_box_fraction"] == pytest.approx((15 + 20 + 40) / 160 / J)
    assert b["same_person_frames"] == 1 and b["pck@0.1_same_person"] == b["pck@0.1"]
    sub = rh.pck_block(pred, ref, vis, box, joints=[0, 1])
    assert sub["keypoints_counted"] == 2 and sub["pck@0.1"] == 0.5
    assert set(sub["per_joint_pck@0.1"]) == {"pelvis", "right_hip"}
    missing = pred.copy()
    missing[0, 0] = np.nan  # a missing prediction of a counted joint is wrong, not skipped
    assert rh.pck_block(missing, ref, vis, box, joints=[0])["pck@0.2"] == 0.0


def test_same_person_tells_another_person_apart() -> None:
    ref = np.zeros((3, J, 2))
    ref[:, :, 0] = np.arange(J) * 10.0  # x 0..160, y 0
    ref[:, :, 1] = np.arange(J) * 5.0  # y 0..80
    pred = ref.copy()
    pred[1] += [50.0, 0.0]  # the same person, badly: centre still inside the box
    pred[2] += [400.0, 0.0]  # someone to the right
    counted = np.ones((3, J), bool)
    box = np.full(3, 160.0)
    assert rh.same_person(pred, ref, counted, box).tolist() == [True, True, False]
    counted[0] = False
    assert not rh.same_person(pred, ref, counted, box)[0]  # nothing counted: not the same
    b = rh.pck_block(pred, ref, np.ones((3, J), bool), box)
    assert b["same_person_frames"] == 2 and b["pck@0.2_same_person"] > b["pck@0.2"]


def test_n_mpjpe_and_separation() -> None:
    rng = np.random.default_rng(0)
    gt = rng.normal(0, 300, (3, J, 3))
    assert rh.n_mpjpe(2.0 * gt + 50.0, gt) == pytest.approx(0.0, abs=1e-9)  # scale + offset
    assert rh.n_mpjpe(gt + rng.normal(0, 10, gt.shape), gt) > 1.0
    collapsed = gt.copy()
    for a, b in skeleton.FLIP_PAIRS:
        collapsed[:, a] = collapsed[:, b] = (gt[:, a] + gt[:, b]) / 2
    assert rh.separation_ratio_3d(collapsed, gt) == pytest.approx(0.0)
    assert rh.separation_ratio_3d(gt, gt) == pytest.approx(1.0)
    block = rh.pose3d_block(gt * 1.0, gt, "self")
    assert block["mpjpe_mm"] == pytest.approx(0.0) and block["frames"] == 3


def test_mask_counts_and_pooling() -> None:
    teacher = np.zeros((4, 8), np.uint8)
    teacher[:, :4] = 255  # the person: left half (16 px)
    block = np.zeros((8, 16), np.uint8)
    block[:, :4] = 255  # executed: the left quarter at image resolution
    counts = rh.mask_counts([block, np.full((8, 16), 255, np.uint8)], teacher)
    np.testing.assert_array_equal(counts, [[16, 8, 8, 32], [16, 16, 32, 32]])
    pooled = rh.mask_block(np.stack([counts, counts]), np.array([0.3, 0.5]), [2, 4])
    assert pooled["per_block"]["2"]["recall"] == 0.5 and pooled["per_block"]["4"]["recall"] == 1
    assert pooled["per_block"]["2"]["precision"] == 1.0
    assert pooled["min_block_recall"] == 0.5
    assert pooled["backbone_macs_executed"] == pytest.approx(0.4) and pooled["frames"] == 2


def test_block_masks_map_through_the_crop_the_estimator_used() -> None:
    whole = rh.box_of(SimpleNamespace(roi=None), 80, 60, 64)
    assert whole == Letterbox.fit(80, 60, 64)
    crop = rh.box_of(SimpleNamespace(roi=(10, 5, 40)), 80, 60, 64)
    assert crop.window_rect() == (10, 5, 40)
    img = execution_mask([np.ones((4, 4), np.uint8)], crop, (60, 80))
    assert img[5:45, 10:50].min() == 255 and img[:, 60:].max() == 0  # only the window ran


def test_relative_differences_and_json_safety() -> None:
    base = {"a": 2.0, "b": {"c": 4, "z": 0.0}, "only_base": 1.0, "flag": True}
    other = {"a": 1.0, "b": {"c": 5, "z": 1.0}, "flag": False}
    d = rh.relative_differences(base, other)
    assert d == {"a": -0.5, "b.c": 0.25, "b.z": None}
    assert rh.json_safe({"x": np.float32(np.nan), "y": [np.int64(3)]}) == {"x": None, "y": [3]}


def test_targets_say_met_or_not() -> None:
    t = rh.target_check({"pck_vs_blazepose": {"pck@0.1": 0.85}, "person_found_rate": 0.5})
    assert t["pck@0.1_vs_blazepose"]["met"] is True
    assert t["person_found_rate"]["met"] is False
    assert t["mpjpe_mm_vs_triangulated"]["met"] is None  # no triangulated source


def test_select_rows_spreads_and_keeps_all() -> None:
    assert rh.select_rows(5, 0) == [0, 1, 2, 3, 4]
    assert rh.select_rows(400, 4) == [0, 133, 266, 399]


# ---------------------------------------------------------------------------------------------
# the CLI end to end on a fake cache


def _tiny(tmp: Path, gated: bool) -> Path:
    """A tiny network whose joints spread over the image and follow its content (an untrained
    one answers the same point for every joint and image: its heads start near zero)."""
    torch.manual_seed(0)
    net = PoseNetwork(NetworkConfig(input_size=64, width_mult=0.35, head_channels=16,
                                    depth_bins=8, gated=gated))  # fmt: skip
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
                if m.bias is not None:
                    m.bias.normal_(0.0, 0.1)
    randomize_network(net, seed=0)  # BN statistics; mask units: part of the positions execute
    path = tmp / ("tiny_sparse.safetensors" if gated else "tiny_dense.safetensors")
    save_checkpoint(path, net, {"untrained": True})
    return path


def _tiny_movenet(tmp: Path) -> Path:
    torch.manual_seed(1)
    net = PoseNetwork(movenet_config("lightning", input_size=64, width_mult=0.35,
                                     last_channels=64, fpn_widths=(16, 16, 16, 16),
                                     head_hidden=16, gated=False))  # fmt: skip
    path = tmp / "tiny_movenet.safetensors"
    save_checkpoint(path, net, {})
    return path


#: the fake label cache's options here: head_top is never visible (not counted)
LABELS = {"hidden": ("head_top",)}


def _write_sources(root: Path) -> None:
    """Placeholder labels; :func:`_relabel` replaces them with a network's predictions. The
    last still: BlazePose found nobody."""
    write_sources(root, "fake_", still_detected=(True, True, False),
                  view_detected=lambda v, i: True, **LABELS)


def _relabel(root: Path, ckpt: Path, shift: float = 0.0) -> None:
    """BlazePose 2D/3D and the triangulation := the network's own prediction (2D shifted right
    by ``shift`` x the box of the counted joints), with the CLI's estimator settings."""
    est = PoseEstimator(create_backend("torch", ckpt, "cpu", head_gating=True,
                                       mask_threshold=0.5), confidence_threshold=0.3,
                        region_from_pose=False)  # fmt: skip
    for ls in lc.load_corpus(root).values():
        n = len(ls.frame_ids)
        px, world, cam = np.zeros((n, J, 2)), np.zeros((n, J, 3)), np.zeros((2, 2, J, 3))
        for row, rgb in lc.iter_images(ls):
            f = ls.manifest["frames"][row]
            intr = Intrinsics.from_k(K, 80, 60) if f["view"] else None
            r = est.estimate(rgb, intr)
            counted = np.arange(J) != skeleton.JOINT_NAMES.index("head_top")
            span = np.ptp(r.joints_px[counted], axis=0).max()
            px[row] = r.joints_px + [shift * span, 0.0]
            world[row] = r.joints_m - r.joints_m[0]
            if f["view"]:
                cam[f["index"], ["cam01", "cam02"].index(f["view"])] = r.joints_m
        write_label_set(ls.folder, ls.manifest["source"], ls.manifest["files"],
                        ls.manifest["frames"], ls.triangulated is not None, px, world, cam,
                        **LABELS)  # fmt: skip


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("real_heldout")
    torch.set_num_threads(1)
    ckpts = {"sparse": _tiny(tmp, True), "dense": _tiny(tmp, False),
             "movenet": _tiny_movenet(tmp)}  # fmt: skip
    root = tmp / "labels"
    _write_sources(root)
    return tmp, root, ckpts


def _run(tmp: Path, root: Path, ckpts: dict, *extra: str) -> dict:
    out = tmp / "result.json"
    argv = ["--labels", str(root), "--checkpoint", str(ckpts["sparse"]), "--movenet",
            str(ckpts["movenet"]), "--out", str(out), *extra]
    assert rh.main(argv) == 0
    return json.loads(out.read_text())


def test_cli_perfect_labels_score_perfectly(fake) -> None:
    tmp, root, ckpts = fake
    _relabel(root, ckpts["sparse"])
    r = _run(tmp, root, ckpts, "--checkpoint", str(ckpts["dense"]), "--pictures",
             str(tmp / "pics"), "--pictures-per-source", "1")
    for key in ("command", "machine", "date", "checkpoints", "movenet_reference", "sources",
                "references", "results", "targets", "relative_difference", "protocol"):
        assert key in r, key
    assert set(r["sources"]) == {"fake_stills", "fake_views"}  # held-out sources only
    assert r["frames"] == 7 and r["sources"]["fake_views"]["calibrated_intrinsics"]
    assert [c["name"] for c in r["checkpoints"]] == ["tiny_sparse", "tiny_dense"]
    assert all(len(c["model_hash"]) == 64 and len(c["sha256"]) == 64 for c in r["checkpoints"])
    o = r["results"]["tiny_sparse"]["overall"]
    assert o["frames"] == 7 and o["frames_blazepose_person"] == 6
    assert o["pck_vs_blazepose"]["pck@0.1"] == 1.0 and o["pck_vs_blazepose"]["pck@0.2"] == 1.0
    assert o["pck_vs_blazepose"]["mean_error_box_fraction"] == pytest.approx(0.0, abs=1e-5)
    assert o["pck_vs_blazepose"]["same_person_frames"] == 6
    assert o["pck_vs_blazepose"]["keypoints_counted"] == 6 * (J - 1)  # head_top not visible
    assert o["pck_vs_blazepose"]["per_joint_pck@0.1"]["head_top"] is None
    assert o["pck_vs_blazepose_movenet_joints"]["keypoints_counted"] == 6 * 15
    assert 0.0 <= o["pck_vs_movenet"]["pck@0.2"] <= 1.0
    assert o["left_right_separation_2d_vs_blazepose"] == pytest.approx(1.0)
    tri = o["3d_vs_triangulated"]
    assert tri["frames"] == 4 and tri["mpjpe_mm"] == pytest.approx(0.0, abs=0.05)
    assert tri["pa_mpjpe_mm"] == pytest.approx(0.0, abs=0.05)
    assert o["3d_vs_blazepose_world"]["pa_mpjpe_mm"] == pytest.approx(0.0, abs=0.05)
    assert "mpjpe_mm" not in o["3d_vs_blazepose_world"]  # its own frame: no raw MPJPE
    assert 0.0 <= o["person_found_rate"] <= 1.0
    m = o["masks"]["small_person"]
    assert m["frames"] == 6  # every detected frame's mask fills 1/6 of the image
    gated = r["checkpoints"][0]["gated_blocks"]
    assert gated and set(m["per_block"]) == {str(b) for b in gated}
    assert all(0.0 <= b["recall"] <= 1.0 for b in m["per_block"].values())
    assert 0.0 < m["backbone_macs_executed"] < 1.0  # randomised mask units: partly executed
    assert "masks" not in r["results"]["tiny_dense"]["overall"]
    diff = r["relative_difference"]["tiny_dense vs tiny_sparse"]
    assert "overall.pck_vs_blazepose.pck@0.1" in diff
    ref = r["references"]["overall"]
    assert ref["frames_triangulated"] == 4 and "movenet_vs_blazepose" in ref
    assert ref["blazepose_world_vs_triangulated"]["pa_mpjpe_mm"] == pytest.approx(0.0, abs=0.05)
    assert len(r["pictures"]) == 2 and all(Path(p).is_file() for p in r["pictures"])
    assert r["targets"]["tiny_sparse"]["pck@0.1_vs_blazepose"]["met"] is True
    # no lifter in these networks: nothing to lift exact 2D with (test_lift_ceiling has one)
    assert r["lift_from_triangulated_2d"] == {"tiny_sparse": None, "tiny_dense": None}


def test_cli_shifted_labels_score_lower(fake) -> None:
    tmp, root, ckpts = fake
    _relabel(root, ckpts["sparse"], shift=0.15)  # off by 0.15 x the box: out @0.1, in @0.2
    r = _run(tmp, root, ckpts, "--max-frames", "2", "--sources", "fake_stills")
    o = r["results"]["tiny_sparse"]["overall"]
    assert r["frames"] == 2 and o["frames_blazepose_person"] == 1  # rows 0 and 2
    assert o["pck_vs_blazepose"]["pck@0.1"] == 0.0
    assert o["pck_vs_blazepose"]["pck@0.2"] == 1.0
    assert o["pck_vs_blazepose"]["mean_error_box_fraction"] == pytest.approx(0.15, abs=1e-3)


def test_cli_tracking_mode_runs_crops(fake) -> None:
    tmp, root, ckpts = fake
    r = _run(tmp, root, ckpts, "--track", "--confidence-threshold", "0", "--movenet", "none",
             "--sources", "fake_views")
    assert r["estimator"]["mode"].startswith("tracking") and r["movenet_reference"] is None
    o = r["results"]["tiny_sparse"]["overall"]
    assert o["person_found_rate"] == 1.0 and "pck_vs_movenet" not in o
    # each view's first frame is read whole (tracking restarts per video), its second cropped
    assert o["tracking_crop_share"] == 0.5
    # ... and its gated blocks ran the first frame's person region there
    assert o["region_from_pose_share"] == 0.5
    assert all(0.0 <= b["recall"] <= 1.0 for b in o["masks"]["all"]["per_block"].values())
    assert (r["estimator"]["region_expand"], r["estimator"]["region_margin"]) == (1.3, 1)


def test_cli_whole_frame_regions_gate_whole_frames_by_the_previous_pose(fake, capsys) -> None:
    """--whole-frame-regions: no crop, but from each view's second frame on the gated blocks
    run the first frame's person region (the node's track_person: false, region_from_pose:
    true); without it whole frames follow the masks alone; not with --track."""
    tmp, root, ckpts = fake
    base = ("--confidence-threshold", "0", "--movenet", "none", "--sources", "fake_views")
    video = _run(tmp, root, ckpts, *base, "--whole-frame-regions")
    stills = _run(tmp, root, ckpts, *base)
    assert "previous pose's region" in video["estimator"]["mode"]
    v, s = (r["results"]["tiny_sparse"]["overall"] for r in (video, stills))
    assert v["tracking_crop_share"] == 0.0 and v["region_from_pose_share"] == 0.5
    assert s["region_from_pose_share"] == 0.0
    with pytest.raises(SystemExit):
        rh.parse_args(["--checkpoint", "x.safetensors", "--track", "--whole-frame-regions"])
    assert "--whole-frame-regions" in capsys.readouterr().err


def test_cli_region_size_options(fake, capsys) -> None:
    """--region-expand / --region-margin reach the estimator (a larger region executes more of
    the backbone on the tracked frames) and are range-checked."""
    tmp, root, ckpts = fake
    base = ("--track", "--confidence-threshold", "0", "--movenet", "none", "--sources",
            "fake_views")
    small = _run(tmp, root, ckpts, *base, "--region-expand", "1.0", "--region-margin", "0")
    large = _run(tmp, root, ckpts, *base, "--region-expand", "3.0", "--region-margin", "4")
    assert small["estimator"]["region_expand"] == 1.0 and large["estimator"]["region_margin"] == 4
    density = [r["results"]["tiny_sparse"]["overall"]["density_mean"] for r in (small, large)]
    assert density[0] < density[1]
    for bad in (["--region-expand", "0.5"], ["--region-margin", "9"]):
        with pytest.raises(SystemExit):
            rh.parse_args(["--checkpoint", "x.safetensors", *bad])
        assert "--region-" in capsys.readouterr().err


def test_cli_smoothing_filters_each_clip_over_its_frame_times(fake, capsys) -> None:
    """--smooth-min-cutoff: the second frame of each view is pulled towards the first (3D
    only; the 2D is untouched), and bad settings are refused before any model loads."""
    tmp, root, ckpts = fake
    base = ("--track", "--confidence-threshold", "0", "--movenet", "none", "--sources",
            "fake_views")
    raw = _run(tmp, root, ckpts, *base)
    smooth = _run(tmp, root, ckpts, *base, "--smooth-min-cutoff", "0.5", "--smooth-beta", "0")
    assert raw["estimator"]["smoothing"] == "off"
    assert smooth["estimator"]["smoothing"]["min_cutoff_hz"] == 0.5
    a, b = (r["results"]["tiny_sparse"]["overall"] for r in (raw, smooth))
    assert a["pck_vs_blazepose"] == b["pck_vs_blazepose"]
    assert a["3d_vs_triangulated"]["mpjpe_mm"] != b["3d_vs_triangulated"]["mpjpe_mm"]
    assert rh.frame_time(3, 30.0) == pytest.approx(0.1)
    assert rh.frame_time(None, 30.0) is None and rh.frame_time(3, None) is None
    with pytest.raises(SystemExit):
        rh.parse_args(["--checkpoint", "x.safetensors", "--smooth-min-cutoff", "-1"])
    assert "--smooth-" in capsys.readouterr().err


def test_cli_input_size_runs_the_network_at_that_size(fake, capsys) -> None:
    """--input-size is the node's input_size: the network reads the frames at that side (its
    answers move), the record says so, and a size no model can take is refused up front."""
    tmp, root, ckpts = fake
    base = ("--track", "--confidence-threshold", "0", "--movenet", "none", "--sources",
            "fake_views")
    own = _run(tmp, root, ckpts, *base)
    big = _run(tmp, root, ckpts, *base, "--input-size", "96")
    assert own["estimator"]["input_size"] == "the model's own"
    assert own["checkpoints"][0]["input_size"] == 64
    assert big["estimator"]["input_size"] == 96 and big["checkpoints"][0]["input_size"] == 96
    a, b = (r["results"]["tiny_sparse"]["overall"] for r in (own, big))
    assert a["3d_vs_triangulated"]["mpjpe_mm"] != b["3d_vs_triangulated"]["mpjpe_mm"]
    with pytest.raises(SystemExit):
        rh.parse_args(["--checkpoint", "x.safetensors", "--input-size", "100"])
    assert "--input-size" in capsys.readouterr().err


def test_cli_without_label_cache_says_run_label(tmp_path, capsys) -> None:
    argv = ["--labels", str(tmp_path / "nothing"), "--checkpoint", "x.safetensors"]
    assert rh.main(argv) == 2
    assert "./run label" in capsys.readouterr().err


def test_cli_missing_movenet_says_how_to_get_it(fake, capsys) -> None:
    tmp, root, ckpts = fake
    argv = ["--labels", str(root), "--checkpoint", str(ckpts["dense"]), "--movenet",
            str(tmp / "absent.safetensors"), "--out", str(tmp / "never.json")]
    assert rh.main(argv) == 1
    assert "./run import-weights" in capsys.readouterr().err
    assert not (tmp / "never.json").exists()


def test_cli_scores_the_exported_graph_in_another_runtime(fake) -> None:
    """--backend runs the exported graph (here onnxruntime, and OpenVINO at f32 where
    installed): the same network gives the torch reference's scores and the JSON says which
    runtime and precision ran."""
    import importlib.util

    tmp, root, ckpts = fake
    out = tmp / "runtime.json"
    base = ["--labels", str(root), "--checkpoint", str(ckpts["dense"]), "--movenet", "none",
            "--out", str(out)]
    assert rh.main(base) == 0
    want = json.loads(out.read_text())["results"]["tiny_dense"]["overall"]
    runtimes = [("onnxruntime", "f32")]
    if importlib.util.find_spec("openvino"):
        runtimes.append(("openvino", "f32"))
    for backend, precision in runtimes:
        assert rh.main([*base, "--backend", backend, "--precision", precision]) == 0
        r = json.loads(out.read_text())
        assert r["estimator"]["backend"] == backend
        assert r["estimator"]["precision"] == (precision if backend == "openvino" else None)
        got = r["results"]["tiny_dense"]["overall"]
        assert got["person_found_rate"] == want["person_found_rate"]
        assert got["pck_vs_blazepose"]["pck@0.1"] == pytest.approx(
            want["pck_vs_blazepose"]["pck@0.1"], abs=1e-6)
        assert got["3d_vs_triangulated"]["mpjpe_mm"] == pytest.approx(
            want["3d_vs_triangulated"]["mpjpe_mm"], abs=0.5)


def test_cli_crop_strips_read_part_of_the_crop_and_count_its_macs(fake, capsys,
                                                                  monkeypatch) -> None:
    """--crop-input-widths: the dense model reads tracked frames through the narrowest strip
    whose person fits (the record names the strips and their share of frames; the gated
    model keeps square crops), and the backbone work per frame against a whole-frame pass
    falls with the strip's area; refused without --track."""
    from sparse_pose_ros.pipeline import estimator as estimator_module

    tmp, root, ckpts = fake
    base = ("--checkpoint", str(ckpts["dense"]), "--track", "--confidence-threshold", "0",
            "--movenet", "none", "--sources", "fake_views", "--crop-input-size", "64")
    squares = _run(tmp, root, ckpts, *base)
    # every tracked person "fits" (the rule itself: test_strip_crops), so the 32-px strip runs
    monkeypatch.setattr(estimator_module, "strip_fits", lambda *a, **k: True)
    strips = _run(tmp, root, ckpts, *base, "--crop-input-widths", "48", "32")
    record = {c["name"]: c for c in strips["checkpoints"]}
    assert record["tiny_dense"]["crop_input_widths"] == [48, 32]
    assert record["tiny_sparse"]["crop_input_widths"] == []  # gated: square masks, squares
    a, b = (r["results"]["tiny_dense"]["overall"] for r in (squares, strips))
    assert a["strip_share"] == 0.0 and a["tracking_crop_share"] == 0.5
    assert b["strip_share"] == 0.5 and b["tracking_crop_share"] == 0.5
    assert strips["results"]["tiny_sparse"]["overall"]["strip_share"] == 0.0
    # whole frames and square crops: one 64-px pass each; the 32-px strip: half of one
    assert a["backbone_macs_vs_whole_frame_pass"]["all"] == pytest.approx(1.0)
    assert b["backbone_macs_vs_whole_frame_pass"]["all"] == pytest.approx(0.75)
    with pytest.raises(SystemExit):
        rh.parse_args(["--checkpoint", "x.safetensors", "--crop-input-widths", "32"])
    assert "--crop-input-widths" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        rh.parse_args(["--checkpoint", "x.safetensors", "--track", "--crop-input-widths", "40"])
    with pytest.raises(SystemExit):
        rh.parse_args(["--checkpoint", "x.safetensors", "--track", "--crop-input-widths", "32",
                       "--strip-margin", "0.5"])
    assert "strip_margin must be in" in capsys.readouterr().err
    assert strips["estimator"]["strip_margin"] == STRIP_MARGIN  # the node's default
