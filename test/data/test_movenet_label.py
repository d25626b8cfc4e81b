"""``./run label --teachers movenet`` on a tiny fake cache with a tiny random MoveNet checkpoint.

Two small videos, frames of both interleaved in the manifest (so a row mix-up shows), BlazePose
boxes on some frames; every stored row is recomputed here independently (decode, crop with
zero padding, network, decoding) and must match. Then: cached reruns do nothing, an
interrupted write is redone, BlazePose relabelling drops the stale file.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sparse_pose_ros.data import label_cache as lc
from sparse_pose_ros.data import movenet_teacher as mt
from sparse_pose_ros.data.real_sources import SOURCES_BY_ID
from sparse_pose_ros.model.checkpoint import load_checkpoint, save_checkpoint
from sparse_pose_ros.model.movenet_head import decode
from sparse_pose_ros.model.network import PoseNetwork, movenet_config
from sparse_pose_ros.teachers.movenet_map import map_to_h36m
from sparse_pose_ros.training.label import main

SID = "opencv_vtest"  # a registered id (main walks the registry); the files are ours
SIZES = {"a": (96, 64), "b": (64, 80)}  # member -> (width, height)
COUNTS = {"a": 5, "b": 2}
#: manifest rows: (member, frame index), the two videos interleaved
ROWS = [("a", 0), ("b", 0), ("a", 2), ("b", 1), ("a", 4)]


def _write_video(path: Path, member: str) -> None:
    w, h = SIZES[member]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h))
    assert vw.isOpened()
    rng = np.random.default_rng(len(member) + w)
    for i in range(COUNTS[member]):
        frame = np.full((h, w, 3), 40 + 30 * i, np.uint8)
        frame[h // 4: 3 * h // 4, w // 3: 2 * w // 3] = rng.integers(0, 255, 3)  # a "person"
        vw.write(frame)
    vw.release()


def _landmarks(x: tuple[float, float], y: tuple[float, float], visible: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    lm = np.zeros((33, 4), np.float32)
    lm[:, 0] = rng.uniform(*x, 33)
    lm[:, 1] = rng.uniform(*y, 33)
    lm[:, 3] = 0.1
    lm[:visible, 3] = 0.9
    return lm


def _fake_cache(root: Path) -> Path:
    folder = root / SID
    folder.mkdir(parents=True)
    files = []
    for m in SIZES:
        path = root / f"{m}.avi"
        _write_video(path, m)
        files.append({"member": m, "path": str(path), "sha256": lc.sha256_file(path),
                      "frames": COUNTS[m], "width": SIZES[m][0], "height": SIZES[m][1],
                      "fps": 10.0, "view": None})
    frames = [{"id": f"{m}_f{i:05d}", "member": m, "view": None, "index": i,
               "width": SIZES[m][0], "height": SIZES[m][1]} for m, i in ROWS]
    n = len(frames)
    bp = {k: np.full((n, *shape), np.nan, np.float32) for k, shape in lc.BLAZEPOSE_ARRAYS.items()}
    bp["detected"] = np.array([True, False, False, True, True])
    bp["landmarks"][0] = _landmarks((0.3, 0.6), (0.2, 0.9), 33)  # well inside
    bp["landmarks"][3] = _landmarks((0.7, 0.95), (0.6, 0.95), 6)  # at the corner: padding
    bp["landmarks"][4] = _landmarks((0.3, 0.6), (0.2, 0.9), 3)  # too few visible: letterbox
    bp["frame_ids"] = np.array([f["id"] for f in frames])
    for f, d in zip(frames, bp["detected"], strict=True):
        f["detected"] = {"blazepose": bool(d)}
    manifest = {"source": SOURCES_BY_ID[SID].record(), "files": files, "step": 1, "first": 0,
                "max_frames": None, "frames": frames,
                "teachers": {"blazepose": {"file": lc.BLAZEPOSE_FILE, "versions": {"mode": "x"}}},
                "summary": {"frames": n, "seconds": 1.0, "blazepose_detected": 3}}
    lc.write_label_set(folder, manifest, bp)
    return folder


def _decoded(root: Path, member: str, index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(root / f"{member}.avi"))
    for _ in range(index + 1):
        ok, bgr = cap.read()
        assert ok
    cap.release()
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@torch.no_grad()
def _responsive_movenet(seed: int) -> PoseNetwork:
    """A tiny random MoveNet whose heads *depend on the input*: with default (or randomised
    BN) weights the neck's constant biases drown the image (outputs differ by 1e-4 between
    images, so a row mix-up would go unseen). Biases of the neck and heads are zeroed and the
    heads' last convs scaled to unit logit spread."""
    torch.manual_seed(seed)
    net = PoseNetwork(movenet_config("lightning", input_size=64, width_mult=0.35)).eval()
    assert net.movenet is not None
    for mod in [*net.neck.modules(), *net.movenet.modules()]:
        if isinstance(mod, torch.nn.Conv2d) and mod.bias is not None:
            mod.bias.zero_()
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.bias.zero_()
    probe = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    spread = net(probe, with_movenet=True).movenet.heatmap.std().item()
    for branch in net.movenet.branches.values():
        branch.out.weight.mul_(1.0 / spread)
    return net


