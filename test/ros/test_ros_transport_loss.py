"""Loss before the node is visible: /diagnostics compares the image arrival rate with the
camera_info rate and warns (with the fix) when images go missing — a 50 % loss within 5 s."""

from __future__ import annotations

import time

import numpy as np
from sensor_msgs.msg import CameraInfo, Image

W, H, RATE_HZ = 80, 60, 30.0
WARN = b"\x01"


class Camera:
    """A camera driver's pair of topics at RATE_HZ; with ``lose_every_other`` the image of
    every other frame is withheld (a transport that loses images but not the small
    camera_info)."""

    def __init__(self, listener) -> None:
        self.listener = listener
        self.tick = 0
        self.next_s = time.monotonic()
        self.lose_every_other = False
        self.data = np.random.default_rng(0).integers(0, 255, W * H * 3, np.uint8).tobytes()

    def step(self) -> None:
        now = time.monotonic()
        if now < self.next_s:
            return
        self.next_s = max(self.next_s + 1.0 / RATE_HZ, now - 0.1)
        self.tick += 1
        stamp = self.listener.node.get_clock().now().to_msg()
        info = CameraInfo(width=W, height=H, k=[70.0, 0, W / 2, 0, 70.0, H / 2, 0, 0, 1])
        info.header.stamp = stamp
        self.listener.info_pub.publish(info)
        if self.lose_every_other and self.tick % 2:
            return
        img = Image(width=W, height=H, encoding="rgb8", step=3 * W, data=self.data)
        img.header.stamp = stamp
        self.listener.image_pub.publish(img)


def test_half_the_images_lost_is_flagged_within_5_s(tiny_model, namespace, listener, start_node,
                                                    ready):
    node = start_node("pose_node", namespace, model_file_path=tiny_model, backend="torch",
                      diagnostics_period_sec=0.5)
    ready(listener, node)
    cam = Camera(listener)

    # Control: every image arrives -> rates agree, no transport warning.
    assert listener.spin_until(lambda: listener.diag().get("transport") == "ok", 15.0,
                               step=cam.step), listener.diag()
    listener.spin_until(lambda: False, 3.5, step=cam.step)  # a full window of healthy frames
    status = listener.diagnostics[-1]
    assert listener.diag()["transport"] == "ok", listener.diag()
    assert "lost" not in status.message
    assert float(listener.diag()["image_rate_hz"]) > 0.8 * float(
        listener.diag()["camera_info_rate_hz"])

    cam.lose_every_other = True
    t0 = time.monotonic()
    flagged = listener.spin_until(
        lambda: listener.diag().get("transport") == "images missing", 10.0, step=cam.step)
    delay = time.monotonic() - t0
    assert flagged, listener.diag()
    assert delay <= 5.0, f"flagged after {delay:.1f} s"
    status = listener.diagnostics[-1]
    assert status.level == WARN
    assert "lost before this node" in status.message
    assert "FASTDDS_DEFAULT_PROFILES_FILE" in status.message  # the pointer to the fix
    values = listener.diag()
    ratio = float(values["image_rate_hz"]) / float(values["camera_info_rate_hz"])
    assert 0.3 < ratio < 0.7, values
    assert node.alive(), node.output()
