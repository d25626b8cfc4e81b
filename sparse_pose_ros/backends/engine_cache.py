"""TensorRT engine (plan) cache: key, on-disk layout, validation and rebuild.

Why a key of GPU + compute capability + TensorRT version + precision + plugin hash + ONNX hash
(+ workspace): a serialized plan is only valid for the exact GPU architecture, TensorRT
version and plugin binary it was built with, and stale or foreign engines are the most common
complaint about TensorRT-based ROS nodes. Every plan is stored next to a sidecar JSON that
records its key, size and checksum; loading checks all three and then asks the runtime to
deserialize it. A missing, corrupt or mismatched plan is logged and rebuilt; it never raises.
Only a failed *build* raises (:class:`EngineBuildError`), because then there is no engine to run.

This module knows nothing about TensorRT: the build and deserialize steps are callables, so the
cache logic is tested everywhere and the TensorRT specifics live in
:mod:`sparse_pose_ros.backends.tensorrt_backend`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

LOG = logging.getLogger(__name__)

CACHE_FORMAT = 1
PLAN_SUFFIX = ".plan"
SIDECAR_SUFFIX = ".json"
PRECISIONS = ("fp32", "fp16")

EngineT = TypeVar("EngineT")


class EngineBuildError(RuntimeError):
    """Building a plan failed, or a freshly built plan could not be deserialized."""


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized plan depends on.

    Attributes:
        gpu_name: device name as reported by the driver, e.g. "Orin" or "NVIDIA H100 PCIe".
        compute_capability: "major.minor", e.g. "8.7".
        tensorrt_version: ``tensorrt.__version__``, e.g. "10.3.0".
        precision: "fp32" or "fp16".
        plugin_sha256: sha256 of the plugin library, "none" when no plugin is loaded.
        onnx_sha256: sha256 of the ONNX file the plan is built from.
        workspace_bytes: builder workspace limit (it can change tactic choice).
    """

    gpu_name: str
    compute_capability: str
    tensorrt_version: str
    precision: str
    plugin_sha256: str
    onnx_sha256: str
    workspace_bytes: int

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not re.fullmatch(r"\d+\.\d+", self.compute_capability):
            raise ValueError(
                f"compute_capability must look like '8.7', got {self.compute_capability!r}"
            )
        for name in ("gpu_name", "tensorrt_version", "plugin_sha256", "onnx_sha256"):
            if not str(getattr(self, name)).strip():
                raise ValueError(f"{name} must not be empty")
        if int(self.workspace_bytes) <= 0:
            raise ValueError(f"workspace_bytes must be positive, got {self.workspace_bytes}")

    def as_dict(self) -> dict[str, str | int]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """Short stable hash of all fields (goes into the file name)."""
        canonical = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def file_stem(self, model_name: str) -> str:
        """Readable file stem: model, GPU, arch, TensorRT version, precision, digest."""
        sm = self.compute_capability.replace(".", "")
        parts = (
            _slug(model_name),
            _slug(self.gpu_name),
            f"sm{sm}",
            f"trt{_slug(self.tensorrt_version)}",
            self.precision,
            self.digest(),
        )
        return "_".join(parts)

    def differences(self, recorded: dict[str, object]) -> list[str]:
        """Human-readable list of fields where ``recorded`` differs from this key."""
        mine = self.as_dict()
        return [
            f"{k}: cached {recorded.get(k)!r} != wanted {v!r}"
            for k, v in mine.items()
            if recorded.get(k) != v
        ]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(text)).strip("-").lower() or "x"