def _reference_crop(image: np.ndarray, x0: int, y0: int, side: int, size: int) -> np.ndarray:
    """Zero canvas + paste + resize: written independently of ``mt.crop_square``."""
    h, w = image.shape[:2]
    canvas = np.zeros((side, side, 3), np.uint8)
    for y in range(max(y0, 0), min(y0 + side, h)):
        for x in range(max(x0, 0), min(x0 + side, w)):
            canvas[y - y0, x - x0] = image[y, x]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return canvas if side == size else cv2.resize(canvas, (size, size), interpolation=interp)


@pytest.fixture()
def setup(tmp_path: Path):
    torch.set_num_threads(1)
    root = tmp_path / "labels"
    folder = _fake_cache(root)
    ckpt = tmp_path / "movenet-tiny.safetensors"
    net = _responsive_movenet(seed=3)
    save_checkpoint(ckpt, net, {"source": {"model": "random-lightning-64"}})
    args = ["--teachers", "movenet", "--sources", SID, "--out", str(root), "--summary",
            str(tmp_path / "summary.json"), "--movenet-checkpoint", str(ckpt), "--threads", "1"]
    return root, folder, ckpt, args


@pytest.mark.timeout(60)
def test_movenet_labels_every_row_and_match_an_independent_recomputation(setup) -> None:
    root, folder, ckpt, args = setup
    bp_before = (folder / lc.BLAZEPOSE_FILE).read_bytes()
    assert main(args) == 0
    ls = lc.load_label_set(folder)
    mn = ls.movenet
    assert mn is not None and ls.teachers == ["blazepose", "movenet"]
    n = len(ROWS)
    assert mn["keypoints_px"].shape == (n, 17, 2) and mn["scores"].shape == (n, 17)
    assert mn["heatmaps"].shape == (n, 17, 16, 16) and mn["heatmaps"].dtype == np.uint8
    assert mn["crop_from_blazepose"].tolist() == [True, False, False, True, False]
    # letterboxed rows: the longer side, centred
    np.testing.assert_array_equal(mn["crop"][1], (-8, 0, 80))  # b: 64 x 80
    np.testing.assert_array_equal(mn["crop"][2], (0, -16, 96))  # a: 96 x 64
    np.testing.assert_array_equal(mn["crop"][4], (0, -16, 96))
    # BlazePose's row 0: 1.25 x the visible landmarks' box, centred on it
    lm = ls.blazepose["landmarks"][0].astype(np.float64)
    pts = lm[:, :2] * (96, 64)
    side = round(1.25 * float((pts.max(0) - pts.min(0)).max()))
    centre = (pts.max(0) + pts.min(0)) / 2
    np.testing.assert_allclose(mn["crop"][0], (*np.round(centre - side / 2), side))
    assert mn["crop"][3, 0] + mn["crop"][3, 2] > 64  # past the corner: zero padded

    net, info = load_checkpoint(ckpt)
    mean = torch.tensor(net.cfg.input_mean).view(1, 3, 1, 1)
    std = torch.tensor(net.cfg.input_std).view(1, 3, 1, 1)
    for row, (member, index) in enumerate(ROWS):
        x0, y0, s = (int(v) for v in mn["crop"][row])
        pixels = _reference_crop(_decoded(root, member, index), x0, y0, s, 64)
        x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255.0
        with torch.no_grad():
            out = net((x - mean) / std, with_movenet=True).movenet
        heat = torch.round(255 * torch.sigmoid(out.heatmap))[0].numpy()
        # batched vs single-image float sums may round a value across .5, rarely
        assert np.abs(heat - mn["heatmaps"][row]).max() <= 1, row
        assert (heat != mn["heatmaps"][row]).mean() < 0.005, row
        assert heat.max() - heat.min() > 100  # the heatmaps span the range: a real check
        y, xx, score = decode(out)[0].numpy().T
        np.testing.assert_allclose(mn["keypoints_px"][row, :, 0], x0 + xx * s, atol=1e-2)
        np.testing.assert_allclose(mn["keypoints_px"][row, :, 1], y0 + y * s, atol=1e-2)
        np.testing.assert_allclose(mn["scores"][row], score, atol=1e-4)
    np.testing.assert_array_equal(mn["detected"],
                                  mn["scores"].mean(axis=1) >= mt.DETECT_THRESHOLD)
    h36m, h36m_score = map_to_h36m(mn["keypoints_px"], mn["scores"])
    np.testing.assert_allclose(mn["h36m_px"], h36m, atol=1e-3)
    np.testing.assert_allclose(mn["h36m_score"], h36m_score, atol=1e-6)

    rec = ls.manifest["teachers"]["movenet"]
    assert rec["model_hash"] == info["model_hash"] and rec["settings"] == mt.SETTINGS
    assert rec["checkpoint_sha256"] == lc.sha256_file(ckpt) and rec["frames"] == n
    assert rec["heatmap_size"] == [16, 16] and rec["crops_from_blazepose"] == 2
    assert [f["detected"]["movenet"] for f in ls.manifest["frames"]] == mn["detected"].tolist()
    assert [f["detected"]["blazepose"] for f in ls.manifest["frames"]] == [1, 0, 0, 1, 1]
    assert (folder / lc.BLAZEPOSE_FILE).read_bytes() == bp_before  # BlazePose not touched
    s = json.loads(Path(args[args.index("--summary") + 1]).read_text())
    assert s["sources"][SID]["movenet"]["frames"] == n and s["movenet"]["frames_all_sources"] == n


