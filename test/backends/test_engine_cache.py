"""Engine cache: key, layout, validation and rebuild logic (no TensorRT needed).

The builder/deserializer are small callables that count calls and accept only plans they
produced, which is exactly the contract TensorRT's builder/runtime fulfil.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import pytest

from sparse_pose_ros.backends.engine_cache import (
    EngineBuildError,
    EngineKey,
    load_or_build,
    plan_path_for,
    read_valid_plan,
    sha256_file,
    sidecar_path,
)

KEY = EngineKey(
    gpu_name="Orin",
    compute_capability="8.7",
    tensorrt_version="10.3.0",
    precision="fp16",
    plugin_sha256="a" * 64,
    onnx_sha256="b" * 64,
    workspace_bytes=1 << 30,
)
MAGIC = b"PLAN"


class Runtime:
    """Builds plans tagged with the key digest and deserializes only intact ones."""

    def __init__(self, key: EngineKey = KEY) -> None:
        self.key = key
        self.builds = 0
        self.loads = 0

    def build(self) -> bytes:
        self.builds += 1
        body = f"{self.key.digest()}:{self.builds}".encode() * 50
        return MAGIC + hashlib.sha256(body).digest() + body

    def deserialize(self, plan: bytes) -> dict | None:
        self.loads += 1
        if not plan.startswith(MAGIC):
            return None
        digest, body = plan[4:36], plan[36:]
        if hashlib.sha256(body).digest() != digest:
            return None
        return {"plan": body.decode()}


def _load(path: Path, rt: Runtime, **kw: object):
    return load_or_build(KEY, path, rt.build, rt.deserialize, **kw)  # type: ignore[arg-type]


def test_key_digest_is_stable_and_covers_every_field() -> None:
    assert KEY.digest() == dataclasses.replace(KEY).digest()
    changed = {
        "gpu_name": "NVIDIA H100",
        "compute_capability": "9.0",
        "tensorrt_version": "10.4.0",
        "precision": "fp32",
        "plugin_sha256": "c" * 64,
        "onnx_sha256": "d" * 64,
        "workspace_bytes": 1 << 28,
    }
    assert set(changed) == {f.name for f in dataclasses.fields(EngineKey)}
    digests = {dataclasses.replace(KEY, **{k: v}).digest() for k, v in changed.items()}
    assert len(digests) == len(changed) and KEY.digest() not in digests


def test_plan_file_name_is_readable(tmp_path: Path) -> None:
    path = plan_path_for(KEY, "HEMlets Gated v1", tmp_path)
    assert path.parent == tmp_path
    assert path.name == f"hemlets-gated-v1_orin_sm87_trt10.3.0_fp16_{KEY.digest()}.plan"
    assert sidecar_path(path).name == path.name + ".json"


@pytest.mark.parametrize(
    "field,value",
    [
        ("precision", "int8"),
        ("compute_capability", "87"),
        ("gpu_name", " "),
        ("workspace_bytes", 0),
    ],
)
def test_invalid_key_fields_are_rejected(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(KEY, **{field: value})


def test_sha256_file(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # several read chunks
    f = tmp_path / "model.onnx"
    f.write_bytes(data)
    assert sha256_file(f, chunk_bytes=4096) == hashlib.sha256(data).hexdigest()


def test_build_once_then_cache_hit(tmp_path: Path) -> None:
    rt = Runtime()
    path = plan_path_for(KEY, "m", tmp_path)
    first = _load(path, rt)
    assert first.built and rt.builds == 1 and path.is_file()
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["key"] == KEY.as_dict() and meta["plan_bytes"] == path.stat().st_size
    second = _load(path, Runtime())
    assert not second.built and second.reason == "cache hit"
    assert second.engine == first.engine


def test_force_engine_update_rebuilds(tmp_path: Path) -> None:
    rt = Runtime()
    path = plan_path_for(KEY, "m", tmp_path)
    _load(path, rt)
    result = _load(path, rt, force_rebuild=True)
    assert result.built and rt.builds == 2 and "force_engine_update" in result.reason


def _corrupt_flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _corrupt_truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-10])


def _corrupt_sidecar(path: Path) -> None:
    sidecar_path(path).write_text("{not json")


def _remove_sidecar(path: Path) -> None:
    sidecar_path(path).unlink()


@pytest.mark.parametrize(
    "damage,reason",
    [
        (_corrupt_flip, "checksum"),
        (_corrupt_truncate, "bytes"),
        (_corrupt_sidecar, "unreadable"),
        (_remove_sidecar, "missing"),
    ],
)
def test_damaged_cache_is_logged_and_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage, reason: str
) -> None:
    rt = Runtime()
    path = plan_path_for(KEY, "m", tmp_path)
    _load(path, rt)
    damage(path)
    assert read_valid_plan(path, KEY)[0] is None
    with caplog.at_level(logging.WARNING):
        result = _load(path, rt)
    assert result.built and rt.builds == 2
    assert reason in result.reason
    assert any("rebuilding" in r.getMessage() for r in caplog.records)
    assert read_valid_plan(path, KEY)[0] is not None  # the cache is healthy again


def test_plan_the_runtime_rejects_is_rebuilt(tmp_path: Path) -> None:
    """Intact file + matching sidecar, but the runtime cannot load it (e.g. new driver)."""
    rt = Runtime()
    path = plan_path_for(KEY, "m", tmp_path)
    _load(path, rt)
    calls = {"n": 0}

    def picky(plan: bytes) -> dict | None:
        calls["n"] += 1
        return None if calls["n"] == 1 else rt.deserialize(plan)

    result = load_or_build(KEY, path, rt.build, picky)
    assert result.built and "could not deserialize" in result.reason


def test_deserializer_exception_does_not_escape(tmp_path: Path) -> None:
    rt = Runtime()
    path = plan_path_for(KEY, "m", tmp_path)
    _load(path, rt)
    calls = {"n": 0}

    def explodes_once(plan: bytes) -> dict | None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("Serialization assertion plan magic failed")
        return rt.deserialize(plan)

    result = load_or_build(KEY, path, rt.build, explodes_once)
    assert result.built and "RuntimeError" in result.reason


def test_key_mismatch_at_a_fixed_engine_path_rebuilds(tmp_path: Path) -> None:
    path = tmp_path / "engine.plan"  # user-given engine_file_path: no digest in the name
    _load(path, Runtime())
    newer = dataclasses.replace(KEY, tensorrt_version="10.4.0")
    rt = Runtime(newer)
    result = load_or_build(newer, path, rt.build, rt.deserialize)
    assert result.built and "tensorrt_version" in result.reason
    assert json.loads(sidecar_path(path).read_text())["key"]["tensorrt_version"] == "10.4.0"


def test_foreign_plan_without_sidecar_can_be_accepted(tmp_path: Path) -> None:
    rt = Runtime()
    path = tmp_path / "from_trtexec.plan"
    path.write_bytes(rt.build())
    result = _load(path, rt, accept_plan_without_sidecar=True)
    assert not result.built and rt.builds == 1
    garbage = tmp_path / "garbage.plan"
    garbage.write_bytes(b"\x00" * 64)
    result = _load(garbage, rt, accept_plan_without_sidecar=True)
    assert result.built and sidecar_path(garbage).is_file()


def test_build_failure_raises_engine_build_error(tmp_path: Path) -> None:
    def fails() -> bytes:
        raise RuntimeError("parser: plugin SparseInvertedResidual not found")

    with pytest.raises(EngineBuildError, match="plugin SparseInvertedResidual not found"):
        load_or_build(KEY, tmp_path / "e.plan", fails, Runtime().deserialize)
    with pytest.raises(EngineBuildError, match="empty plan"):
        load_or_build(KEY, tmp_path / "e.plan", lambda: b"", Runtime().deserialize)
    with pytest.raises(EngineBuildError, match="unusable"):
        load_or_build(KEY, tmp_path / "e.plan", lambda: b"junk", Runtime().deserialize)
    assert not (tmp_path / "e.plan").exists()


def test_unwritable_cache_still_returns_the_engine(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the cache directory should be")
    rt = Runtime()
    with caplog.at_level(logging.WARNING):
        result = _load(blocker / "engines" / "e.plan", rt)
    assert result.built and result.engine is not None
    assert any("could not store engine" in r.getMessage() for r in caplog.records)
