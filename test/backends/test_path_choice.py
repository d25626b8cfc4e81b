"""PathChooser: the start-up calibration is only a prior; live timings decide, at bounded cost."""

from __future__ import annotations

import pytest

from sparse_pose_ros.backends.path_choice import (
    ALWAYS_SPARSE,
    DENSE,
    SPARSE,
    Calibration,
    PathChooser,
)

#: What one start under load measured: the dense path looked 10x faster than it is, so the
#: calibration said "dense always" (crossover 0).
NOISY_START = Calibration(dense_ms=0.5, f_lo=0.0, sparse_lo_ms=2.0, f_hi=1.0, sparse_hi_ms=9.0)


def _run(chooser: PathChooser, frames: int, fraction: float, sparse_ms, dense_ms) -> list[str]:
    paths = []
    for _ in range(frames):
        path = chooser.choose(fraction)
        chooser.observe(path, fraction, sparse_ms(fraction) if path == SPARSE else dense_ms)
        paths.append(path)
    return paths


def test_a_noisy_start_is_corrected_from_live_timings():
    chooser = PathChooser(NOISY_START, probe_every=30)
    assert chooser.crossover == 0.0  # the start-up verdict: dense always
    # Live: dense really takes 5 ms; sparse 2 + 7 f ms, so at f = 0.25 sparse (3.75 ms) wins.
    paths = _run(chooser, 150, 0.25, lambda f: 2.0 + 7.0 * f, 5.0)
    assert chooser.crossover == pytest.approx(3.0 / 7.0, abs=1e-6)  # where 2 + 7 f = 5
    assert paths[-60:].count(DENSE) <= 2  # only the probes of the dense path remain
    # It took the probes needed for min_samples live sparse timings, no more.
    first_sparse_run = next(i for i in range(len(paths) - 1)
                            if paths[i] == paths[i + 1] == SPARSE)
    assert first_sparse_run <= chooser.min_samples * chooser.probe_every
    s = chooser.summary()
    assert s["path_live"] is True and s["path_crossover_calibrated"] == 0.0


def test_sparse_slower_than_calibrated_moves_to_dense():
    chooser = PathChooser(Calibration(8.0, 0.0, 1.0, 1.0, 5.0), probe_every=10)
    assert chooser.crossover == 1.75  # calibration: sparse at every reachable fraction
    paths = _run(chooser, 100, 0.5, lambda f: 20.0 + 4.0 * f, 8.0)  # sparse 22 ms live
    assert chooser.crossover == 0.0
    assert paths[-30:].count(SPARSE) <= 3  # only the probes of the sparse path remain


def test_probe_cost_is_bounded():
    chooser = PathChooser(Calibration(5.0, 0.0, 1.0, 1.0, 9.0), probe_every=30)
    paths = _run(chooser, 300, 0.2, lambda f: 1.0 + 8.0 * f, 5.0)  # sparse 2.6 ms: stays
    assert paths.count(DENSE) <= 300 // 30
    assert chooser.probes == paths.count(DENSE)


def test_non_positive_calibration_slope_compares_medians():
    """A calibration whose sparse time *fell* with more work (noise): slope 0, and the start
    verdict compares the sparse time at f_lo with dense; live medians then decide."""
    cal = Calibration(dense_ms=4.0, f_lo=0.0, sparse_lo_ms=6.0, f_hi=1.0, sparse_hi_ms=3.0)
    assert cal.slope == 0.0 and cal.crossover() == 0.0
    chooser = PathChooser(cal, probe_every=5)
    _run(chooser, 60, 0.6, lambda f: 3.0, 4.0)
    assert chooser.crossover == ALWAYS_SPARSE  # live: sparse 3 < dense 4 ms at any fraction


def test_reset_forgets_live_timings():
    chooser = PathChooser(NOISY_START, probe_every=5)
    _run(chooser, 40, 0.25, lambda f: 2.0 + 7.0 * f, 5.0)
    chooser.reset(1.0)
    assert chooser.crossover == 1.0 and chooser.summary()["path_live"] is False


def test_a_fully_active_gated_model_runs_sparse_when_sparse_is_faster():
    """f slightly above 1 (mask units on top of the dense MACs) is not "beyond the crossover"
    when sparse wins at every fraction."""
    chooser = PathChooser(Calibration(8.0, 0.0, 1.0, 1.02, 5.0), probe_every=10)
    paths = _run(chooser, 40, 1.02, lambda f: 5.0, 8.0)
    assert paths[-10:].count(SPARSE) >= 9