@pytest.mark.timeout(60)
def test_reruns_are_idempotent_and_resume_what_is_missing(setup, tmp_path: Path) -> None:
    root, folder, ckpt, args = setup
    assert main(args) == 0
    npz = folder / lc.MOVENET_FILE
    first = lc.load_label_set(folder).movenet
    stamp = npz.stat().st_mtime_ns
    assert main(args) == 0  # same checkpoint and settings: nothing redone
    assert npz.stat().st_mtime_ns == stamp
    summary = json.loads(Path(args[args.index("--summary") + 1]).read_text())
    assert summary["sources"][SID]["movenet"]["cached"] is True

    # a run interrupted between the npz and the manifest: the manifest has no record -> redone
    m = json.loads((folder / lc.MANIFEST).read_text())
    del m["teachers"]["movenet"]
    lc.write_json(folder / lc.MANIFEST, m)
    assert lc.load_label_set(folder).movenet is None
    assert main(args) == 0
    again = lc.load_label_set(folder).movenet
    assert again is not None and npz.stat().st_mtime_ns != stamp
    for k in ("keypoints_px", "heatmaps", "crop", "detected"):
        np.testing.assert_array_equal(again[k], first[k])

    # another checkpoint: relabelled
    save_checkpoint(ckpt, _responsive_movenet(seed=4))
    assert main(args) == 0
    rec = lc.load_label_set(folder).manifest["teachers"]["movenet"]
    assert rec["model_hash"] == load_checkpoint(ckpt)[1]["model_hash"]

    # the file lost while the manifest records it: the reader says so
    npz.unlink()
    with pytest.raises(ValueError, match="movenet.npz missing"):
        _ = lc.load_label_set(folder).movenet

    # BlazePose relabels the set: the old MoveNet rows no longer follow it and are deleted
    assert main(args) == 0
    ls = lc.load_label_set(folder)
    manifest = {k: v for k, v in ls.manifest.items() if k != "format"}
    manifest["teachers"] = {"blazepose": manifest["teachers"]["blazepose"]}
    lc.write_label_set(folder, manifest, ls.blazepose)
    assert not npz.exists() and lc.load_label_set(folder).movenet is None


def test_missing_checkpoint_or_set(setup, tmp_path: Path) -> None:
    root, folder, ckpt, args = setup
    bad = [*args]
    bad[bad.index(str(ckpt))] = str(tmp_path / "none.safetensors")
    assert main(bad) == 2  # asked for by name: an error naming the import command
    other = [*args]
    other[other.index(SID)] = "python_stills"  # not in this cache: reported as missing
    assert main(other) == 0
    s = json.loads(Path(args[args.index("--summary") + 1]).read_text())
    assert "BlazePose" in s["missing"]["python_stills"]


def test_crop_square_pads_with_zeros_and_keeps_pixels() -> None:
    img = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    out = mt.crop_square(img, -2, 3, 5, 5)  # side == size: no resampling
    np.testing.assert_array_equal(out[:, :2], 0)  # left of the image
    np.testing.assert_array_equal(out[3:, :], 0)  # below it
    np.testing.assert_array_equal(out[:3, 2:], img[3:6, 0:3])
    assert mt.crop_box(None, 100, 40, ) == (0, -30, 100, False)


def test_pck_vs_blazepose_counts_visible_keypoints_on_blazepose_crops() -> None:
    from sparse_pose_ros.teachers.movenet_map import BLAZEPOSE_OF_COCO

    rng = np.random.default_rng(5)
    lm = np.zeros((3, 33, 4))
    lm[..., :2] = rng.uniform(0.2, 0.8, (3, 33, 2))
    lm[..., 3] = 0.9
    lm[0, BLAZEPOSE_OF_COCO[16], 3] = 0.1  # not visible: not counted
    sizes = np.array([[200.0, 100.0]] * 3)
    kp = lm[:, list(BLAZEPOSE_OF_COCO), :2] * sizes[:, None, :]
    kp[0, 0] += 1000.0  # one keypoint far off
    kp[0, 16] += 1000.0  # far off too, but not counted
    mn = {"keypoints_px": kp, "crop_from_blazepose": np.array([True, True, False])}
    bp = {"landmarks": lm, "detected": np.array([True, True, True])}
    out = mt.pck_vs_blazepose(mn, bp, sizes)
    assert out["frames"] == 2 and out["keypoints"] == 33  # the letterboxed row left out
    assert out["pck@0.1"] == pytest.approx(32 / 33, abs=1e-4)
