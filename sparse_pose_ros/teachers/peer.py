"""The BlazePose peer from the project venv: run it, read its answer, compare 2D joints, draw.

BlazePose lives in its own venv (``.venv-peer``, made by ``tools/peer/setup_venv.sh``) because
mediapipe needs numpy < 2. This module never imports mediapipe: it writes the frames to disk,
runs ``tools/peer/blazepose_runner.py`` with the peer venv's python in a subprocess and parses the
JSON it writes. Mapping to Human3.6M-17 is :mod:`.blazepose_map` (shared with the runner).

Agreement is PCK: the share of joints whose distance between our 2D joint and the peer's is
below ``t ×`` the size of the *peer's* person box (longest side of the box around the peer's
visible H36M joints). The peer is not ground truth; agreement only says the two models see the
same body in the same place.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import skeleton
from .real_frames import RealFrame

LOG = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNNER = REPO_ROOT / "tools" / "peer" / "blazepose_runner.py"
#: Environment variable naming the peer venv's python (default: <repo>/.venv-peer/bin/python).
PEER_PYTHON_ENV = "SPARSE_POSE_PEER_PYTHON"
DEFAULT_VIS_THRESHOLD = 0.5
PCK_THRESHOLDS: tuple[float, ...] = (0.1, 0.2)


class PeerError(RuntimeError):
    """The peer venv is missing or the runner failed (message says which and how to fix)."""


def peer_python() -> Path:
    env = os.environ.get(PEER_PYTHON_ENV)
    return Path(env) if env else REPO_ROOT / ".venv-peer" / "bin" / "python"


def peer_available() -> tuple[bool, str]:
    """Whether the peer can run here, and why not (for skip reasons and CLI errors)."""
    py = peer_python()
    if not py.is_file():
        return False, f"peer venv python {py} not found: run tools/peer/setup_venv.sh"
    if not RUNNER.is_file():
        return False, f"peer runner {RUNNER} not found (tools/ is not installed with the package)"
    return True, f"peer python {py}"


@dataclass
class PeerFrame:
    """The peer's answer for one frame in one mode.

    Attributes:
        id: frame id (see :mod:`.real_frames`).
        detected: False when BlazePose found no person (all arrays are then None).
        joints_px: (17, 2) H36M joints in image pixels.
        visibility: (17,) BlazePose visibility of each mapped joint.
        joints_world_m: (17, 3) hip-centred metres (BlazePose world landmarks), or None.
        landmarks: (33, 4) raw landmarks: x, y normalised to the image, z, visibility.
        latency_ms: timed ``process`` calls for this frame.
        pixel_mean: mean pixel value the runner decoded (to catch decoder differences).
    """

    id: str
    detected: bool
    joints_px: np.ndarray | None
    visibility: np.ndarray | None
    joints_world_m: np.ndarray | None
    landmarks: np.ndarray | None
    latency_ms: list[float]
    pixel_mean: float
    warmup: bool = False


@dataclass
class PeerResult:
    """Parsed runner output: per mode, frames by id and a latency summary."""

    frames: dict[str, dict[str, PeerFrame]]
    latency: dict[str, dict[str, Any]]
    info: dict[str, Any]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


def _arr(value: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    if value is None:
        return None
    a = np.asarray(value, np.float64)
    if a.shape != shape:
        raise PeerError(f"peer output has shape {a.shape}, expected {shape}")
    return a


def parse_runner_output(data: dict[str, Any]) -> PeerResult:
    """Turn the runner's JSON into :class:`PeerResult` (validating joint names and shapes)."""
    names = tuple(data.get("h36m_joint_names", ()))
    if names != skeleton.JOINT_NAMES:
        raise PeerError(f"peer joint order {names} differs from skeleton.JOINT_NAMES")
    frames: dict[str, dict[str, PeerFrame]] = {}
    latency: dict[str, dict[str, Any]] = {}
    j = skeleton.NUM_JOINTS
    for mode, block in data.get("modes", {}).items():
        per: dict[str, PeerFrame] = {}
        for rec in block["frames"]:
            det = bool(rec["detected"])
            per[rec["id"]] = PeerFrame(
                id=rec["id"],
                detected=det,
                joints_px=_arr(rec.get("h36m_px"), (j, 2)) if det else None,
                visibility=_arr(rec.get("h36m_visibility"), (j,)) if det else None,
                joints_world_m=_arr(rec.get("h36m_world_m"), (j, 3)) if det else None,
                landmarks=_arr(rec.get("landmarks"), (33, 4)) if det else None,
                latency_ms=[float(t) for t in rec["latency_ms"]],
                pixel_mean=float(rec["pixel_mean"]),
                warmup=bool(rec.get("warmup", False)),
            )
        frames[mode] = per
        latency[mode] = dict(block["latency_summary"])
        for key in ("latency_summary_person", "latency_summary_no_person"):
            if key in block:
                latency[mode][key.replace("latency_summary_", "")] = block[key]
        if "sequences" in block:
            latency[mode]["sequences"] = block["sequences"]
    return PeerResult(frames=frames, latency=latency, info=data.get("peer", {}), raw=data)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise PeerError(f"cannot write {path}")


