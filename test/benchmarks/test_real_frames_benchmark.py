"""``python -m sparse_pose_ros.benchmarks real-frames`` on a tiny fake label cache (a still
source and a two-view video source with triangulated labels, both held out, and a training
source never used) and a tiny synthetic split, with tiny random checkpoints: the JSON structure,
every contender timed on the same frames, skipped contenders with their reason, accuracy
plumbing (labels = the dense contender's own answers -> PCK 1, MPJPE 0), MoveNet's ONNX graph
equal to the torch reference. No timing assertions."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from fake_label_cache import J, K, person_images, write_label_set, write_sources
from fake_shard_frame import FakeShardFrame

from sparse_pose_ros.backends import create_backend
from sparse_pose_ros.benchmarks import real_frames as rf
from sparse_pose_ros.benchmarks.cli import main
from sparse_pose_ros.data import label_cache as lc
from sparse_pose_ros.data.shards import write_shard
from sparse_pose_ros.evaluation.real_heldout import MoveNetReference
from sparse_pose_ros.export.random_model import random_movenet_network, random_network
from sparse_pose_ros.model.checkpoint import save_checkpoint
from sparse_pose_ros.pipeline.estimator import PoseEstimator
from sparse_pose_ros.pipeline.lift import Intrinsics

#: the fake label cache's options here: one large person (the first still)
LABELS = {"large": ("stills_0",)}


def _write_cache(root: Path) -> None:
    write_sources(root, "", still_detected=(True, True),
                  view_detected=lambda v, i: i == 0 or v == 0, **LABELS)


def _relabel(root: Path, ckpt: Path) -> None:
    """BlazePose 2D and the triangulation := the dense checkpoint's own answers."""
    est = PoseEstimator(create_backend("torch", ckpt, "cpu"), confidence_threshold=0.3)
    for ls in lc.load_corpus(root).values():
        n = len(ls.frame_ids)
        px, cam = np.zeros((n, J, 2)), np.zeros((2, 2, J, 3))
        for row, rgb in lc.iter_images(ls):
            f = ls.manifest["frames"][row]
            r = est.estimate(rgb, Intrinsics.from_k(K, 80, 60) if f["view"] else None)
            px[row] = r.joints_px
            if f["view"]:
                cam[f["index"], ["cam01", "cam02"].index(f["view"])] = r.joints_m
        write_label_set(ls.folder, ls.manifest["source"], ls.manifest["files"],
                        ls.manifest["frames"], ls.triangulated is not None, px, cam=cam,
                        **LABELS)  # fmt: skip


def _shard_frame(image: np.ndarray, index: int) -> FakeShardFrame:
    """A 64 x 64 render of a random pose 3 m away, its person filling 0.1 + 0.2 * index."""
    rng = np.random.default_rng(index)
    j3 = np.c_[rng.normal(0, 300, (J, 2)), np.full(J, 3000.0)].astype(np.float32)
    k = np.array([[200, 0, 32], [0, 200, 32], [0, 0, 1]], np.float32)
    uv = ((j3 @ k.T)[:, :2] / 3000.0).astype(np.float32)
    return FakeShardFrame(image, np.zeros(image.shape[:2], np.uint8), uv, j3, k, index,
                          mask_fraction=0.1 + 0.2 * index)


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("real_frames")
    torch.set_num_threads(1)
    ckpts = {"sparse": tmp / "sparse.safetensors", "dense": tmp / "dense.safetensors",
             "movenet": tmp / "movenet.safetensors"}  # fmt: skip
    save_checkpoint(ckpts["sparse"], random_network(gated=True, input_size=64, seed=1))
    save_checkpoint(ckpts["dense"], random_network(gated=False, input_size=64, seed=2))
    save_checkpoint(ckpts["movenet"], random_movenet_network("lightning", gated=False,
                                                             input_size=64, seed=3))
    root = tmp / "labels"
    _write_cache(root)
    _relabel(root, ckpts["dense"])
    (tmp / "synth").mkdir()
    images = [cv2.resize(im, (64, 64)) for im in person_images(5, 3)]
    write_shard(tmp / "synth" / "test-00000.npz",
                [_shard_frame(im, i) for i, im in enumerate(images)], {"split": "test"})
    return tmp, root, ckpts