def sha256_file(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (plans and ONNX files can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            h.update(block)
    return h.hexdigest()


def default_cache_dir() -> Path:
    """$SPARSE_POSE_ROS_ENGINE_CACHE, else $XDG_CACHE_HOME (or ~/.cache)/sparse_pose_ros/engines."""
    explicit = os.environ.get("SPARSE_POSE_ROS_ENGINE_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "sparse_pose_ros" / "engines"


def plan_path_for(key: EngineKey, model_name: str, cache_dir: str | os.PathLike[str]) -> Path:
    """Where the cache keeps the plan of ``key`` (the key digest is part of the name)."""
    return Path(cache_dir) / f"{key.file_stem(model_name)}{PLAN_SUFFIX}"


def sidecar_path(plan_path: str | os.PathLike[str]) -> Path:
    """``engine.plan`` -> ``engine.plan.json``."""
    p = Path(plan_path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def read_valid_plan(plan_path: Path, key: EngineKey) -> tuple[bytes | None, str]:
    """(plan bytes, "") when the stored plan matches ``key`` byte for byte, else (None, reason)."""
    if not plan_path.is_file():
        return None, f"no cached plan at {plan_path}"
    meta_path = sidecar_path(plan_path)
    if not meta_path.is_file():
        return None, f"sidecar {meta_path.name} is missing (plan of unknown origin)"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"sidecar {meta_path.name} is unreadable: {exc}"
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        return None, f"sidecar {meta_path.name} has an unknown format"
    recorded_key = meta.get("key")
    if not isinstance(recorded_key, dict):
        return None, f"sidecar {meta_path.name} has no key"
    diff = key.differences(recorded_key)
    if diff:
        return None, "key mismatch: " + "; ".join(diff)
    try:
        plan = plan_path.read_bytes()
    except OSError as exc:
        return None, f"plan unreadable: {exc}"
    if len(plan) != meta.get("plan_bytes"):
        return None, f"plan has {len(plan)} bytes, sidecar recorded {meta.get('plan_bytes')}"
    if hashlib.sha256(plan).hexdigest() != meta.get("plan_sha256"):
        return None, "plan checksum does not match the sidecar (corrupt file)"
    return plan, ""


def write_plan(plan_path: Path, plan: bytes, key: EngineKey) -> None:
    """Store plan + sidecar atomically (temp file + rename; sidecar last, so a crash in between
    leaves a plan without sidecar, which the next load rejects and rebuilds).

    Raises:
        OSError: the directory cannot be created or written.
    """
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": CACHE_FORMAT,
        "key": key.as_dict(),
        "key_digest": key.digest(),
        "plan_bytes": len(plan),
        "plan_sha256": hashlib.sha256(plan).hexdigest(),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _atomic_write(plan_path, plan)
    _atomic_write(sidecar_path(plan_path), (json.dumps(meta, indent=2) + "\n").encode())


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class CachedEngine(Generic[EngineT]):
    """Result of :func:`load_or_build`.

    Attributes:
        engine: what the deserializer returned.
        plan_path: where the plan is (or would be, when writing failed) cached.
        built: True when the plan was built by this call.
        reason: "cache hit", or why the plan was (re)built.
    """

    engine: EngineT
    plan_path: Path
    built: bool
    reason: str


def _try_deserialize(
    deserialize: Callable[[bytes], EngineT | None], plan: bytes
) -> tuple[EngineT | None, str]:
    try:
        engine = deserialize(plan)
    except Exception as exc:  # a runtime may raise on garbage; a cache must not
        return None, f"deserialization raised {type(exc).__name__}: {exc}"
    return (engine, "") if engine is not None else (None, "the runtime could not deserialize it")


def load_or_build(
    key: EngineKey,
    plan_path: str | os.PathLike[str],
    build: Callable[[], bytes],
    deserialize: Callable[[bytes], EngineT | None],
    force_rebuild: bool = False,
    accept_plan_without_sidecar: bool = False,
) -> CachedEngine[EngineT]:
    """Load the cached plan for ``key`` or build, store and load a new one.

    Args:
        key: what the plan must have been built for.
        plan_path: plan file (from :func:`plan_path_for`, or a user's ``engine_file_path``).
        build: returns a serialized plan; may raise.
        deserialize: turns plan bytes into an engine; returns None (or raises) when it cannot.
        force_rebuild: ``force_engine_update``: ignore whatever is cached.
        accept_plan_without_sidecar: a plan without sidecar (e.g. built by trtexec at a user-given
            ``engine_file_path``) is used if it deserializes, instead of being replaced. Its key
            cannot be checked, which is logged.

    Raises:
        EngineBuildError: building failed or the fresh plan does not deserialize.
    """
    path = Path(plan_path)
    if force_rebuild:
        reason = "force_engine_update is set"
    else:
        plan, reason = read_valid_plan(path, key)
        if plan is None and accept_plan_without_sidecar and path.is_file():
            if not sidecar_path(path).exists():
                try:
                    plan = path.read_bytes()
                except OSError as exc:
                    reason = f"plan unreadable: {exc}"
                else:
                    LOG.warning(
                        "engine %s has no sidecar: using it without checking that it matches %s",
                        path,
                        key.as_dict(),
                    )
        if plan is not None:
            engine, why = _try_deserialize(deserialize, plan)
            if engine is not None:
                LOG.info("engine cache hit: %s", path)
                return CachedEngine(engine, path, built=False, reason="cache hit")
            reason = f"cached plan unusable: {why}"
        if path.exists():
            LOG.warning("engine %s rejected (%s); rebuilding", path, reason)
    LOG.info("building TensorRT engine %s (%s); this can take minutes", path, reason)
    started = time.monotonic()
    try:
        plan = build()
    except EngineBuildError:
        raise
    except Exception as exc:
        raise EngineBuildError(f"building {path.name} failed: {exc}") from exc
    if not plan:
        raise EngineBuildError(f"building {path.name} returned an empty plan")
    plan = bytes(plan)
    engine, why = _try_deserialize(deserialize, plan)
    if engine is None:
        raise EngineBuildError(f"freshly built plan for {path.name} is unusable: {why}")
    try:
        write_plan(path, plan, key)
    except OSError as exc:
        LOG.warning("could not store engine %s (%s); using it from memory only", path, exc)
    LOG.info("engine %s built in %.1f s", path, time.monotonic() - started)
    return CachedEngine(engine, path, built=True, reason=reason)
