"""sensor_msgs/Image field codec: round trips, padding, endianness, and every rejection reason."""

from __future__ import annotations

import numpy as np
import pytest

from sparse_pose_ros import image_codec as ic

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("encoding", "pixels", "expected_rgb"),
    [
        ("rgb8", RGB, RGB),
        ("bgr8", RGB[:, :, ::-1].copy(), RGB),
        ("rgba8", np.dstack([RGB, np.full((5, 7), 9, np.uint8)]), RGB),
        ("bgra8", np.dstack([RGB[:, :, ::-1], np.full((5, 7), 9, np.uint8)]), RGB),
        ("mono8", RGB[:, :, 0].copy(), np.repeat(RGB[:, :, :1], 3, 2)),
    ],
)
def test_round_trip_to_rgb(encoding, pixels, expected_rgb):
    fields = ic.encode(pixels, encoding)
    np.testing.assert_array_equal(ic.decode(fields), pixels)
    np.testing.assert_array_equal(ic.decode_rgb8(fields), expected_rgb)


def test_mono16_endianness_and_stretch():
    px = np.array([[0, 1000], [2000, 4000]], np.uint16)
    little = ic.encode(px, "mono16")
    big = ic.ImageFields(2, 2, "mono16", 1, 4, px.astype(">u2").tobytes())
    np.testing.assert_array_equal(ic.decode(little), px)
    np.testing.assert_array_equal(ic.decode(big), px)
    rgb = ic.decode_rgb8(big)
    assert rgb.dtype == np.uint8 and rgb[1, 1, 0] == 255 and rgb[0, 0, 0] == 0
    assert rgb[0, 1, 0] == 63  # 1000 / 4000 * 255, truncated


def test_row_padding_is_skipped():
    step = 7 * 3 + 5
    padded = np.zeros((5, step), np.uint8)
    padded[:, :21] = RGB.reshape(5, 21)
    fields = ic.ImageFields(5, 7, "rgb8", 0, step, padded.tobytes())
    np.testing.assert_array_equal(ic.decode_rgb8(fields), RGB)
    # The last row may omit its padding.
    short_last = ic.ImageFields(5, 7, "rgb8", 0, step, padded.tobytes()[:-5])
    np.testing.assert_array_equal(ic.decode_rgb8(short_last), RGB)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (ic.ImageFields(5, 7, "yuv422_yuy2x", 0, 21, bytes(105)), "encoding"),
        (ic.ImageFields(5, 0, "rgb8", 0, 0, b""), "size"),
        (ic.ImageFields(0, 7, "rgb8", 0, 21, b""), "size"),
        (ic.ImageFields(16384, 16384, "rgb8", 0, 16384 * 3, bytes(100)), "size"),
        (ic.ImageFields(5000, 5000, "rgba8", 0, 5000 * 4 * 4, bytes(10)), "size"),
        (ic.ImageFields(5, 7, "rgb8", 0, 20, bytes(100)), "step"),
        (ic.ImageFields(5, 7, "mono16", 0, 15, bytes(75)), "step"),
        (ic.ImageFields(5, 7, "rgb8", 0, 21, bytes(104 - 21)), "data_length"),
    ],
)
def test_bad_messages_raise_with_reason(fields, reason):
    with pytest.raises(ic.ImageDecodeError) as err:
        ic.decode_rgb8(fields)
    assert err.value.reason == reason
    assert isinstance(err.value, ValueError)


def test_encode_rejects_mismatched_arrays():
    with pytest.raises(ValueError, match="uint16"):
        ic.encode(RGB[:, :, 0], "mono16")
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        ic.encode(RGB[:, :, :2].copy(), "rgb8")
    with pytest.raises(ValueError, match="unsupported"):
        ic.encode(RGB, "jpeg")


def test_accepts_array_module_buffers():
    """rclpy hands uint8[] fields over as array.array('B')."""
    import array

    f = ic.encode(RGB, "rgb8")
    arr = array.array("B", f.data)
    out = ic.decode_rgb8(ic.ImageFields(5, 7, "rgb8", 0, 21, arr))
    np.testing.assert_array_equal(out, RGB)
