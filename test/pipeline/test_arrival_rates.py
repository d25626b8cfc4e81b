"""ArrivalRates: the image vs camera_info comparison behind the transport-loss warning."""

from __future__ import annotations

import re

import pytest

from sparse_pose_ros.pipeline.stats import ArrivalRates


def _feed(rates: ArrivalRates, start: float, seconds: float, hz: float, keep_every: int) -> float:
    t, i = start, 0
    while t < start + seconds:
        rates.camera_info(t)
        if i % keep_every == 0:
            rates.image(t)
        t += 1.0 / hz
        i += 1
    return t


def test_no_verdict_without_enough_camera_info():
    r = ArrivalRates(window_s=3.0, min_infos=4)
    for t in (0.0, 0.1, 0.2):
        r.camera_info(t)
    assert r.summary(0.3)["image_to_camera_info_ratio"] is None
    assert r.loss_warning(0.3) is None  # three infos and no image: too little to judge


def test_every_image_arriving_is_quiet_and_rates_match():
    r = ArrivalRates(window_s=3.0)
    end = _feed(r, 0.0, 5.0, 30.0, keep_every=1)
    s = r.summary(end)
    assert s["image_to_camera_info_ratio"] == 1.0
    assert s["image_rate_hz"] == pytest.approx(30.0, rel=0.05)
    assert r.loss_warning(end) is None


@pytest.mark.parametrize("keep_every", [2, 20])
def test_loss_of_half_or_more_warns_with_numbers(keep_every):
    r = ArrivalRates(window_s=3.0)
    end = _feed(r, 0.0, 4.0, 30.0, keep_every=keep_every)
    msg = r.loss_warning(end)
    assert msg is not None and "camera_info at 30.0 Hz" in msg
    assert abs(_lost_percent(msg) - (100 - 100 / keep_every)) <= 3, msg


def _lost_percent(msg: str) -> float:
    found = re.search(r"about (\d+) % of camera frames are lost", msg)
    assert found, msg
    return float(found.group(1))


def test_loss_that_stops_clears_after_one_window():
    r = ArrivalRates(window_s=3.0)
    end = _feed(r, 0.0, 4.0, 30.0, keep_every=2)
    assert r.loss_warning(end) is not None
    end = _feed(r, end, 3.2, 30.0, keep_every=1)
    assert r.loss_warning(end) is None


def test_images_stopping_entirely_warns():
    r = ArrivalRates(window_s=3.0)
    end = _feed(r, 0.0, 4.0, 30.0, keep_every=1)
    end = _feed(r, end, 3.5, 30.0, keep_every=10**9)  # only the first of these has an image
    assert _lost_percent(r.loss_warning(end) or "") >= 95
