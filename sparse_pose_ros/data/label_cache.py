"""On-disk format of the teacher-label cache: one folder per source, a JSON manifest + npz arrays.

Teachers are slow (BlazePose ≈ 0.1 s per 1080p frame here) and run in another venv, so they run
once and training/evaluation read this cache. Layout of ``data_cache/labels/<source id>/``::

    manifest.json          what, where from, licence, split, teachers, frames (below)
    blazepose.npz          BlazePose arrays, row i = manifest["frames"][i]
    blazepose_masks.npz    person masks, one uint8 array per frame id with a person (0-255,
                           downscaled by teachers.blazepose.mask_downscale)
    triangulated.npz       multiview sources only: 3D labels from the views (see below)
    movenet.npz            MoveNet (imported network) arrays, row i = manifest["frames"][i]
    people.npz             multi-person multiview sources: every person triangulated
                           (``data.people_teacher``, whose docstring has the arrays)

``manifest.json``::

    format        LABEL_FORMAT
    source        real_sources.Source.record(): id, kind, origin, members, licence, split …
    files         per member: member, path (on the labelling machine), sha256, frames, width,
                  height, fps, view (multiview)
    step          every step-th frame was labelled
    frames        [{id, member, view, index, width, height, detected: {teacher: bool}}]
    teachers      {name: {file, versions, settings, seconds, frames, detected}}: "blazepose"
                  (written with the set) and "movenet" (added later by :func:`add_teacher`,
                  ``data.movenet_teacher``). A teacher has its own npz whose rows follow
                  ``frames`` and sets frames[i].detected[name]; readers take the teachers they
                  know. Relabelling BlazePose (:func:`write_label_set`) deletes the other
                  teachers' files: their rows followed the old frames and crops.
    triangulation multiview: file, settings, summary (residuals, views used, frames kept)
    created, command

``blazepose.npz`` (N = len(frames); NaN where no person): ``landmarks`` (N, 33, 4) x, y
normalised to the image, z, visibility; ``world_landmarks`` (N, 33, 3) metres, hip-centred;
``h36m_px`` (N, 17, 2) pixels; ``h36m_visibility`` (N, 17); ``h36m_world_m`` (N, 17, 3) metres
(joint order :data:`sparse_pose_ros.skeleton.JOINT_NAMES`, mapping
:mod:`sparse_pose_ros.teachers.blazepose_map`); ``detected`` (N,) bool; ``frame_ids`` (N,).

``movenet.npz`` (N = len(frames), ``data.movenet_teacher``; every frame has a row, MoveNet
always answers): ``keypoints_px`` (N, 17, 2) x, y image pixels, COCO order
(``model.movenet_head.COCO_KEYPOINTS``); ``scores`` (N, 17); ``crop`` (N, 3) x0, y0, side of the
square the network saw, image pixels (x0, y0 may be negative: zero padding);
``crop_from_blazepose`` (N,) bool (False = the letterboxed whole frame); ``heatmaps``
(N, 17, h, w) uint8 = round(255 · sigmoid(logits)) on that crop (64 × 64 for Thunder);
``h36m_px`` (N, 17, 2), ``h36m_score`` (N, 17) (:mod:`sparse_pose_ros.teachers.movenet_map`);
``detected`` (N,) bool (mean score ≥ the threshold in the manifest's settings); ``frame_ids``.

``triangulated.npz`` (T synchronised frame indices, V views): ``frame_index`` (T,), ``valid``
(T,), ``joints_world_m`` (T, 17, 3) Qualisys world (z up), ``joints_cam_m`` (T, V, 17, 3) each
OpenCV camera frame, ``residual_px`` (T, 17) RMS reprojection error over the views used,
``views_used`` (T, V, 17), ``view_consistent`` (T, V), ``view_median_px`` (T, V), ``views``
(V,), and the cameras: ``K`` (V, 3, 3), ``dist`` (V, 4), ``R`` (V, 3, 3), ``t`` (V, 3),
``size`` (V, 2). NaN joints have no label (views disagreed).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..skeleton import NUM_JOINTS

LABEL_FORMAT = "sparse_pose_ros.label_cache/1"
MANIFEST = "manifest.json"
BLAZEPOSE_FILE = "blazepose.npz"
BLAZEPOSE_MASKS = "blazepose_masks.npz"
TRIANGULATED_FILE = "triangulated.npz"
MOVENET_FILE = "movenet.npz"
PEOPLE_FILE = "people.npz"
#: Teacher files added after the set was written (deleted when BlazePose relabels the set).
LATER_TEACHER_FILES: tuple[str, ...] = (MOVENET_FILE, PEOPLE_FILE)

#: Arrays of ``blazepose.npz`` and their per-frame shapes.
BLAZEPOSE_ARRAYS: dict[str, tuple[int, ...]] = {
    "landmarks": (33, 4),
    "world_landmarks": (33, 3),
    "h36m_px": (17, 2),
    "h36m_visibility": (17,),
    "h36m_world_m": (17, 3),
}

#: Arrays of ``movenet.npz`` and their per-frame shapes (``heatmaps`` (17, h, w) apart).
MOVENET_ARRAYS: dict[str, tuple[int, ...]] = {
    "keypoints_px": (17, 2),
    "scores": (17,),
    "crop": (3,),
    "h36m_px": (17, 2),
    "h36m_score": (17,),
}


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic JSON write (a crash never leaves a half manifest that looks complete)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def check_blazepose_arrays(arrays: dict[str, np.ndarray], n: int) -> None:
    """Raise ValueError unless ``arrays`` is a complete ``blazepose.npz`` for ``n`` frames."""
    for key, shape in BLAZEPOSE_ARRAYS.items():
        if key not in arrays or arrays[key].shape != (n, *shape):
            got = None if key not in arrays else arrays[key].shape
            raise ValueError(f"blazepose array {key}: expected {(n, *shape)}, got {got}")
    if arrays.get("detected") is None or arrays["detected"].shape != (n,):
        raise ValueError("blazepose array detected: expected one bool per frame")


def check_movenet_arrays(arrays: dict[str, np.ndarray], frame_ids: list[str]) -> None:
    """Raise ValueError unless ``arrays`` is a complete ``movenet.npz`` for these frames."""
    n = len(frame_ids)
    for key, shape in MOVENET_ARRAYS.items():
        if key not in arrays or arrays[key].shape != (n, *shape):
            got = None if key not in arrays else arrays[key].shape
            raise ValueError(f"movenet array {key}: expected {(n, *shape)}, got {got}")
    hm = arrays.get("heatmaps")
    if hm is None or hm.ndim != 4 or hm.shape[:2] != (n, 17) or hm.dtype != np.uint8:
        got = None if hm is None else (hm.shape, hm.dtype)
        raise ValueError(f"movenet array heatmaps: expected ({n}, 17, h, w) uint8, got {got}")
    for key in ("detected", "crop_from_blazepose"):
        if arrays.get(key) is None or arrays[key].shape != (n,):
            raise ValueError(f"movenet array {key}: expected one bool per frame")
    if "frame_ids" not in arrays or list(arrays["frame_ids"]) != list(frame_ids):
        raise ValueError("movenet frame_ids differ from the manifest's frames")


def write_label_set(
    folder: Path,
    manifest: dict[str, Any],
    blazepose: dict[str, np.ndarray],
    masks: dict[str, np.ndarray] | None = None,
    triangulated: dict[str, np.ndarray] | None = None,
) -> None:
    """Write one source's cache; the manifest last, so its presence means the set is complete."""
    frames = manifest["frames"]
    check_blazepose_arrays(blazepose, len(frames))
    ids = [f["id"] for f in frames]
    if list(blazepose["frame_ids"]) != ids:
        raise ValueError("blazepose frame_ids differ from the manifest's frames")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)
    for name in LATER_TEACHER_FILES:  # their rows followed the old frames
        (folder / name).unlink(missing_ok=True)
    _atomic_savez(folder / BLAZEPOSE_FILE, blazepose)
    if masks is not None:
        unknown = sorted(set(masks) - set(ids))
        if unknown:
            raise ValueError(f"masks for frames not in the manifest: {unknown[:3]}")
        _atomic_savez(folder / BLAZEPOSE_MASKS, masks)
    if triangulated is not None:
        _atomic_savez(folder / TRIANGULATED_FILE, triangulated)
    write_json(folder / MANIFEST, {"format": LABEL_FORMAT, **manifest})


