"""camera_replay -> pose_node -> this test's subscriber, three processes over real DDS."""

from __future__ import annotations

from visualization_msgs.msg import Marker

from sparse_pose_ros import skeleton


def _stamp(msg) -> tuple[int, int]:
    return (msg.header.stamp.sec, msg.header.stamp.nanosec)


def test_replay_to_pose_node_outputs_are_consistent(
    tiny_model, image_folder, namespace, listener, start_node, ready
):
    node = start_node("pose_node", namespace, model_file_path=tiny_model, backend="torch",
                      confidence_threshold=0.0, diagnostics_period_sec=0.2, num_threads=1)
    ready(listener, node)
    start_node("camera_replay", namespace, source=image_folder, rate_hz=15.0, loop=True)
    lst = listener

    def common() -> set[tuple[int, int]]:
        """Stamps seen on the image and on all three outputs."""
        return ({_stamp(m) for m in lst.images} & {_stamp(p) for p in lst.poses}
                & {_stamp(m.markers[0]) for m in lst.markers} & {_stamp(m) for m in lst.masks})

    assert lst.spin_until(lambda: bool(common()) and lst.counter("frames_processed") >= 3,
                          timeout=60.0), node.output()
    assert node.alive()

    images = {_stamp(m): m for m in lst.images}
    stamp = max(common())
    pose = next(p for p in lst.poses if _stamp(p) == stamp)
    image = images[_stamp(pose)]
    assert pose.header.frame_id == image.header.frame_id == "camera_optical_frame"
    assert len(pose.poses) == skeleton.NUM_JOINTS  # threshold 0: a person is always "found"
    assert all(p.position.z > 0 for p in pose.poses)  # in front of the camera, metres

    markers = next(m for m in reversed(lst.markers) if _stamp(m.markers[0]) == _stamp(pose))
    kinds = [m.type if m.action == Marker.ADD else "deleteall" for m in markers.markers]
    assert kinds == ["deleteall", Marker.SPHERE_LIST, Marker.LINE_LIST]
    for m in markers.markers:
        assert m.header.frame_id == pose.header.frame_id
    assert len(markers.markers[1].points) == skeleton.NUM_JOINTS
    assert len(markers.markers[2].points) == 2 * skeleton.NUM_BONES

    mask = next(m for m in reversed(lst.masks) if _stamp(m) == _stamp(pose))
    assert (mask.encoding, mask.width, mask.height) == ("mono8", image.width, image.height)
    assert mask.header.frame_id == image.header.frame_id

    diag = lst.diag()
    assert diag["backend"] == "torch"
    assert diag["model_state"] == "ready"
    assert diag["num_threads"] == "1"  # passed to the backend (torch intra-op threads)
    assert diag["intrinsics"] == "camera_info"
    assert diag["torso"] == "as trained"  # this checkpoint has no midpoint_torso
    assert diag["person_choice"] == "heatmaps"  # nor MoveNet's heads (person_prior)
    assert diag["smoothing"] == "3 Hz, beta 1"  # the published joints went through it
    assert int(diag["frames_invalid"]) == 0
    assert float(diag["latency_p50_ms"]) > 0.0
    # where it went: the estimator and its network inside the latency, queue and publish beside
    assert 0.0 < float(diag["network_p50_ms"]) <= float(diag["estimate_p50_ms"])
    assert float(diag["estimate_p50_ms"]) <= float(diag["latency_p50_ms"])
    assert float(diag["queue_p50_ms"]) >= 0.0 and float(diag["publish_p50_ms"]) >= 0.0
    assert 0.0 < float(diag["mean_density"]) <= 1.05
    assert lst.diagnostics[-1].level == b"\x01"  # WARN: the checkpoint has no training record


def test_latency_budget_moves_the_mask_threshold(
    tiny_model, image_folder, namespace, listener, start_node, ready
):
    """An unreachable budget drives the active threshold to its upper bound (0.8), reported on
    /diagnostics; the configured mask_threshold stays as the user set it. Stills mode
    (region_from_pose off): the masks decide every frame, so the threshold acts."""
    node = start_node("pose_node", namespace, model_file_path=tiny_model, backend="torch",
                      target_latency_ms=0.01, mask_threshold=0.5, diagnostics_period_sec=0.2,
                      region_from_pose=False)
    ready(listener, node)
    start_node("camera_replay", namespace, source=image_folder, rate_hz=15.0, loop=True)
    lst = listener

    def at_bound() -> bool:
        return float(lst.diag().get("mask_threshold_active", 0.0)) >= 0.8 - 1e-6

    assert lst.spin_until(at_bound, timeout=60.0), node.output()
    diag = lst.diag()
    assert diag["latency_budget"] == "adapting"
    assert float(diag["mask_threshold"]) == 0.5
    assert float(diag["target_latency_ms"]) == 0.01
    assert node.alive()


def test_latency_budget_holds_still_while_a_region_decides(
    tiny_model, image_folder, namespace, listener, start_node, ready
):
    """Confidence 0: every frame finds a person, so every frame after the first runs the
    previous pose's region (the first: every cell, dense_until_found); the mask threshold would
    change nothing there, and the loop holds it where it started instead of winding it to a
    bound, saying why on /diagnostics."""
    node = start_node("pose_node", namespace, model_file_path=tiny_model, backend="torch",
                      target_latency_ms=0.01, mask_threshold=0.5, confidence_threshold=0.0,
                      diagnostics_period_sec=0.2)
    ready(listener, node)
    start_node("camera_replay", namespace, source=image_folder, rate_hz=15.0, loop=True)
    lst = listener
    ours: dict[str, str] = {}

    def six_frames_of_ours() -> bool:
        """The module's earlier pose_nodes share the namespace: pick this one's statuses."""
        d = lst.diag()
        settings = (float(d.get("confidence_threshold", -1)), float(d.get("target_latency_ms", -1)))
        if settings != (0.0, 0.01):
            return False
        ours.clear()
        ours.update(d)
        return int(d.get("frames_processed", "0")) >= 6

    assert lst.spin_until(six_frames_of_ours, timeout=60.0), node.output()
    assert ours["latency_budget"].startswith("inactive: the frame ran a region"), ours
    assert float(ours["mask_threshold_active"]) == 0.5
    assert int(ours["persons_found"]) >= 6
    assert node.alive()
