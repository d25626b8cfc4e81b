"""One side of the transport benchmark (``benchmarks.transport``), as its own process.

``--role pub`` publishes ``--frames`` rgb8 frames at ``--rate`` on a fixed schedule (a late frame
is sent at once, never skipped), each stamped with the wall clock just before ``publish``;
``--role sub`` subscribes with pose_node's image QoS (``ros.qos``) and records each frame's
sequence number and stamp-to-callback latency until SIGINT. Both sample their resident memory
once a second and print one JSON line of raw samples; statistics are the driver's job. rclpy is
imported here because only ``ros/`` may import it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from .qos import IMAGE_QOS


def rss_mb() -> float:
    """This process's resident set size in MiB (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


def publish(width: int, height: int, rate_hz: float, frames: int, topic: str) -> dict:
    """Wait for the subscriber, then publish the clip; returns due/sent times and RSS samples."""
    rclpy.init()
    node = rclpy.create_node("transport_probe_pub")
    pub = node.create_publisher(Image, topic, qos_profile_sensor_data)  # like camera drivers
    deadline = time.monotonic() + 30.0
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    matched = pub.get_subscription_count() > 0
    time.sleep(0.5)  # the reader's side of discovery
    msg = Image(width=width, height=height, encoding="rgb8", step=3 * width)
    msg.data = np.random.default_rng(0).integers(0, 255, 3 * width * height, np.uint8).tobytes()
    rss = [(time.monotonic(), rss_mb())]
    due_s, sent_s = [], []
    t0 = time.monotonic()
    next_rss = t0 + 1.0
    for i in range(frames):
        due = t0 + i / rate_hz
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
        msg.header.frame_id = str(i)
        t = time.time()
        msg.header.stamp.sec = int(t)
        msg.header.stamp.nanosec = int((t - int(t)) * 1e9)
        sent_s.append(time.monotonic())
        due_s.append(due)
        pub.publish(msg)
        if time.monotonic() >= next_rss:
            rss.append((time.monotonic(), rss_mb()))
            next_rss += 1.0
    rss.append((time.monotonic(), rss_mb()))
    # A camera keeps running after any one frame: destroying the writer at once can discard
    # the last sample before the reader has taken it, which is not the loss measured here.
    time.sleep(0.5)
    node.destroy_node()
    rclpy.shutdown()
    return {"published": frames, "matched": matched, "due": due_s, "sent": sent_s, "rss": rss}


def subscribe(topic: str, ready_file: str) -> dict:
    """Record every frame until SIGINT; ``ready_file`` is touched once subscribed."""
    rclpy.init()
    node = rclpy.create_node("transport_probe_sub")
    seqs: list[int] = []
    latencies: list[float] = []
    t_first: list[float] = []

    def on_image(msg: Image) -> None:
        now = time.time()
        if not t_first:
            t_first.append(time.monotonic())
        seqs.append(int(msg.header.frame_id))
        latencies.append((now - msg.header.stamp.sec - msg.header.stamp.nanosec * 1e-9) * 1e3)

    rss = [(time.monotonic(), rss_mb())]
    node.create_subscription(Image, topic, on_image, IMAGE_QOS)
    node.create_timer(1.0, lambda: rss.append((time.monotonic(), rss_mb())))
    # spin() keeps one wait set; a spin_once() loop rebuilds it per call and adds its own
    # milliseconds of jitter to every latency sample.
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    Path(ready_file).touch()
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    rss.append((time.monotonic(), rss_mb()))
    return {"seqs": seqs, "latencies_ms": latencies, "rss": rss,
            "t_first": t_first[0] if t_first else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--role", choices=["pub", "sub"], required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--ready", default="", help="sub: file touched once subscribed")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--frames", type=int, default=90)
    a = ap.parse_args(argv)
    result = (publish(a.width, a.height, a.rate, a.frames, a.topic) if a.role == "pub"
              else subscribe(a.topic, a.ready))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