def run_peer(
    frames: Sequence[RealFrame],
    video_path: Path | None = None,
    modes: Sequence[str] = ("static", "video"),
    contiguous: bool = True,
    warmup: int = 3,
    repeats: int = 1,
    timeout_s: float = 1800.0,
    work_dir: Path | None = None,
    cpus: Sequence[int] | None = None,
    pace_hz: float = 0.0,
) -> PeerResult:
    """Run BlazePose on ``frames`` in the peer venv.

    Stills (``index is None``) go to the runner as lossless PNGs, so both models see identical
    pixels. Video frames are decoded by the runner from ``video_path`` (with ``contiguous``, every
    frame between the first and last requested index is fed in video mode, as a camera would);
    the decoded pixel mean is compared with ours and a mismatch is logged. ``cpus``: run the
    peer on these CPUs only (affinity; mediapipe picks its own thread count, so this is how a
    benchmark gives it the cores the other contenders get). ``pace_hz``: video mode starts its
    frames at this rate, as a camera delivers them (0 = back to back).

    Raises:
        PeerError: venv missing, runner failed or timed out, or unreadable output.
        ValueError: video frames without ``video_path``, or frames of several videos.
    """
    ok, why = peer_available()
    if not ok:
        raise PeerError(why)
    stills = [f for f in frames if f.index is None]
    video = [f for f in frames if f.index is not None]
    if video and video_path is None:
        raise ValueError("video frames given without video_path")
    if len({f.sequence for f in video}) > 1:
        raise ValueError(f"frames of several videos: {sorted({f.sequence for f in video})}")
    with tempfile.TemporaryDirectory(prefix="peer_", dir=work_dir) as tmp:
        tmpdir = Path(tmp)
        lines = []
        for f in stills:
            png = tmpdir / f"{f.id}.png"
            _write_png(png, f.image)
            lines.append(f"{f.id}\t{png}")
        out = tmpdir / "peer.json"
        cmd = [
            str(peer_python()),
            str(RUNNER),
            "--out",
            str(out),
            "--modes",
            ",".join(modes),
            "--warmup",
            str(warmup),
            "--repeats",
            str(repeats),
        ]
        if lines:
            (tmpdir / "images.tsv").write_text("\n".join(lines) + "\n")
            cmd += ["--image-list", str(tmpdir / "images.tsv")]
        if video:
            cmd += ["--video", str(video_path), "--video-id", video[0].sequence]
            cmd += ["--frames", ",".join(str(f.index) for f in video)]
            if contiguous:
                cmd.append("--contiguous")
            if pace_hz:
                cmd += ["--pace-hz", str(float(pace_hz))]
        LOG.info("running peer: %s", " ".join(cmd))
        try:
            affinity = None if cpus is None else set(cpus)
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                                  preexec_fn=None if affinity is None
                                  else lambda: os.sched_setaffinity(0, affinity))  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise PeerError(f"peer runner timed out after {timeout_s:.0f} s") from exc
        if proc.returncode != 0 or not out.is_file():
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise PeerError(f"peer runner failed (exit {proc.returncode}):\n{tail}")
        try:
            data = json.loads(out.read_text())
        except json.JSONDecodeError as exc:
            raise PeerError(f"peer output is not JSON: {exc}") from exc
    result = parse_runner_output(data)
    _check_pixels(frames, result)
    return result


