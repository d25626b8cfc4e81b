"""Camera-sized images between two processes on this machine: how many arrive, how late, and
whether memory grows (``python -m sparse_pose_ros.benchmarks.transport soak``).

Why a benchmark of the middleware in a pose package: with Fast DDS' defaults most camera-sized
best-effort frames never reach the node (``config/fastdds_large_shm.xml``), and nothing in the
node can repair that. This measures what the shipped profile delivers, with the publisher and the
subscriber in separate processes exactly as a camera driver and ``pose_node`` are:

- the publisher sends ``rgb8`` frames of a fixed size on a fixed schedule (no skipping when
  late), stamped with the wall clock just before ``publish``;
- the subscriber uses ``pose_node``'s image QoS (best effort, depth 3, ``ros.qos``) and records
  each frame's sequence number and stamp-to-callback latency (same machine, same clock);
- both sample their own resident memory once a second.

Both roles run as child processes (``ros.transport_probe``: rclpy lives under ``ros/`` only) on a
private ``ROS_DOMAIN_ID`` with localhost discovery, each with the same
``FASTDDS_DEFAULT_PROFILES_FILE`` (none = Fast DDS defaults); they report raw samples and this
module turns them into statistics. Linux only (/proc for memory and mapped segments).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Resident memory is compared from this many seconds after the first frame (allocator pools,
#: DDS history and Python caches settle in the first seconds) to the end of the run.
RSS_REFERENCE_S = 10.0


def fastdds_segment_sizes(pid: int | str = "self") -> list[int]:
    """Sizes (bytes) of the Fast DDS shared-memory data segments a process has mapped.

    A participant maps its own segment (``segment_size`` of its profile) and, once it receives
    over shared memory, its peers'; the ``fastdds_port*`` files are the small descriptor rings.
    This is how a test tells that a profile really reached a process's participant.
    """
    sizes: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split()
        if len(parts) < 6 or not parts[5].startswith("/dev/shm/fastdds_"):
            continue
        if parts[5].startswith("/dev/shm/fastdds_port"):
            continue
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        sizes[parts[5]] = sizes.get(parts[5], 0) + hi - lo
    return sorted(sizes.values())


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    a = np.asarray(values, dtype=np.float64)
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def _rss_growth(samples: list[tuple[float, float]], t_first: float | None) -> dict[str, Any]:
    """(reference, end, growth fraction) of (time, MiB) samples; the reference is the first
    sample RSS_REFERENCE_S after the first frame (or the first sample of a shorter run)."""
    if not samples:
        return {"reference_mb": None, "end_mb": None, "growth": None}
    after = [s for s in samples if t_first is not None and s[0] >= t_first + RSS_REFERENCE_S]
    ref = after[0] if after else samples[0]
    end = samples[-1]
    return {"reference_mb": ref[1], "reference_at_s": ref[0] - samples[0][0], "end_mb": end[1],
            "growth": (end[1] - ref[1]) / ref[1], "samples": len(samples)}


# ---------------------------------------------------------------------------- driver
def run_transport(
    width: int, height: int, rate_hz: float, seconds: float, profile: str | Path | None,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Publish ``seconds`` × ``rate_hz`` frames of ``width`` × ``height`` rgb8 from one process
    to another and report what arrived.

    Args:
        profile: Fast DDS XML given to both processes; None or "" = Fast DDS defaults.
        timeout_s: wall-clock bound of the whole run (default: seconds + 60).
    """
    frames = max(1, int(round(seconds * rate_hz)))
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(random.randint(101, 200))  # private: never another test's
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    for name in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE"):
        env.pop(name, None)
    if profile:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    topic = f"transport_bench_{os.getpid()}_{random.randint(0, 10**6)}"
    limit = seconds + 60.0 if timeout_s is None else timeout_s
    me = [sys.executable, "-m", "sparse_pose_ros.ros.transport_probe"]
    ready = Path(f"/tmp/{topic}.ready")
    ready.unlink(missing_ok=True)
    sub = subprocess.Popen(me + ["--role", "sub", "--topic", topic, "--ready", str(ready)],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pub = None
    try:
        t0 = time.monotonic()
        while not ready.exists():
            if sub.poll() is not None or time.monotonic() - t0 > 30.0:
                raise RuntimeError(f"subscriber did not start: {sub.communicate()[1][-2000:]}")
            time.sleep(0.05)
        pub = subprocess.Popen(
            me + ["--role", "pub", "--topic", topic, "--width", str(width), "--height",
                  str(height), "--rate", str(rate_hz), "--frames", str(frames)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        pub_out, pub_err = pub.communicate(timeout=limit)
        if pub.returncode != 0:
            raise RuntimeError(f"publisher failed ({pub.returncode}): {pub_err[-2000:]}")
        time.sleep(1.0)  # the last frames in flight
        sub.send_signal(signal.SIGINT)
        sub_out, sub_err = sub.communicate(timeout=30.0)
        if sub.returncode != 0:
            raise RuntimeError(f"subscriber failed ({sub.returncode}): {sub_err[-2000:]}")
    finally:
        ready.unlink(missing_ok=True)
        for p in (pub, sub):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    p_res = json.loads(pub_out.strip().splitlines()[-1])
    s_res = json.loads(sub_out.strip().splitlines()[-1])
    lat = _percentiles(s_res["latencies_ms"])
    unique = set(s_res["seqs"])
    s_res["received"] = len(unique)
    s_res["duplicates"] = len(s_res["seqs"]) - len(unique)
    late = sum(1 for due, sent in zip(p_res["due"], p_res["sent"], strict=True)
               if sent - due > 1.0 / rate_hz)
    return {
        "width": width, "height": height, "encoding": "rgb8", "rate_hz": rate_hz,
        "seconds": seconds, "frame_bytes": 3 * width * height,
        "profile": str(profile) if profile else None,
        "published": p_res["published"], "received": s_res["received"],
        "received_fraction": s_res["received"] / p_res["published"],
        "duplicates": s_res["duplicates"],
        "publisher_rate_hz_actual": ((frames - 1) / (p_res["sent"][-1] - p_res["sent"][0])
                                     if frames > 1 else 0.0),
        "publisher_late_frames": late,
        "latency_ms": lat,
        "p99_over_p50": (lat["p99"] / lat["p50"]) if lat["p50"] else None,
        "rss_mb": {"subscriber": _rss_growth(s_res["rss"], s_res["t_first"]),
                   "publisher": _rss_growth(p_res["rss"], p_res["sent"][0])},
    }


#: Targets of issue #18 for camera-sized frames at 30 Hz on one machine.
TARGET_RECEIVED = 0.99
TARGET_RSS_GROWTH = 0.10
TARGET_P99_OVER_P50 = 2.0


def soak(sizes: list[tuple[int, int]], seconds: float, rate_hz: float, profile: str | None,
         command: str) -> dict[str, Any]:
    """One :func:`run_transport` per size, with the targets checked and the machine recorded."""
    runs = []
    for w, h in sizes:
        r = run_transport(w, h, rate_hz, seconds, profile, timeout_s=2 * seconds + 60)
        growth = [r["rss_mb"][k]["growth"] for k in ("subscriber", "publisher")]
        r["targets"] = {
            f"received_fraction>={TARGET_RECEIVED}": r["received_fraction"] >= TARGET_RECEIVED,
            f"rss_growth<{TARGET_RSS_GROWTH}": all(g is not None and g < TARGET_RSS_GROWTH
                                                   for g in growth),
            f"p99<={TARGET_P99_OVER_P50}*p50": (r["p99_over_p50"] is not None
                                                and r["p99_over_p50"] <= TARGET_P99_OVER_P50),
        }
        runs.append(r)
        print(json.dumps({k: r[k] for k in ("width", "height", "published", "received",
                                             "latency_ms", "targets")}), flush=True)
    return {
        "benchmark": "transport soak: rgb8 frames, one publisher process -> one subscriber "
                     "process with pose_node's image QoS (ros.qos.IMAGE_QOS: best effort, depth 3)",
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": {"cpus": os.cpu_count(), "load_avg_1m_end": os.getloadavg()[0],
                    "kernel": os.uname().release, "python": sys.version.split()[0]},
        "rmw": os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp (default)"),
        "fastdds_builtin_transports": os.environ.get("FASTDDS_BUILTIN_TRANSPORTS"),
        "runs": runs,
        "all_targets_met": all(all(r["targets"].values()) for r in runs),
    }


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"size must be WxH, got {text!r}") from exc
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise argparse.ArgumentTypeError(f"size out of range: {text}")
    return w, h


def main(argv: list[str] | None = None) -> int:
    """``soak``: the targets of issue #18, written to a JSON result."""
    ap = argparse.ArgumentParser(prog="python -m sparse_pose_ros.benchmarks.transport",
                                 description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)  # room for more transport benchmarks
    s = sub.add_parser("soak", help="frames across processes: received fraction, latency, RSS")
    s.add_argument("--sizes", type=_size, nargs="+", default=[(640, 480), (1920, 1080)])
    s.add_argument("--seconds", type=float, default=120.0, help="publishing time per size")
    s.add_argument("--rate", type=float, default=30.0, help="frames per second")
    s.add_argument("--profile", default=None,
                   help="Fast DDS XML for both processes (default: the shipped "
                        "config/fastdds_large_shm.xml; '' = Fast DDS defaults)")
    s.add_argument("--out", type=Path, default=Path("results/transport_soak.json"))
    a = ap.parse_args(argv)
    if a.seconds <= 0 or a.rate <= 0:
        ap.error("--seconds and --rate must be > 0")
    from ..ros.middleware import profile_path

    profile = str(profile_path()) if a.profile is None else a.profile
    argv_used = sys.argv[1:] if argv is None else argv
    command = "python -m sparse_pose_ros.benchmarks.transport " + shlex.join(argv_used)
    result = soak(a.sizes, a.seconds, a.rate, profile or None, command)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({"json": str(a.out), "all_targets_met": result["all_targets_met"]}))
    return 0 if result["all_targets_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
