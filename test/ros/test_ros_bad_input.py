"""The bad-input catalogue against a live pose_node process: never a crash, a counter moves, and
the next good frame still yields a pose."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image

from sparse_pose_ros import skeleton

W, H = 80, 60
FRAME = "cam_optical"


def _image(listener, encoding="rgb8", width=W, height=H, step=None, data_len=None) -> Image:
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "mono16": 2}.get(
        encoding, 3)
    step = width * channels if step is None else step
    n = step * height if data_len is None else data_len
    msg = Image(width=width, height=height, encoding=encoding, step=step,
                data=np.random.default_rng(0).integers(0, 255, n, dtype=np.uint8).tobytes())
    msg.header.frame_id = FRAME
    msg.header.stamp = listener.node.get_clock().now().to_msg()
    return msg


def _info(listener, k) -> CameraInfo:
    msg = CameraInfo(width=W, height=H, k=[float(v) for v in k])
    msg.header.frame_id = FRAME
    msg.header.stamp = listener.node.get_clock().now().to_msg()
    return msg


GOOD_K = [100.0, 0.0, W / 2, 0.0, 100.0, H / 2, 0.0, 0.0, 1.0]


@pytest.fixture(scope="module")
def node(tiny_model, namespace, listener, start_node, ready):
    proc = start_node("pose_node", namespace, model_file_path=tiny_model, backend="torch",
                      confidence_threshold=0.0, diagnostics_period_sec=0.1)
    ready(listener, proc)
    return proc


def _send_until_counted(listener, make, publish, key: str) -> None:
    before = listener.counter(key)
    ok = listener.spin_until(lambda: listener.counter(key) > before, timeout=20.0,
                             step=lambda: publish(make()))
    assert ok, f"{key} did not move from {before}: {listener.diag()}"


def _good_frame_yields_pose(listener, encoding="rgb8") -> None:
    sent: set[tuple[int, int]] = set()

    def send() -> None:
        msg = _image(listener, encoding)
        sent.add((msg.header.stamp.sec, msg.header.stamp.nanosec))
        listener.image_pub.publish(msg)

    def got() -> bool:
        return any((p.header.stamp.sec, p.header.stamp.nanosec) in sent
                   and len(p.poses) == skeleton.NUM_JOINTS and p.header.frame_id == FRAME
                   for p in listener.poses)

    assert listener.spin_until(got, timeout=20.0, step=send), listener.diag()


BAD_IMAGES = {
    "unknown_encoding": (dict(encoding="yuv999"), "invalid_encoding"),
    "data_shorter_than_step_x_height": (dict(data_len=W * 3 * H // 2), "invalid_data_length"),
    "zero_width": (dict(width=0, step=0, data_len=0), "invalid_size"),
    "zero_height": (dict(height=0, data_len=0), "invalid_size"),
    "absurd_16384_header_short_data": (
        dict(width=16384, height=16384, step=16384 * 3, data_len=1000), "invalid_size"),
    "step_smaller_than_row": (dict(step=W * 3 - 5), "invalid_step"),
    "mono16_odd_step": (dict(encoding="mono16", step=W * 2 + 1), "invalid_step"),
}


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_bad_image_is_counted_and_next_frame_works(node, listener, case):
    kwargs, key = BAD_IMAGES[case]
    invalid_before = listener.counter("frames_invalid")
    _send_until_counted(listener, lambda: _image(listener, **kwargs),
                        listener.image_pub.publish, key)
    assert node.alive(), node.output()
    assert listener.counter("frames_invalid") > invalid_before
    _good_frame_yields_pose(listener)


BAD_K = {
    "nan": [math.nan] * 9,
    "zero": [0.0] * 9,
    "principal_point_far_away": [100.0, 0, 1e6, 0, 100.0, 1e6, 0, 0, 1],
    "principal_point_beyond_half_an_image": [100.0, 0, 1.8 * W, 0, 100.0, H / 2, 0, 0, 1],
    "fx_1e12": [1e12, 0, W / 2, 0, 1e12, H / 2, 0, 0, 1],
    "fx_negative": [-100.0, 0, W / 2, 0, 100.0, H / 2, 0, 0, 1],
}


@pytest.mark.parametrize("case", sorted(BAD_K))
def test_bad_intrinsics_fall_back_to_nominal_fov(node, listener, case):
    k = BAD_K[case]
    _send_until_counted(listener, lambda: _info(listener, k), listener.info_pub.publish,
                        "camera_info_invalid")
    _good_frame_yields_pose(listener)
    assert listener.spin_until(lambda: listener.diag().get("intrinsics") == "nominal_fov", 10.0)
    assert node.alive(), node.output()
    # A valid CameraInfo is used again at once.
    listener.info_pub.publish(_info(listener, GOOD_K))
    listener.spin_until(lambda: False, 0.3)
    _good_frame_yields_pose(listener)
    assert listener.spin_until(lambda: listener.diag().get("intrinsics") == "camera_info", 10.0)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16"])
def test_every_supported_encoding_yields_a_pose(node, listener, encoding):
    _good_frame_yields_pose(listener, encoding)


def test_throttled_logging_one_line_per_kind(node, listener):
    """A burst of the same bad input logs once per throttle period, while counting every one."""
    before_count = listener.counter("invalid_encoding")
    before_lines = node.output().count("unsupported encoding")
    for _ in range(6):
        _send_until_counted(listener, lambda: _image(listener, encoding="yuv999"),
                            listener.image_pub.publish, "invalid_encoding")
    assert listener.counter("invalid_encoding") >= before_count + 6
    assert node.output().count("unsupported encoding") - before_lines <= 2
