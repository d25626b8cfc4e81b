"""A tiny fake teacher-label cache on disk, shared by the tests of ``./run eval real`` and of the
real-frames benchmark: PNG stills and two synchronised AVI views (with triangulated labels) of a
bright "person" box on grey, both held out, plus a training source that is never evaluated.

Labels start as placeholders; each test rewrites them (:func:`write_label_set`) with a network's
own answers, so its CLI must score perfectly on them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from sparse_pose_ros import skeleton
from sparse_pose_ros.data import label_cache as lc

J = skeleton.NUM_JOINTS
#: intrinsics of both fake views (80 x 60 images)
K = np.array([[60.0, 0, 40.0], [0, 60.0, 30.0], [0, 0, 1.0]])
VIEWS = ("cam01", "cam02")


def person_images(seed: int, n: int) -> list[np.ndarray]:
    """``n`` 80 x 60 RGB images, each a blurred bright box (the "person") on grey."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = np.full((60, 80, 3), 90, np.uint8)
        x, y = rng.integers(10, 50), rng.integers(5, 20)
        img[y:y + 35, x:x + 14] = rng.integers(150, 255, 3)  # a "person"
        out.append(cv2.GaussianBlur(img, (5, 5), 0))
    return out


def write_label_set(folder: Path, source: dict, files: list, frames: list,
                    triangulated: bool = False, px: np.ndarray | None = None,
                    world: np.ndarray | None = None, cam: np.ndarray | None = None,
                    hidden: Sequence[str] = (), large: Sequence[str] = ()) -> None:
    """One label set: BlazePose visibility 0.9 (0.2 for the ``hidden`` joints: not counted),
    2D ``px`` / world ``world`` where given, a teacher mask filling 1/6 of the image (a small
    person; the whole image for frame ids in ``large``), the two views' triangulation ``cam``
    (zeros if not given) when ``triangulated``."""
    n = len(frames)
    det = np.array([f["detected"]["blazepose"] for f in frames])
    bp = {k: np.zeros((n, *shape), np.float32) for k, shape in lc.BLAZEPOSE_ARRAYS.items()}
    bp["h36m_visibility"][:] = 0.9
    for name in hidden:
        bp["h36m_visibility"][:, skeleton.JOINT_NAMES.index(name)] = 0.2
    if px is not None:
        bp["h36m_px"] = px.astype(np.float32)
    if world is not None:
        bp["h36m_world_m"] = world.astype(np.float32)
    for k in bp:
        bp[k][~det] = np.nan
    bp["detected"], bp["frame_ids"] = det, np.array([f["id"] for f in frames])
    masks = {}
    for f, d in zip(frames, det, strict=True):
        if d:
            m = np.zeros((30, 40), np.uint8)
            m[5:25, 10:20] = 255  # 1/6 of the image: a small person
            if f["id"] in large:
                m[:, :] = 255
            masks[f["id"]] = m
    tri = None
    if triangulated:
        c = cam if cam is not None else np.zeros((2, 2, J, 3))
        tri = {"frame_index": np.arange(2), "valid": np.ones(2, bool),
               "joints_cam_m": c.astype(np.float32), "views": np.array(VIEWS),
               "K": np.stack([K, K])}  # fmt: skip
    manifest = {"source": source, "files": files, "frames": frames, "step": 1}
    lc.write_label_set(folder, manifest, bp, masks, tri)


def view_videos(media: Path, file_prefix: str, id_prefix: str, seed: int,
                detected: Callable[[int, int], bool]) -> tuple[list, list]:
    """Two frames of each of the two :data:`VIEWS` as MJPG AVIs in ``media`` (``seed`` + view
    index draws each view's images): the manifest's files and frames (``detected(view,
    frame)``: whether BlazePose found someone)."""
    files, frames = [], []
    for v, view in enumerate(VIEWS):
        p = media / f"{file_prefix}{view}.avi"
        wr = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"MJPG"), 10, (80, 60))
        for img in person_images(seed + v, 2):
            wr.write(img[:, :, ::-1])
        wr.release()
        files.append({"member": p.name, "path": str(p), "view": view, "fps": 30.0})
        frames += [{"id": f"{id_prefix}_{view}_f{i}", "member": p.name, "view": view,
                    "index": i, "width": 80, "height": 60,
                    "detected": {"blazepose": bool(detected(v, i))}}
                   for i in range(2)]  # fmt: skip
    return files, frames


def write_sources(root: Path, prefix: str, still_detected: Sequence[bool],
                  view_detected: Callable[[int, int], bool], **labels: object) -> None:
    """Held-out ``<prefix>stills`` (one PNG per entry of ``still_detected``: whether BlazePose
    found someone), held-out ``<prefix>views`` (two frames of each of two views;
    ``view_detected(view, frame)``) with triangulated labels, and ``<prefix>train`` (the first
    view frame, split "train"). ``labels``: :func:`write_label_set` options."""
    media = root.parent / "media"
    media.mkdir(exist_ok=True)
    files, frames = [], []
    for i, img in enumerate(person_images(0, len(still_detected))):
        p = media / f"still{i}.png"
        cv2.imwrite(str(p), img[:, :, ::-1])
        files.append({"member": p.name, "path": str(p), "view": None})
        frames.append({"id": f"{prefix}stills_{i}", "member": p.name, "view": None,
                       "index": None, "width": 80, "height": 60,
                       "detected": {"blazepose": bool(still_detected[i])}})  # fmt: skip
    write_label_set(root / f"{prefix}stills", {"id": f"{prefix}stills", "split": "heldout"},
                    files, frames, **labels)  # type: ignore[arg-type]
    files, frames = view_videos(media, "", f"{prefix}views", 10, view_detected)
    write_label_set(root / f"{prefix}views",
                    {"id": f"{prefix}views", "split": "heldout", "views": list(VIEWS)},
                    files, frames, triangulated=True, **labels)  # type: ignore[arg-type]
    write_label_set(root / f"{prefix}train", {"id": f"{prefix}train", "split": "train"},
                    files[:1], frames[:1], **labels)  # type: ignore[arg-type]