def _check_pixels(frames: Sequence[RealFrame], result: PeerResult, tol: float = 0.5) -> None:
    """Both venvs decode the video with different OpenCV builds: warn if pixels differ."""
    for per in result.frames.values():
        for f in frames:
            pf = per.get(f.id)
            if pf is None:
                raise PeerError(f"peer returned no result for frame {f.id}")
            diff = abs(pf.pixel_mean - float(f.image.mean()))
            if diff > tol:
                LOG.warning("frame %s: peer decoded different pixels (mean differs by %.2f)",
                            f.id, diff)


# --- agreement -----------------------------------------------------------------------------


@dataclass
class PckResult:
    """PCK agreement for one frame.

    Attributes:
        pck: threshold -> share of counted joints within threshold × bbox_size.
        counted: (17,) bool, joints that entered the score (peer-visible and selected).
        errors_norm: (17,) distance / bbox_size (NaN where not counted).
        bbox_size: longest side (px) of the box around the peer's counted joints.
    """

    pck: dict[float, float]
    counted: np.ndarray
    errors_norm: np.ndarray
    bbox_size: float

    @property
    def n_counted(self) -> int:
        return int(self.counted.sum())


def joint_selection(names: Sequence[str] | None) -> np.ndarray:
    """(17,) bool mask of the named joints (None = all 17)."""
    if names is None:
        return np.ones(skeleton.NUM_JOINTS, bool)
    unknown = [n for n in names if n not in skeleton.JOINT_NAMES]
    if unknown:
        raise ValueError(f"unknown joint names {unknown}")
    return np.array([n in names for n in skeleton.JOINT_NAMES])


def pck_agreement(
    ours_px: np.ndarray,
    peer_px: np.ndarray,
    peer_visibility: np.ndarray | None = None,
    thresholds: Sequence[float] = PCK_THRESHOLDS,
    vis_threshold: float = DEFAULT_VIS_THRESHOLD,
    joints: Sequence[str] | None = None,
) -> PckResult:
    """PCK of our 2D joints against the peer's, normalised by the peer's person box.

    Only joints the peer calls visible (visibility ≥ ``vis_threshold``) and that are in
    ``joints`` (default all 17) count; the box is taken over those same joints, so a peer guess
    for an occluded limb neither scores nor inflates the box.

    Raises:
        ValueError: shape mismatch, non-finite input, fewer than two counted joints, or a
            degenerate (zero-size) box.
    """
    ours = np.asarray(ours_px, np.float64)
    peer = np.asarray(peer_px, np.float64)
    shape = (skeleton.NUM_JOINTS, 2)
    if ours.shape != shape or peer.shape != shape:
        raise ValueError(f"expected {shape} joints, got ours {ours.shape}, peer {peer.shape}")
    if not (np.all(np.isfinite(ours)) and np.all(np.isfinite(peer))):
        raise ValueError("joints contain NaN or inf")
    if not thresholds or min(thresholds) <= 0:
        raise ValueError(f"thresholds must be positive, got {thresholds}")
    vis = np.ones(skeleton.NUM_JOINTS) if peer_visibility is None else np.asarray(peer_visibility)
    if vis.shape != (skeleton.NUM_JOINTS,):
        raise ValueError(f"expected ({skeleton.NUM_JOINTS},) visibility, got {vis.shape}")
    counted = (vis >= vis_threshold) & joint_selection(joints)
    if counted.sum() < 2:
        raise ValueError(f"only {int(counted.sum())} peer joints visible; PCK needs >= 2")
    box = peer[counted]
    size = float(np.max(box.max(axis=0) - box.min(axis=0)))
    if size <= 0:
        raise ValueError("peer joints collapse to one point; no box to normalise by")
    err = np.full(skeleton.NUM_JOINTS, np.nan)
    err[counted] = np.linalg.norm(ours[counted] - peer[counted], axis=1) / size
    pck = {float(t): float(np.mean(err[counted] <= t)) for t in thresholds}
    return PckResult(pck=pck, counted=counted, errors_norm=err, bbox_size=size)


