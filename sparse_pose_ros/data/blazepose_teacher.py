"""BlazePose Full as a teacher: 2D landmarks, world landmarks and a person mask per frame.

MediaPipe needs numpy < 2, so it runs in the peer venv through the same runner the evaluation
peer uses (``tools/peer/blazepose_runner.py``, here with ``--masks``); this module only builds the
command and turns the runner's JSON + mask npz into the label-cache arrays of
:mod:`.label_cache`.

Static-image mode (person detector + landmark model on every frame) is the default: each label
depends on its own frame only, with no tracking state or landmark smoothing carried between the
subsampled frames; it is also what finds a person in a still photo. Video mode (``mode="video"``)
feeds every frame from the first to the last labelled one in order and reports the labelled
ones: the landmark model then tracks people the detector misses (small pedestrians), at the
price of MediaPipe's landmark smoothing (a little lag) and one person per clip at a time.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..teachers.peer import RUNNER, PeerError, peer_available, peer_python
from .label_cache import BLAZEPOSE_ARRAYS

DEFAULT_MASK_DOWNSCALE = 4


@dataclass
class TeacherRun:
    """One runner call: ``records`` in frame order, ``masks`` by frame id, ``info`` the peer's
    versions and settings, ``seconds`` the wall time of the call."""

    records: list[dict[str, Any]]
    masks: dict[str, np.ndarray]
    info: dict[str, Any]
    seconds: float


def run_blazepose(
    *,
    video: Path | None = None,
    indices: Sequence[int] = (),
    video_id: str = "video",
    images: Sequence[tuple[str, Path]] = (),
    mode: str = "static",
    mask_downscale: int = DEFAULT_MASK_DOWNSCALE,
    timeout_s: float = 3600.0,
) -> TeacherRun:
    """Run BlazePose on frames ``indices`` of ``video`` or on ``images`` ((id, path) pairs).

    Raises:
        PeerError: the peer venv is missing, or the runner failed.
    """
    ok, why = peer_available()
    if not ok:
        raise PeerError(why)
    if (video is None) == (not images):
        raise ValueError("give either a video with indices or images")
    with tempfile.TemporaryDirectory(prefix="teacher_") as tmp:
        tmpdir = Path(tmp)
        out, masks = tmpdir / "bp.json", tmpdir / "masks.npz"
        cmd = [str(peer_python()), str(RUNNER), "--out", str(out), "--modes", mode,
               "--warmup", "0", "--repeats", "1", "--video-warmup", "0",
               "--masks", str(masks), "--mask-downscale", str(mask_downscale)]
        if video is not None:
            if not indices:
                raise ValueError("no frame indices")
            cmd += ["--video", str(video), "--video-id", video_id,
                    "--frames", ",".join(str(i) for i in indices)]
            if mode == "video":  # every frame in order, so the tracker follows real motion
                cmd.append("--contiguous")
        else:
            (tmpdir / "images.tsv").write_text("".join(f"{i}\t{p}\n" for i, p in images))
            cmd += ["--image-list", str(tmpdir / "images.tsv")]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise PeerError(f"BlazePose runner timed out after {timeout_s:.0f} s") from exc
        seconds = time.perf_counter() - t0
        if proc.returncode != 0 or not out.is_file():
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise PeerError(f"BlazePose runner failed (exit {proc.returncode}):\n{tail}")
        data = json.loads(out.read_text())
        with np.load(masks) as z:
            mask_dict = {k: z[k] for k in z.files}
    info = dict(data["peer"])
    info["h36m_mapping"] = data["h36m_mapping"]
    info["mode"] = mode
    info["mask_downscale"] = mask_downscale
    return TeacherRun(data["modes"][mode]["frames"], mask_dict, info, seconds)


def records_to_arrays(records: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Runner frame records -> ``blazepose.npz`` arrays (NaN rows where nobody was found)."""
    n = len(records)
    out = {k: np.full((n, *shape), np.nan, np.float32) for k, shape in BLAZEPOSE_ARRAYS.items()}
    src = {"landmarks": "landmarks", "world_landmarks": "world_landmarks", "h36m_px": "h36m_px",
           "h36m_visibility": "h36m_visibility", "h36m_world_m": "h36m_world_m"}
    detected = np.zeros(n, bool)
    for i, rec in enumerate(records):
        if not rec["detected"]:
            continue
        detected[i] = True
        for key, field_name in src.items():
            if rec.get(field_name) is not None:
                out[key][i] = np.asarray(rec[field_name], np.float32)
    out["detected"] = detected
    out["frame_ids"] = np.array([r["id"] for r in records])
    return out
