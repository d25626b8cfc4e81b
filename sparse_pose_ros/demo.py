"""``./run demo``: camera_replay -> pose_node -> pose_recorder as three processes over real DDS.

Runs a bounded clip, then writes ``out/demo/summary.json`` and three PNGs (input with the 3D
skeleton projected through the CameraInfo, the execution-mask overlay, a 3D view) and prints where
they are. No rclpy here: the nodes are separate processes, exactly as a user would run them.

Default clip: real people — OpenCV's ``vtest.avi`` (several pedestrians walking through a
street scene, 768×576, 10 fps; Debian ``opencv-doc``, which ``./run`` installs). Where it is
missing or does not decode, the demo says why and falls back to the photos of people shipped with
scikit-image/matplotlib (``bundled``), then to ``synthetic`` (rendered mannequins with exact
intrinsics; always available with ``--source synthetic``). The model is the node's default,
models/pose_dense.safetensors (MoveNet Thunder + our heads, ``models/MODEL_CARD.md``), else the
newest checkpoint in models/; the summary says whether it carries a training record.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from . import skeleton
from .model.checkpoint import CheckpointError, read_metadata
from .pipeline import sources as frame_sources
from .pipeline.draw import draw_skeleton, mask_overlay
from .pipeline.lift import Intrinsics
from .pipeline.sources import SourceError, is_video, open_source
from .ros.middleware import apply_default_profile
from .teachers.peer import PeerError

LOG = logging.getLogger("sparse_pose_ros.demo")
ROOT = Path(__file__).resolve().parents[1]


def default_model() -> Path | None:
    preferred = ROOT / "models" / "pose_dense.safetensors"  # = ros.parameters.DEFAULT_MODEL
    if preferred.is_file():
        return preferred
    found = sorted((ROOT / "models").glob("*.safetensors"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def default_source() -> str:
    """A real clip with several people: vtest.avi (its path) when one frame decodes; else
    'bundled' (the photos) when there are photos; else 'synthetic'. Each fallback is logged
    with its reason."""
    vtest = frame_sources.VTEST_AVI
    if vtest.is_file():
        try:
            next(open_source(str(vtest), 160)())
            return str(vtest)
        except (SourceError, StopIteration, OSError) as exc:
            # 'bundled' would play the same broken file: the photos are out of reach too
            LOG.warning("%s does not decode (%s); playing rendered mannequins (synthetic) "
                        "instead of real people", vtest, exc or "no frame")
            return "synthetic"
    reason = f"{vtest} missing (Debian package opencv-doc; ./run installs it)"
    if frame_sources.bundled_photos():
        LOG.warning("%s; playing the bundled photos of people instead", reason)
        return "bundled"
    LOG.warning("%s and no bundled photos (scikit-image / matplotlib); playing rendered "
                "mannequins (synthetic)", reason)
    return "synthetic"


def ros_env() -> dict[str, str]:
    """Loopback-only DDS with a private domain, so demos and tests never hear each other, and
    the Fast DDS profile that lets camera-sized frames cross processes (``ros.middleware``)."""
    env = dict(os.environ)
    env.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # Jazzy+ (./run sets the
    env.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")  # Humble spelling when needed)
    LOG.info("%s", apply_default_profile(env, for_children=True))
    return env


def failure_reason(log: Path, lines: int = 3) -> str:
    """The last ERROR/exception lines of a process log (else its last lines), so a failed demo
    says why on the terminal instead of only pointing at a file."""
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {log})"
    picked = [t for t in text if "[ERROR]" in t or "Error" in t or "error:" in t][-lines:]
    return " | ".join(x.strip() for x in (picked or text[-lines:])) or f"(empty log {log})"


def _start(
    module: str, params: dict[str, object], log: Path, env: dict[str, str]
) -> subprocess.Popen:
    cmd = [sys.executable, "-m", f"sparse_pose_ros.ros.{module}", "--ros-args"]
    for k, v in params.items():
        value = str(v).lower() if isinstance(v, bool) else str(v)
        cmd += ["-p", f"{k}:={value}"]
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def parse_node_params(items: list[str]) -> dict[str, str]:
    """``NAME:=VALUE`` strings (ROS's own ``-p`` syntax) -> {name: value}; ValueError names a
    malformed one. Values stay strings: the node parses and validates them like any other
    ``--ros-args -p``, so a bad value fails the same way it would on a command line."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"--param {item!r}: expected NAME:=VALUE, e.g. input_size:=224")
        out[name.strip()] = value.strip()
    return out


def _stop(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_pipeline(
    out: Path, model: Path, source: str, seconds: float, rate_hz: float, width: int,
    backend: str, ready_timeout: float = 180.0, node_params: dict[str, str] | None = None,
) -> dict:
    """Start the three processes, play ``seconds`` of frames, stop them; return raw records."""
    env = ros_env()
    out.mkdir(parents=True, exist_ok=True)
    ready, replay_file = out / "node_ready", out / "replay.json"
    for stale in (ready, replay_file, out / "recording.json", out / "frame.npz"):
        stale.unlink(missing_ok=True)
    node = _start("pose_node", {
        "model_file_path": model, "backend": backend, "diagnostics_period_sec": 0.5,
        # the synthetic clip and photo sets are unrelated stills: no crop from frame to frame
        "track_person": is_video(source),
        "region_from_pose": is_video(source),
        **(node_params or {}),
    }, out / "pose_node.log", env)
    recorder = _start("recorder", {"out_dir": out, "ready_file": ready}, out / "recorder.log", env)
    procs = [node, recorder]
    try:
        t0 = time.monotonic()
        while not ready.exists():
            if node.poll() is not None:
                raise RuntimeError(f"pose_node exited ({node.returncode}): "
                                   f"{failure_reason(out / 'pose_node.log')} (log: {out})")
            if time.monotonic() - t0 > ready_timeout:
                raise RuntimeError(f"pose_node not ready after {ready_timeout:.0f} s: "
                                   f"{failure_reason(out / 'pose_node.log')} (logs: {out})")
            time.sleep(0.2)
        frames = max(1, int(seconds * rate_hz))
        cpu_start = (time.monotonic(), process_cpu_seconds(node.pid))
        replay = _start("camera_replay", {
            "source": source, "rate_hz": float(rate_hz), "width": width, "loop": True,
            "max_frames": frames, "stats_file": out / "replay.json",
            "wait_for_subscribers": 2,  # pose_node and the recorder
        }, out / "camera_replay.log", env)
        procs.append(replay)
        deadline = time.monotonic() + 2 * frames / rate_hz + 60.0
        while not (replay_file.is_file() and json.loads(replay_file.read_text())["done"]):
            if replay.poll() is not None or time.monotonic() > deadline:
                why = (f"exited ({replay.returncode})" if replay.poll() is not None
                       else "still running at the deadline")
                raise RuntimeError(f"camera_replay {why}: "
                                   f"{failure_reason(out / 'camera_replay.log')} "
                                   f"(log: {out}/camera_replay.log)")
            time.sleep(0.2)
        time.sleep(1.0)  # the last frame processed and published
        cpu_end = (time.monotonic(), process_cpu_seconds(node.pid))
        _stop(replay)
        time.sleep(1.5)  # one more diagnostics period after the last frame
        _stop(recorder)
        _stop(node)
    finally:
        for p in procs:
            _stop(p)
    rec_file = out / "recording.json"
    if not rec_file.is_file() or not replay_file.is_file():
        raise RuntimeError(f"a process did not write its record; see the logs in {out}")
    return {
        "recording": json.loads(rec_file.read_text()),
        "replay": json.loads(replay_file.read_text()),
        "node_cpu": cpu_share(cpu_start, cpu_end),
    }


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds ``pid`` has used so far (Linux ``/proc``; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def cpu_share(start: tuple[float, float | None], end: tuple[float, float | None]
              ) -> dict[str, float] | None:
    """pose_node's CPU use while the clip played, from two (wall s, CPU s) readings: CPU
    seconds and cores busy on average (1.0 = one core all the time) — what a faster setting
    costs the rest of the robot (e.g. worker threads that busy-wait)."""
    if start[1] is None or end[1] is None or end[0] <= start[0]:
        return None
    used = end[1] - start[1]
    return {"cpu_seconds": round(used, 3), "wall_seconds": round(end[0] - start[0], 3),
            "cores_busy": round(used / (end[0] - start[0]), 3)}


def peer_on_clip(source: str, width: int, frames: int, work: Path, rate_hz: float = 0.0
                 ) -> dict:
    """MediaPipe BlazePose Full (its own venv, ``teachers.peer``) in video mode on the frames
    the demo played: the first ``frames`` of ``source`` at ``width``, written as lossless PNGs
    the runner reads as one video. Its time is ``Pose.process`` alone, in its own process
    after the demo (no DDS, no message conversion, the cores to itself) — the bar the node's
    image -> /pose3d p50 is held to (issue 17 §2) — with the frames started at the demo's
    camera rate (``rate_hz``) as the node gets them, and back to back for reference. Why both:
    on a CPU that idles between frames one frame costs more than in a tight loop (our
    estimator on the Sports2D frames at 320 px: 12.9 ms back to back, 20.7 ms with 90 ms gaps),
    so only the paced time is the node's bar.

    Raises:
        PeerError: no peer venv (``tools/peer/setup_venv.sh``), or the runner failed.
        SourceError: the source cannot be opened; ValueError: it is not a video.
    """
    import cv2

    from .teachers.peer import run_peer
    from .teachers.real_frames import RealFrame

    if not is_video(source):
        raise ValueError(f"{source} is not a video: BlazePose's video mode needs one")
    folder = work / "peer_frames"
    folder.mkdir(parents=True, exist_ok=True)
    clip: list[RealFrame] = []
    for i, (rgb, _) in enumerate(open_source(source, width)()):
        if i >= frames:
            break
        cv2.imwrite(str(folder / f"f_{i:05d}.png"), rgb[:, :, ::-1])
        clip.append(RealFrame(f"demo_f{i:05d}", rgb, source, "demo", i))
    result = run_peer(clip, video_path=folder / "f_%05d.png", modes=("video",), pace_hz=rate_hz)
    lat = result.latency["video"]
    found = sum(f.detected for f in result.frames["video"].values())
    loop = (run_peer(clip, video_path=folder / "f_%05d.png", modes=("video",)).latency["video"]
            if rate_hz else lat)
    return {
        "peer": "MediaPipe BlazePose Full, video mode (detector once, then landmarks on its own "
                "tracked ROI); Pose.process time in its own process, after the demo",
        "frames": len(clip), "frame_size": f"{clip[0].image.shape[1]}x{clip[0].image.shape[0]}",
        "pace_hz": rate_hz,
        "latency_ms": {k: lat.get(k) for k in ("p50", "p95", "mean", "n")},
        "latency_ms_back_to_back": {k: loop.get(k) for k in ("p50", "p95", "mean", "n")},
        # a frame where it finds nobody runs its detector only: say which time is which
        "latency_ms_person": lat.get("person"),
        "latency_ms_no_person": lat.get("no_person"),
        "persons_found": int(found),
        "versions": {k: result.info.get(k) for k in ("mediapipe_version", "model_complexity")},
    }


def _num(d: dict[str, str], key: str, cast: type = float) -> float | int | None:
    try:
        return cast(float(d[key])) if cast is int else cast(d[key])
    except (KeyError, ValueError):
        return None


def summarise(raw: dict, model: Path, source: str, seconds: float) -> dict:
    rec, diag = raw["recording"], raw["recording"]["diagnostics"]
    lat = np.asarray(rec["latencies_ms"], dtype=np.float64)
    try:
        meta = read_metadata(model)["meta"]
    except CheckpointError:
        meta = {}
    published = int(raw["replay"]["published"])
    received = _num(diag, "frames_received", int)
    return {
        "source": raw["replay"]["source"],
        "source_spec": source,
        "seconds": seconds,
        "model": str(model),
        "model_trained": bool(meta) and not meta.get("untrained", False),
        "backend": diag.get("backend"),
        "device": diag.get("device"),
        # published by camera_replay -> received by pose_node (the rest was lost in transport)
        # -> processed, or skipped while the worker was busy (newest frame wins), or invalid
        "frames_published": published,
        "frames_received": received,
        "frames_lost_in_transport": (published - received) if received is not None else None,
        "frames_processed": _num(diag, "frames_processed", int),
        "frames_skipped_busy": _num(diag, "frames_dropped", int),
        "frames_invalid": _num(diag, "frames_invalid", int),
        "persons_found": _num(diag, "persons_found", int),
        "poses_received": rec["counts"]["poses"],
        "latency_image_to_pose3d_ms": {
            "p50": float(np.percentile(lat, 50)) if lat.size else None,
            "p95": float(np.percentile(lat, 95)) if lat.size else None,
            "n": int(lat.size),
        },
        "node_latency_ms": {"p50": _num(diag, "latency_p50_ms"),
                            "p95": _num(diag, "latency_p95_ms"),
                            # p50 of each stage inside the node (pose_node._process)
                            "stages_p50": {k[: -len("_p50_ms")]: _num(diag, k) for k in diag
                                           if k.endswith("_p50_ms") and k != "latency_p50_ms"}},
        "mean_density": _num(diag, "mean_density"),
        "diagnostics_message": rec["diagnostics_message"],
        "transport_warnings": rec.get("transport_warnings", 0),
        "transport_warning_message": rec.get("transport_warning_message", ""),
        "unmatched_stamps": rec["counts"]["unmatched_stamps"],
        "machine": {"cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]},
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def write_pictures(out: Path, title: str) -> list[Path]:
    """PNGs from the recorded frame: projected skeleton, mask overlay, 3D view."""
    frame_file = out / "frame.npz"
    if not frame_file.is_file():
        return []
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = np.load(frame_file)
    image, mask, k = f["image"], f["mask"], f["k"]
    h, w = image.shape[:2]
    paths = [out / "mask_overlay.png"]
    cv2.imwrite(str(paths[0]), mask_overlay(image, mask)[:, :, ::-1])
    if "joints_m" not in f:  # no person found in the whole clip: nothing to draw honestly
        return paths
    joints = f["joints_m"]
    intr = Intrinsics(k[0, 0], k[1, 1], k[0, 2], k[1, 2], w, h)
    paths += [out / "input_skeleton.png", out / "skeleton_3d.png"]
    drawn = draw_skeleton(image, intr.project(joints))
    cv2.imwrite(str(paths[1]), drawn[:, :, ::-1])

    fig = plt.figure(figsize=(5, 5))
    ax = fig.add_subplot(projection="3d")
    # Optical frame (x right, y down, z forward) shown with z as depth and -y as up.
    for (p, c), colour in zip(skeleton.BONES, skeleton.BONE_COLOURS, strict=True):
        seg = joints[[p, c]]
        ax.plot(seg[:, 0], seg[:, 2], -seg[:, 1], color=colour, linewidth=3)
    ax.scatter(joints[:, 0], joints[:, 2], -joints[:, 1], c=skeleton.JOINT_COLOURS, s=20)
    centre, span = joints.mean(0), max(float(np.ptp(joints, 0).max()), 0.5) / 2
    ax.set_xlim(centre[0] - span, centre[0] + span)
    ax.set_ylim(centre[2] - span, centre[2] + span)
    ax.set_zlim(-centre[1] - span, -centre[1] + span)
    ax.set_xlabel("x (m)")
    ax.set_ylabel("z depth (m)")
    ax.set_zlabel("-y up (m)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(paths[2], dpi=100)
    plt.close(fig)
    return paths


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[demo] %(message)s")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=15.0, help="clip length played")
    ap.add_argument("--rate", type=float, default=10.0, help="camera rate (Hz)")
    ap.add_argument("--width", type=int, default=320, help="frame width (0 = native)")
    ap.add_argument("--source", default="auto",
                    help="auto (vtest.avi, else bundled photos, else synthetic) | synthetic | "
                         "bundled | a video file | an image folder")
    ap.add_argument("--model", type=Path, default=None, help="checkpoint (default: models/)")
    ap.add_argument("--backend", default="auto",
                    help="auto | sparse-cpu | torch | onnxruntime | openvino | tensorrt")
    ap.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                    help="a pose_node parameter (repeatable), e.g. input_size:=224; the node "
                         "checks it as it does on any command line")
    ap.add_argument("--peer", action="store_true",
                    help="afterwards, time MediaPipe BlazePose (video mode, its own venv) on "
                         "the same frames: the p50 the node's latency is compared with")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "demo")
    args = ap.parse_args(argv)
    if args.seconds <= 0 or args.rate <= 0:
        ap.error("--seconds and --rate must be > 0")
    try:
        node_params = parse_node_params(args.param)
    except ValueError as exc:
        ap.error(str(exc))
    model = args.model or default_model()
    if model is None or not model.is_file():
        LOG.error("no checkpoint in %s: run `./run train` (or pass --model); see "
                  "models/MODEL_CARD.md", ROOT / "models")
        return 2
    source = default_source() if args.source == "auto" else args.source
    LOG.info("model %s, source %s, %.0f s at %.0f Hz", model, source, args.seconds, args.rate)
    try:
        raw = run_pipeline(args.out, model, source, args.seconds, args.rate, args.width,
                           args.backend, node_params=node_params)
    except RuntimeError as exc:
        LOG.error("%s", exc)
        return 1
    summary = summarise(raw, model, source, args.seconds)
    summary["node_parameters"] = node_params
    summary["node_cpu"] = raw.get("node_cpu")
    if args.peer:
        try:
            peer = peer_on_clip(source, args.width, summary["frames_published"], args.out,
                                args.rate)
        except (PeerError, SourceError, ValueError) as exc:
            LOG.warning("BlazePose not timed: %s", exc)
            peer = {"skipped": str(exc)}
        summary["peer_blazepose_video"] = peer
        if "latency_ms" in peer:
            LOG.info("BlazePose video mode on the same %d frames at %g Hz: p50 %s ms (back to "
                     "back %s ms; node image -> /pose3d: %s ms)", peer["frames"], args.rate,
                     peer["latency_ms"]["p50"], peer["latency_ms_back_to_back"]["p50"],
                     summary["latency_image_to_pose3d_ms"]["p50"])
    trained = "trained" if summary["model_trained"] else "UNTRAINED checkpoint"
    pictures = write_pictures(args.out, f"{Path(model).name} ({trained})")
    summary["pictures"] = [str(p) for p in pictures]
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    LOG.info("frames published %s, received by pose_node %s (lost in transport %s), processed "
             "%s, skipped while busy %s, invalid %s; latency p50 %s ms",
             summary["frames_published"], summary["frames_received"],
             summary["frames_lost_in_transport"], summary["frames_processed"],
             summary["frames_skipped_busy"], summary["frames_invalid"],
             summary["latency_image_to_pose3d_ms"]["p50"])
    if summary["frames_lost_in_transport"]:
        LOG.warning("%s frames never reached pose_node; /diagnostics warned %d times: %s",
                    summary["frames_lost_in_transport"], summary["transport_warnings"],
                    summary["transport_warning_message"] or "(no warning: loss under 40 %)")
    if not summary["model_trained"]:
        LOG.warning("the checkpoint has no training record: the skeletons are not meaningful")
    LOG.info("summary: %s", args.out / "summary.json")
    for p in pictures:
        LOG.info("picture: %s", p)
    if len(pictures) < 3:
        LOG.warning("no frame with a person (mean confidence >= confidence_threshold) was "
                    "recorded, so there is no skeleton picture")
    return 0


if __name__ == "__main__":
    sys.exit(main())