def add_teacher(folder: Path, name: str, arrays: dict[str, np.ndarray], record: dict[str, Any],
                summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """Add (or replace) teacher ``name`` in a complete set: its npz (``record["file"]``, rows
    following the manifest's frames, a ``detected`` bool per row) first, then the manifest with
    ``teachers[name] = record``, ``frames[i].detected[name]`` and ``summary[name] = summary``,
    both written atomically. A crash in between leaves a manifest without the teacher: a rerun
    labels it again.

    Returns the new manifest. Raises FileNotFoundError without a complete set, ValueError when
    the arrays' ``frame_ids`` differ from the manifest's frames.
    """
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: label the source with BlazePose first")
    manifest = json.loads(path.read_text())
    frames = manifest["frames"]
    if list(arrays.get("frame_ids", [])) != [f["id"] for f in frames]:
        raise ValueError(f"{name} frame_ids differ from the manifest's frames in {folder}")
    if arrays["detected"].shape != (len(frames),):
        raise ValueError(f"{name}: expected one detected flag per frame")
    if name == "movenet":
        check_movenet_arrays(arrays, [f["id"] for f in frames])
    if manifest.get("teachers", {}).pop(name, None) is not None:
        write_json(path, manifest)  # no record claims a file while it is being replaced
    _atomic_savez(folder / record["file"], arrays)
    for f, det in zip(frames, arrays["detected"], strict=True):
        f.setdefault("detected", {})[name] = bool(det)
    manifest.setdefault("teachers", {})[name] = record
    if summary is not None:
        manifest.setdefault("summary", {})[name] = summary
    write_json(path, manifest)
    return manifest


@dataclass
class LabelSet:
    """One source's cached labels, read back.

    ``blazepose`` holds the arrays of ``blazepose.npz``; masks are read lazily per frame id
    (:meth:`mask`) because a source's masks can be hundreds of MB unpacked, and so is
    :attr:`movenet` (a 400-frame source's heatmaps are 28 MB).
    """

    folder: Path
    manifest: dict[str, Any]
    blazepose: dict[str, np.ndarray]
    triangulated: dict[str, np.ndarray] | None = None
    _masks: Any = field(default=None, repr=False)
    _movenet: dict[str, np.ndarray] | None = field(default=None, repr=False)
    _people: dict[str, np.ndarray] | None = field(default=None, repr=False)

    @property
    def frame_ids(self) -> list[str]:
        return [f["id"] for f in self.manifest["frames"]]

    @property
    def split(self) -> str:
        return str(self.manifest["source"]["split"])

    def mask(self, frame_id: str) -> np.ndarray | None:
        """The teacher's person mask (uint8, downscaled), None when it found nobody."""
        path = self.folder / BLAZEPOSE_MASKS
        if not path.is_file():
            return None
        if self._masks is None:
            self._masks = np.load(path)
        return self._masks[frame_id] if frame_id in self._masks.files else None

    @property
    def teachers(self) -> list[str]:
        """Teachers recorded in the manifest ("blazepose", and "movenet" once added)."""
        return list(self.manifest.get("teachers", {}))

    @property
    def movenet(self) -> dict[str, np.ndarray] | None:
        """The arrays of ``movenet.npz`` (read on first use), None when the manifest has no
        MoveNet teacher. Heatmaps are uint8: probability = heatmaps / 255.

        Raises:
            ValueError: the manifest records MoveNet but the file is missing or does not match
                its frames (a damaged cache: run ./run label --teachers movenet --force).
        """
        if "movenet" not in self.manifest.get("teachers", {}):
            return None
        if self._movenet is None:
            arrays = self._teacher_arrays("movenet", MOVENET_FILE)
            check_movenet_arrays(arrays, self.frame_ids)
            self._movenet = arrays
        return self._movenet

    def _teacher_arrays(self, name: str, default_file: str) -> dict[str, np.ndarray]:
        """The npz of a later teacher the manifest records; ValueError (how to repair) when
        the file is gone."""
        path = self.folder / self.manifest["teachers"][name].get("file", default_file)
        if not path.is_file():
            raise ValueError(f"{path} missing although the manifest records {name}: run "
                             f"./run label --teachers {name} --force")
        with np.load(path) as z:
            return {k: z[k] for k in z.files}

    @property
    def people(self) -> dict[str, np.ndarray] | None:
        """The arrays of ``people.npz`` (``data.people_teacher``: every person of a
        multi-person multiview trial, triangulated), None when the manifest has no such
        teacher. ValueError when the manifest records it but the file is missing or its rows
        are not the manifest's frames."""
        if "people" not in self.manifest.get("teachers", {}):
            return None
        if self._people is None:
            arrays = self._teacher_arrays("people", PEOPLE_FILE)
            if list(arrays.get("frame_ids", [])) != self.frame_ids or arrays.get(
                    "people_cam_m", np.zeros(0)).shape[:1] != (len(self.frame_ids),):
                raise ValueError(f"{self.folder / PEOPLE_FILE} does not match the manifest's "
                                 "frames: run ./run label --teachers people --force")
            self._people = arrays
        return self._people


def triangulated_per_row(ls: LabelSet) -> np.ndarray:
    """(N, 17, 3) metres, each manifest row's one-person triangulation in its own view's camera
    frame (``triangulated.npz``'s frame × view mapped onto the rows); NaN where the source has
    no triangulation, the frame is invalid or the row's view is not one of the rig's."""
    n = len(ls.manifest["frames"])
    out = np.full((n, NUM_JOINTS, 3), np.nan)
    tri = ls.triangulated
    if tri is None or "joints_cam_m" not in tri:
        return out
    views = [str(v) for v in tri["views"]]
    t_of = {int(f): t for t, f in enumerate(tri["frame_index"])}
    valid = tri["valid"].astype(bool) if "valid" in tri else np.ones(len(t_of), bool)
    for row, f in enumerate(ls.manifest["frames"]):
        t = t_of.get(-1 if f.get("index") is None else int(f["index"]))
        if t is None or f.get("view") not in views or not valid[t]:
            continue
        out[row] = tri["joints_cam_m"][t, views.index(f["view"])]
    return out


def iter_images(ls: LabelSet) -> Iterator[tuple[int, np.ndarray]]:
    """(row, RGB uint8 image) for every labelled frame, decoded from the source files recorded
    in the manifest (the pixels the teacher saw; frames are never stored in the cache).

    Rows come grouped by file, in frame order within each video (sequential decoding: seeking
    is inexact for inter-coded video).
    """
    import cv2

    from ..teachers.real_frames import iter_video_frames, load_still

    paths = {f["member"]: f["path"] for f in ls.manifest["files"]}
    by_member: dict[str, list[int]] = {}
    for row, f in enumerate(ls.manifest["frames"]):
        by_member.setdefault(f["member"], []).append(row)
    for member, rows in by_member.items():
        frames = ls.manifest["frames"]
        path = paths.get(member)
        if frames[rows[0]]["index"] is None:  # a still photo
            if path is None:
                yield rows[0], load_still(member).image
                continue
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            if bgr is None:
                raise FileNotFoundError(f"cannot read {path}: run ./run label again")
            yield rows[0], cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            continue
        by_index = {frames[r]["index"]: r for r in rows}
        for fr in iter_video_frames(Path(path), sorted(by_index), video_id=member):
            yield by_index[fr.index], fr.image


def load_label_set(folder: Path) -> LabelSet:
    """Read a cache folder written by :func:`write_label_set`.

    Raises:
        FileNotFoundError: no manifest (not labelled, or the run did not finish).
        ValueError: another format version, or arrays that do not match the manifest.
    """
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run ./run label for this source")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != LABEL_FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {LABEL_FORMAT!r}")
    with np.load(folder / BLAZEPOSE_FILE) as z:
        bp = {k: z[k] for k in z.files}
    check_blazepose_arrays(bp, len(manifest["frames"]))
    tri = None
    if (folder / TRIANGULATED_FILE).is_file():
        with np.load(folder / TRIANGULATED_FILE) as z:
            tri = {k: z[k] for k in z.files}
    return LabelSet(folder, manifest, bp, tri)


def load_corpus(root: Path) -> dict[str, LabelSet]:
    """Every complete label set under ``root`` by source id (folders without a manifest are
    skipped: an interrupted run)."""
    out: dict[str, LabelSet] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if (folder / MANIFEST).is_file():
            ls = load_label_set(folder)
            out[ls.manifest["source"]["id"]] = ls
    return out