def _argv(tmp: Path, root: Path, ckpts: dict, *extra: str) -> list[str]:
    return ["real-frames", "--labels", str(root), "--synthetic", str(tmp / "synth"),
            "--checkpoint", f"ours_sparse={ckpts['sparse']}",
            "--checkpoint", f"ours_sparse_tracking={ckpts['sparse']}",
            "--checkpoint", f"ours_sparse_own_masks={ckpts['sparse']}",
            "--checkpoint", f"ours_dense_ort={ckpts['dense']}",
            "--checkpoint", f"ours_dense_tracking_ort={ckpts['dense']}",
            "--checkpoint", f"ours_dense_tracking_ort_own_size={ckpts['dense']}",
            "--checkpoint", f"ours_dense_openvino={ckpts['dense']}",
            "--checkpoint", f"ours_dense_tracking_openvino={ckpts['dense']}",
            "--checkpoint", f"ours_dense_tracking_openvino_square={ckpts['dense']}",
            "--crop-input-size", "96",
            "--checkpoint", f"movenet_thunder_ort={ckpts['movenet']}",
            "--checkpoint", f"ours_sparse_lightning={tmp / 'absent.safetensors'}",
            "--warmup", "1", "--block", "2", "--settle", "1", "--gap-ms", "0",
            "--cache-dir", str(tmp / "cache"), "--out-dir", str(tmp / "out"), *extra]


IN_PROCESS = ("ours_sparse", "ours_dense_ort", "movenet_thunder_ort", "ours_dense_tracking_ort",
              "ours_dense_tracking_ort_own_size", "ours_sparse_tracking", "ours_sparse_own_masks",
)
#: The OpenVINO contenders run in a child process (test below): beside the sparse kernel's
#: pool, ORT and OpenVINO in this process, a later test's fork (DataLoader workers) crashed it.
OPENVINO = ("ours_dense_openvino", "ours_dense_tracking_openvino",
            "ours_dense_tracking_openvino_square")