def pooled_pck(results: Sequence[PckResult], thresholds: Sequence[float]) -> dict[str, Any]:
    """PCK over all counted joints of all frames, plus per-joint PCK and the frame mean."""
    if not results:
        return {"frames": 0}
    err = np.stack([r.errors_norm for r in results])  # (F, 17), NaN = not counted
    counted = ~np.isnan(err)
    out: dict[str, Any] = {"frames": len(results), "joints_counted": int(counted.sum())}
    for t in thresholds:
        hit = (err <= t) & counted
        out[f"pck@{t:g}"] = round(float(hit.sum() / counted.sum()), 4)
        out[f"frame_mean_pck@{t:g}"] = round(float(np.mean([r.pck[t] for r in results])), 4)
        per_joint = {}
        for j, name in enumerate(skeleton.JOINT_NAMES):
            n = int(counted[:, j].sum())
            per_joint[name] = round(float(hit[:, j].sum() / n), 4) if n else None
        out[f"per_joint_pck@{t:g}"] = per_joint
    return out



# --- drawing -------------------------------------------------------------------------------


def _rgb255(rgb01: tuple[float, float, float]) -> tuple[int, int, int]:
    return tuple(int(round(c * 255)) for c in rgb01)  # type: ignore[return-value]


def draw_skeleton(
    image: np.ndarray,
    joints_px: np.ndarray,
    visibility: np.ndarray | None = None,
    vis_threshold: float = DEFAULT_VIS_THRESHOLD,
) -> np.ndarray:
    """Copy of ``image`` (RGB uint8) with bones and joints in skeleton colours.

    Joints below ``vis_threshold`` (and their bones) are drawn thin, so a reader sees what the
    peer guessed versus what it saw.
    """
    import cv2

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    pts = np.asarray(joints_px, np.float64)
    if pts.shape != (skeleton.NUM_JOINTS, 2):
        raise ValueError(f"expected ({skeleton.NUM_JOINTS}, 2) joints, got {pts.shape}")
    vis = np.ones(skeleton.NUM_JOINTS) if visibility is None else np.asarray(visibility)
    out = np.ascontiguousarray(image.copy())
    thick = max(2, round(max(image.shape[:2]) / 200))
    ipts = [(int(round(x)), int(round(y))) for x, y in np.nan_to_num(pts, nan=-1e4)]
    for (p, c), colour in zip(skeleton.BONES, skeleton.BONE_COLOURS, strict=True):
        seen = vis[p] >= vis_threshold and vis[c] >= vis_threshold
        cv2.line(out, ipts[p], ipts[c], _rgb255(colour), thick if seen else 1, cv2.LINE_AA)
    for j, colour in enumerate(skeleton.JOINT_COLOURS):
        radius = thick + 1 if vis[j] >= vis_threshold else thick
        cv2.circle(out, ipts[j], radius, _rgb255(colour), -1, cv2.LINE_AA)
    return out


def _caption(image: np.ndarray, text: str) -> np.ndarray:
    import cv2

    bar_h = max(24, image.shape[0] // 20)
    bar = np.full((bar_h, image.shape[1], 3), 255, np.uint8)
    scale = bar_h / 40
    cv2.putText(bar, text, (6, int(bar_h * 0.72)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                1, cv2.LINE_AA)
    return np.concatenate([bar, image], axis=0)


def side_by_side(
    image: np.ndarray,
    ours_px: np.ndarray,
    peer_px: np.ndarray | None,
    peer_visibility: np.ndarray | None,
    left_title: str,
    right_title: str,
    max_side: int | None = None,
) -> np.ndarray:
    """[ours | peer] on the same image, each with a caption bar; peer None = 'no person'.

    ``max_side`` shrinks each panel (and the joints with it) so committed PNGs stay small.
    """
    if max_side is not None:
        import cv2

        if max_side < 16:
            raise ValueError(f"max_side must be >= 16, got {max_side}")
        scale = min(1.0, max_side / max(image.shape[:2]))
        if scale < 1.0:
            size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            ours_px = np.asarray(ours_px, np.float64) * scale
            peer_px = None if peer_px is None else np.asarray(peer_px, np.float64) * scale
    left = _caption(draw_skeleton(image, ours_px), left_title)
    if peer_px is None:
        right = _caption(image.copy(), right_title + " (no person found)")
    else:
        right = _caption(draw_skeleton(image, peer_px, peer_visibility), right_title)
    gap = np.full((left.shape[0], 8, 3), 255, np.uint8)
    return np.concatenate([left, gap, right], axis=1)


def save_png(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG (creating the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_png(path, rgb)
