"""``time_interleaved``: every runtime gets its timed calls in alternating blocks over the same
stretch of time, settle calls untimed, and a slower callable reads slower."""

from __future__ import annotations

import time

import pytest

from sparse_pose_ros.benchmarks.timing import time_interleaved


def test_blocks_alternate_and_count_calls() -> None:
    log: list[str] = []
    fns = {"a": lambda: log.append("a"), "b": lambda: log.append("b")}
    res = time_interleaved(fns, reps=7, warmup=2, block=3, settle=1, gap_s=0.0)
    assert res["a"]["reps"] == res["b"]["reps"] == 7
    assert res["a"]["rounds"] == 3
    # warm-up, then rounds of (1 settle + up to 3 timed) per runtime, order reversed each round
    body = "".join(log[4:])
    assert log[:4] == ["a", "a", "b", "b"]
    assert body == "aaaa" + "bbbb" + "bbbb" + "aaaa" + "aa" + "bb"
    assert log.count("a") == 2 + 3 + 7


def test_samples_keep_each_timed_call_and_its_answer() -> None:
    count = {"a": 0}

    def a() -> int:
        count["a"] += 1
        return count["a"]

    samples: dict[str, list[tuple[float, object]]] = {}
    res = time_interleaved({"a": a}, reps=5, warmup=1, block=2, settle=1, gap_s=0.0,
                           samples=samples)  # fmt: skip
    # call 1 warm-up; rounds: settle 2, timed 3 4; settle 5, timed 6 7; settle 8, timed 9
    assert [r for _, r in samples["a"]] == [3, 4, 6, 7, 9]
    assert all(ms >= 0 for ms, _ in samples["a"]) and res["a"]["reps"] == 5


def test_slower_callable_reads_slower() -> None:
    res = time_interleaved(
        {"fast": lambda: None, "slow": lambda: time.sleep(0.002)}, reps=6, warmup=0, block=3,
        settle=0, gap_s=0.001,
    )  # fmt: skip
    assert res["slow"]["median_ms"] >= 2.0 > res["fast"]["median_ms"]
    assert res["slow"]["min_ms"] <= res["slow"]["median_ms"] <= res["slow"]["p95_ms"]


@pytest.mark.parametrize("kw", [{"reps": 0}, {"block": 0}, {"settle": -1}, {"gap_s": -1.0}])
def test_bad_arguments(kw: dict[str, float]) -> None:
    args = {"reps": 3, "warmup": 0, "block": 2, "settle": 0, "gap_s": 0.0, **kw}
    with pytest.raises(ValueError):
        time_interleaved({"a": lambda: None}, **args)  # type: ignore[arg-type]