def test_cli_every_contender_on_the_same_frames(fake) -> None:
    tmp, root, ckpts = fake
    names = [*IN_PROCESS, "ours_sparse_lightning"]
    # confidence 0: every frame "finds" the untrained network's person, so the video frames
    # after the first of each view are tracking crops
    assert main(_argv(tmp, root, ckpts, "--threads", "1", "2", "--confidence-threshold", "0",
                      "--contenders", *names)) == 0
    results = {t: json.loads((tmp / "out" / f"real_frames_{t}thread.json").read_text())
               for t in (1, 2)}  # fmt: skip
    assert (tmp / "out" / "real_frames.png").is_file()
    for t, r in results.items():
        for key in ("command", "machine", "date_utc", "threads", "settings", "contenders",
                    "skipped", "sets", "results", "summary", "source"):
            assert key in r, key
        assert r["threads"] == t and r["command"].startswith("python -m sparse_pose_ros")
        assert set(r["env"]) == {"SPARSE_POSE_SPIN_US", "OMP_WAIT_POLICY"}  # how threads waited
        assert "not found" in r["skipped"]["ours_sparse_lightning"]
        assert set(r["contenders"]) == set(IN_PROCESS)
        assert r["contenders"]["movenet_thunder_ort"]["outputs"].startswith("2D")
        real, synth = r["sets"]["real"], r["sets"]["synthetic"]
        assert set(real["sources"]) == {"stills", "views"}  # held out only
        assert real["frames"] == 6 and synth["frames"] == 3
        assert real["frames_small_person"] + real["frames_large_person"] == 5  # one: nobody
        assert real["frames_large_person"] == 1 and real["frames_with_3d"] == 4
        assert synth["frames_small_person"] == 1 and synth["frames_large_person"] == 2
        for set_name, n in (("real", 6), ("synthetic", 3)):
            block = r["results"][set_name]
            assert block["same_frame_sequence_for_every_in_process_contender"] is True
            rows = block["contenders"]
            assert set(rows) == set(IN_PROCESS)
            assert len({rows[c]["latency_ms"]["timed_frames_sha1"] for c in rows}) == 1
            for c, row in rows.items():
                lat = row["latency_ms"]["all"]
                assert lat["frame"]["n"] == n and 1 <= lat["frames_timed"] <= n
                assert lat["frame"]["median_ms"] > 0 and lat["network"]["median_ms"] > 0
                acc = row["accuracy"]["all"]
                assert acc["frames"] == n and 0.0 <= acc["pck@0.1"] <= 1.0
                assert ("mpjpe_mm" in acc) == (c != "movenet_thunder_ort")
                if not c.startswith("ours_dense_tracking_") or c.endswith("_own_size"):  # crops: 96
                    assert 0.0 < row["macs"]["all"]["backbone_fraction"] <= 1.1
                assert row["answers_max_px_difference_vs_first_thread_count"] < 0.5
            summary = r["summary"][set_name]
            assert set(summary) == set(IN_PROCESS) and "pck@0.1" in summary["ours_sparse"]["all"]
    # the labels are the dense network's own answers: perfect, 2D and 3D
    dense = results[1]["results"]["real"]["contenders"]["ours_dense_ort"]["accuracy"]["all"]
    assert dense["pck@0.1"] == 1.0 and dense["pck_17_joints"]["pck@0.1"] == 1.0
    assert dense["mpjpe_mm"] == pytest.approx(0.0, abs=1.0) and dense["3d"]["frames"] == 4
    rows = results[1]["results"]["real"]["contenders"]
    own = rows["ours_sparse_own_masks"]["macs"]["all"]
    assert own["backbone_fraction"] < 1.0  # random mask units: part of the backbone runs
    # as the node: frames without a previous person run dense, the others that person's region
    assert rows["ours_sparse"]["macs"]["all"]["backbone_fraction"] != own["backbone_fraction"]
    assert r["contenders"]["ours_sparse"]["region_from_pose"] is True
    # --crop-input-size: the node-default tracking contender reads its crops at 96 px (a second
    # session), whole frames at the model's 64; its MACs count each frame at the size it ran
    crop = r["contenders"]["ours_dense_tracking_ort"]
    assert crop["input_size"] == 64 and crop["crop_input_size"] == 96
    assert "crop_input_size" not in r["contenders"]["ours_dense_tracking_ort_own_size"]
    m = rows["ours_dense_tracking_ort"]["macs"]["all"]
    ratio = crop["backbone_macs_dense_crop"] / crop["backbone_macs_dense"]
    assert ratio > 2.0  # (96 / 64)^2, give or take the padding
    assert m["backbone_fraction"] == pytest.approx(
        1.0 + m["tracking_crop_share"] * (ratio - 1.0))
    assert m["tracking_crop_share"] > 0
    assert r["contenders"]["ours_sparse_own_masks"]["region_from_pose"] is False


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                    reason="openvino is not installed (./run installs it)")
def test_openvino_contenders_match_onnxruntime(fake) -> None:
    """The node's default path in OpenVINO f32 (and its whole-frame dense): the crops follow
    --crop-input-size and its strips --crop-input-widths; on the same frames the squares give
    onnxruntime's answers, and the strips at most their work. In a child process, see
    OPENVINO."""
    import subprocess
    import sys

    tmp, root, ckpts = fake
    argv = [*_argv(tmp, root, ckpts, "--threads", "1", "--confidence-threshold", "0",
                   "--contenders", *OPENVINO, "ours_dense_tracking_ort", "ours_dense_ort"),
            "--out-dir", str(tmp / "out_ov"), "--crop-input-widths", "32", "64", "96",
            "--strip-margin", "1.3"]
    done = subprocess.run([sys.executable, "-m", "sparse_pose_ros.benchmarks", *argv],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads((tmp / "out_ov" / "real_frames_1thread.json").read_text())
    assert set(r["contenders"]) == {*OPENVINO, "ours_dense_tracking_ort", "ours_dense_ort"}
    ov = r["contenders"]["ours_dense_tracking_openvino"]
    assert ov["crop_input_size"] == 96 and "openvino" in ov["runtime"]
    assert ov["crop_input_widths"] == [32, 64]  # 96 is the square itself
    assert ov["strip_margin"] == 1.3  # the node's strip_margin, as given
    assert r["contenders"]["ours_dense_tracking_openvino_square"]["crop_input_widths"] == []
    rows = r["results"]["real"]["contenders"]
    macs = [rows[n]["macs"]["all"]["backbone_fraction"]
            for n in ("ours_dense_tracking_openvino", "ours_dense_tracking_openvino_square")]
    assert macs[0] <= macs[1] + 1e-9
    for a, b in (("ours_dense_tracking_openvino_square", "ours_dense_tracking_ort"),
                 ("ours_dense_openvino", "ours_dense_ort")):
        acc_a, acc_b = rows[a]["accuracy"]["all"], rows[b]["accuracy"]["all"]
        assert acc_a["pck@0.1"] == pytest.approx(acc_b["pck@0.1"], abs=1e-6)
        assert acc_a["mpjpe_mm"] == pytest.approx(acc_b["mpjpe_mm"], abs=0.5)


def test_the_peer_runs_on_the_same_frames(fake) -> None:
    from sparse_pose_ros.teachers.peer import peer_available

    tmp, root, ckpts = fake
    ok, why = peer_available()
    if not ok:
        pytest.skip(why)
    assert main(_argv(tmp, root, ckpts, "--threads", "1", "--contenders", "ours_dense_ort",
                      "blazepose_full", "blazepose_full_video", "--out-dir",
                      str(tmp / "peer"))) == 0  # fmt: skip
    r = json.loads((tmp / "peer" / "real_frames_1thread.json").read_text())
    assert {"blazepose_full", "blazepose_full_video"} <= set(r["contenders"]), r["skipped"]
    for set_name, n in (("real", 6), ("synthetic", 3)):
        row = r["results"][set_name]["contenders"]["blazepose_full"]
        assert row["latency_ms"]["all"]["frames_timed"] == n and row["macs"] is None
        assert row["accuracy"]["all"]["frames"] == n and row["frames_answered"] == n
    # video mode: the two 2-frame views only (not the stills, not the renders), first untimed
    video = r["results"]["real"]["contenders"]["blazepose_full_video"]
    assert video["frames_answered"] == 4 and video["latency_ms"]["all"]["frames_timed"] == 2
    assert video["accuracy"]["all"]["frames"] == 4
    assert "blazepose_full_video" not in r["results"]["synthetic"]["contenders"]


def test_cycler_gives_every_contender_the_same_frame_and_resets_tracking() -> None:
    seen: dict[str, list[str]] = {}

    class Fake:
        def __init__(self, name: str) -> None:
            self.name, self.resets = name, 0

        def reset(self) -> None:
            self.resets += 1
            seen.setdefault(self.name, []).append("reset")

        def __call__(self, frame: rf.Frame) -> rf.Prediction:
            seen.setdefault(self.name, []).append(frame.id)
            return rf.Prediction(np.zeros((J, 2)), None, True, network_ms=0.1)

        def close(self) -> None:
            pass

    frames = [rf.Frame(f"f{i}", "s", "a" if i < 3 else "b", np.zeros((4, 4, 3), np.uint8),
                       None, 0.1) for i in range(5)]  # fmt: skip
    fs = rf.FrameSet("real", frames, {"bp_detected": np.ones(5, bool)}, "", "", {})
    options = rf.Options(threads=(1,), warmup=2, block=2, settle=1, gap_s=0.0)
    sr, failures = rf.run_set(fs, {"x": Fake("x"), "y": Fake("y")}, [], 1, options)
    assert not failures and seen["x"] == seen["y"]
    assert seen["x"][:5] == ["reset", "f0", "f1", "f2", "reset"]  # a new sequence at f3
    assert sr.calls["x"] == sr.calls["y"] and len(sr.samples["x"]) == 5
    assert [s[2] for s in sr.samples["x"]] == [s[2] for s in sr.samples["y"]]
    assert [p is not None for p in sr.preds["x"]] == [True] * 5


def test_movenet_graph_in_onnx_runtime_equals_the_torch_reference(fake) -> None:
    tmp, _root, ckpts = fake
    rgb = person_images(3, 1)[0]
    frame = rf.Frame("x", "s", "x", rgb, None, 0.1)
    runner = rf.make_runner(rf.ContenderSpec("m", "movenet", str(ckpts["movenet"])), 1,
                            rf.Options(), {})  # fmt: skip
    got = runner(frame)
    want, _ = MoveNetReference(ckpts["movenet"], "cpu")(rgb)
    np.testing.assert_allclose(got.px, want, atol=0.05)
    assert got.mm is None and got.network_ms > 0


def test_contender_selection_and_skips(fake, tmp_path) -> None:
    tmp, _root, ckpts = fake
    specs = rf.select_contenders(["ours_dense_ort"], [f"ours_dense_ort={ckpts['sparse']}"])
    assert [s.checkpoint for s in specs] == [str(ckpts["sparse"])]
    with pytest.raises(rf.Skip, match="gated"):  # a gated checkpoint is no dense contender
        rf.describe(specs[0], rf.Options())
    with pytest.raises(rf.Skip, match="dense model"):
        rf.describe(rf.ContenderSpec("s", "sparse", str(ckpts["dense"])), rf.Options())
    with pytest.raises(rf.Skip, match="MoveNet heads"):
        rf.describe(rf.ContenderSpec("m", "movenet", str(ckpts["dense"])), rf.Options())
    with pytest.raises(ValueError, match="unknown contenders"):
        rf.select_contenders(["nobody"], [])
    with pytest.raises(ValueError, match="NAME=PATH"):
        rf.select_contenders(None, ["ours_dense_ort"])
    assert main(["real-frames", "--contenders", "nobody", "--out-dir", str(tmp_path)]) == 2
    assert main(["real-frames", "--strip-margin", "0.9", "--out-dir", str(tmp_path)]) == 2
    assert main(["real-frames", "--labels", "none", "--synthetic", "none",
                 "--out-dir", str(tmp_path)]) == 1
