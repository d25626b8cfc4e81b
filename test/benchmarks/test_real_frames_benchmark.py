"""``python -m sparse_pose_ros.benchmarks real-frames`` on a tiny fake label cache (a still
source and a two-view video source with triangulated labels, both held out, and a training
source never used) and a tiny synthetic split, with tiny random checkpoints: the JSON structure,
every contender timed on the same frames, skipped contenders with their reason, accuracy
plumbing (labels = the dense contender's own answers -> PCK 1, MPJPE 0), MoveNet's ONNX graph
equal to the torch reference. No timing assertions."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sparse_pose_ros import skeleton
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

J = skeleton.NUM_JOINTS
K = np.array([[60.0, 0, 40.0], [0, 60.0, 30.0], [0, 0, 1.0]])


def _images(seed: int, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = np.full((60, 80, 3), 90, np.uint8)
        x, y = rng.integers(10, 50), rng.integers(5, 20)
        img[y:y + 35, x:x + 14] = rng.integers(150, 255, 3)  # a "person"
        out.append(cv2.GaussianBlur(img, (5, 5), 0))
    return out


def _write(folder: Path, source: dict, files: list, frames: list, tri: bool,
           px: np.ndarray | None = None, cam: np.ndarray | None = None) -> None:
    n = len(frames)
    det = np.array([f["detected"]["blazepose"] for f in frames])
    bp = {k: np.zeros((n, *shape), np.float32) for k, shape in lc.BLAZEPOSE_ARRAYS.items()}
    bp["h36m_visibility"][:] = 0.9
    if px is not None:
        bp["h36m_px"] = px.astype(np.float32)
    for k in bp:
        bp[k][~det] = np.nan
    bp["detected"], bp["frame_ids"] = det, np.array([f["id"] for f in frames])
    masks = {}
    for f, d in zip(frames, det, strict=True):
        if d:
            m = np.zeros((30, 40), np.uint8)
            m[5:25, 10:20] = 255  # 1/6 of the image: a small person
            if f["id"].endswith("_0"):
                m[:, :] = 255  # ... except one large one
            masks[f["id"]] = m
    triangulated = None
    if tri:
        c = cam if cam is not None else np.zeros((2, 2, J, 3))
        triangulated = {"frame_index": np.arange(2), "valid": np.ones(2, bool),
                        "joints_cam_m": c.astype(np.float32),
                        "views": np.array(["cam01", "cam02"]), "K": np.stack([K, K])}
    lc.write_label_set(folder, {"source": source, "files": files, "frames": frames, "step": 1},
                       bp, masks, triangulated)  # fmt: skip


def _write_cache(root: Path) -> None:
    media = root.parent / "media"
    media.mkdir(exist_ok=True)
    files, frames = [], []
    for i, img in enumerate(_images(0, 2)):
        p = media / f"still{i}.png"
        cv2.imwrite(str(p), img[:, :, ::-1])
        files.append({"member": p.name, "path": str(p), "view": None})
        frames.append({"id": f"stills_{i}", "member": p.name, "view": None, "index": None,
                       "width": 80, "height": 60, "detected": {"blazepose": True}})
    _write(root / "stills", {"id": "stills", "split": "heldout"}, files, frames, False)
    files, frames = [], []
    for v, view in enumerate(("cam01", "cam02")):
        p = media / f"{view}.avi"
        wr = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"MJPG"), 10, (80, 60))
        for img in _images(10 + v, 2):
            wr.write(img[:, :, ::-1])
        wr.release()
        files.append({"member": p.name, "path": str(p), "view": view})
        frames += [{"id": f"views_{view}_f{i}", "member": p.name, "view": view, "index": i,
                    "width": 80, "height": 60, "detected": {"blazepose": i == 0 or v == 0}}
                   for i in range(2)]  # fmt: skip
    _write(root / "views", {"id": "views", "split": "heldout", "views": ["cam01", "cam02"]},
           files, frames, True)  # fmt: skip
    _write(root / "train", {"id": "train", "split": "train"}, files[:1], frames[:1], False)


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
        _write(ls.folder, ls.manifest["source"], ls.manifest["files"], ls.manifest["frames"],
               ls.triangulated is not None, px, cam)  # fmt: skip


class _ShardFrame:
    def __init__(self, image: np.ndarray, index: int) -> None:
        rng = np.random.default_rng(index)
        self.image, self.mask = image, np.zeros(image.shape[:2], np.uint8)
        self.joints_3d = np.c_[rng.normal(0, 300, (J, 2)), np.full(J, 3000.0)].astype(np.float32)
        self.K = np.array([[200, 0, 32], [0, 200, 32], [0, 0, 1]], np.float32)
        self.joints_2d = ((self.joints_3d @ self.K.T)[:, :2] / 3000.0).astype(np.float32)
        self.visible = np.ones(J, np.uint8)
        self.in_frame = np.ones(J, np.uint8)
        self.bbox = np.zeros(4, np.float32)
        self.body_pose = np.zeros((21, 3), np.float32)
        self.betas = np.zeros(10, np.float32)
        self.meta = {"family": 0, "style": 0, "subject": 0, "occluded": 0, "elevation_deg": 0.0,
                     "height_fraction": 0.5, "mask_fraction": 0.1 + 0.2 * index, "index": index}


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
    images = [cv2.resize(im, (64, 64)) for im in _images(5, 3)]
    write_shard(tmp / "synth" / "test-00000.npz",
                [_ShardFrame(im, i) for i, im in enumerate(images)], {"split": "test"})
    return tmp, root, ckpts


def _argv(tmp: Path, root: Path, ckpts: dict, *extra: str) -> list[str]:
    return ["real-frames", "--labels", str(root), "--synthetic", str(tmp / "synth"),
            "--checkpoint", f"ours_sparse={ckpts['sparse']}",
            "--checkpoint", f"ours_sparse_tracking={ckpts['sparse']}",
            "--checkpoint", f"ours_sparse_own_masks={ckpts['sparse']}",
            "--checkpoint", f"ours_dense_ort={ckpts['dense']}",
            "--checkpoint", f"ours_dense_tracking_ort={ckpts['dense']}",
            "--checkpoint", f"movenet_thunder_ort={ckpts['movenet']}",
            "--checkpoint", f"ours_sparse_lightning={tmp / 'absent.safetensors'}",
            "--warmup", "1", "--block", "2", "--settle", "1", "--gap-ms", "0",
            "--cache-dir", str(tmp / "cache"), "--out-dir", str(tmp / "out"), *extra]


IN_PROCESS = ("ours_sparse", "ours_dense_ort", "movenet_thunder_ort", "ours_dense_tracking_ort",
              "ours_sparse_tracking", "ours_sparse_own_masks")


def test_cli_every_contender_on_the_same_frames(fake) -> None:
    tmp, root, ckpts = fake
    names = [*IN_PROCESS, "ours_sparse_lightning"]
    assert main(_argv(tmp, root, ckpts, "--threads", "1", "2", "--contenders", *names)) == 0
    results = {t: json.loads((tmp / "out" / f"real_frames_{t}thread.json").read_text())
               for t in (1, 2)}  # fmt: skip
    assert (tmp / "out" / "real_frames.png").is_file()
    for t, r in results.items():
        for key in ("command", "machine", "date_utc", "threads", "settings", "contenders",
                    "skipped", "sets", "results", "summary", "source"):
            assert key in r, key
        assert r["threads"] == t and r["command"].startswith("python -m sparse_pose_ros")
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
    assert r["contenders"]["ours_sparse_own_masks"]["region_from_pose"] is False


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
    rgb = _images(3, 1)[0]
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
    assert main(["real-frames", "--labels", "none", "--synthetic", "none",
                 "--out-dir", str(tmp_path)]) == 1
