"""Real-frame sources of the teacher-labelled corpus: what each is, where from, its licence.

Real frames with people that may be used here (checked in /work/shared/DATA.md): demo videos inside
two PyPI wheels (``pose2sim``, ``sports2d``), the Debian package ``opencv-doc``, photos shipped with
scikit-image and matplotlib, and clips from two public GitHub repositories (sam2, mmhuman3d).
None has 3D ground truth; Pose2Sim's two trials are filmed by four calibrated synchronised
cameras, which lets :mod:`.triangulate` build real 3D labels from the teacher's 2D.

Frames are never committed. Each source says how a user obtains it:

* ``wheel``: ``pip download --no-deps NAME==VERSION -d <cache>/wheels`` (done by the builder at
  labelling time, never by the node) and only the listed members are unzipped;
* ``debian``: a file of an installed Debian package (the message names the package);
* ``python``: an image shipped with a Python package of the project venv;
* ``clip``: a file of a public repository; the user ``git clone``s it and passes the file or a
  folder holding it with ``--clips``. A missing clip is reported with the repository and path.

:data:`HELDOUT` names the sources never trained on (a whole video and one Pose2Sim trial); the
corpus manifest records it.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

LOG = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Default cache: wheels, unzipped members, clips. git-ignored (``data_cache/``).
DEFAULT_SOURCE_CACHE = REPO_ROOT / "data_cache" / "sources"
OPENCV_DOC_DATA = Path("/usr/share/doc/opencv-doc/examples/data")

KINDS = ("video", "stills", "multiview")
OBTAIN = ("wheel", "debian", "python", "clip")


class SourceMissing(RuntimeError):
    """A source's files are not here and cannot be obtained; the message says how to get them."""


@dataclass(frozen=True)
class Source:
    """One real-frame source.

    Attributes:
        id: stable id; also the label-cache folder name.
        kind: ``video`` (one clip), ``stills`` (photos) or ``multiview`` (synchronised clips of
            one scene, one per camera, plus a calibration file).
        obtain: ``wheel`` | ``debian`` | ``python`` | ``clip`` (see the module docstring).
        origin: the package (``pose2sim==0.10.49``, ``opencv-doc``, ``scikit-image``) or
            repository (``github.com/facebookresearch/sam2``) the files come from.
        members: paths inside the wheel / package / repository, one per video, view or photo.
            For ``python`` stills: the ids of :func:`..evaluation.real_frames.load_still`.
        views: multiview: camera names in the order of ``members`` (``cam01`` …).
        calibration: multiview: member path of the calibration file.
        licence: SPDX-like licence of the files, as recorded by their publisher.
        licence_note: where the licence is stated.
        frames: expected frame count per member (checked when labelling; informative).
        default_step: label every n-th frame unless the CLI says otherwise.
        teacher_mode: BlazePose ``static`` (detector on every labelled frame: labels depend on
            their own frame only) or ``video`` (every frame fed in order, the landmark model
            tracks its ROI, labels reported at the labelled frames): for small people the
            detector misses that tracking keeps.
        content: one line on what is in the frames.
    """

    id: str
    kind: str
    obtain: str
    origin: str
    members: tuple[str, ...]
    licence: str
    licence_note: str
    frames: tuple[int, ...]
    content: str
    default_step: int = 2
    teacher_mode: str = "static"
    views: tuple[str, ...] = ()
    calibration: str | None = None

    def __post_init__(self) -> None:
        if self.teacher_mode not in ("static", "video") or (
            self.teacher_mode == "video" and self.kind == "stills"
        ):
            raise ValueError(f"{self.id}: bad teacher_mode {self.teacher_mode!r}")
        if self.kind not in KINDS or self.obtain not in OBTAIN:
            raise ValueError(f"{self.id}: bad kind {self.kind!r} or obtain {self.obtain!r}")
        if len(self.frames) != len(self.members):
            raise ValueError(f"{self.id}: one frame count per member expected")
        multi_ok = len(self.views) == len(self.members) and bool(self.calibration)
        if self.kind == "multiview" and not multi_ok:
            raise ValueError(f"{self.id}: multiview needs a view name per member and a calibration")

    def record(self) -> dict[str, object]:
        """The manifest's record of this source (licence and provenance travel with the labels)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "obtain": self.obtain,
            "origin": self.origin,
            "members": list(self.members),
            "views": list(self.views),
            "calibration": self.calibration,
            "teacher_mode": self.teacher_mode,
            "licence": self.licence,
            "licence_note": self.licence_note,
            "content": self.content,
            "split": "heldout" if self.id in HELDOUT else "train",
        }


@dataclass
class ResolvedSource:
    """A source whose files are on disk: ``paths[i]`` is ``source.members[i]`` (stills of the
    ``python`` kind have no file: their paths are ``None``)."""

    source: Source
    paths: list[Path | None]
    calibration_path: Path | None = None
    notes: list[str] = field(default_factory=list)


POSE2SIM_WHEEL = "pose2sim==0.10.49"
SPORTS2D_WHEEL = "sports2d==0.8.34"
SAM2_REPO = "github.com/facebookresearch/sam2"
MMHUMAN3D_REPO = "github.com/open-mmlab/mmhuman3d"
_P2S_NOTE = "BSD-3-Clause: pose2sim-0.10.49.dist-info/licenses/LICENSE (David Pagnon)"
_S2D_NOTE = "BSD-3-Clause: sports2d-0.8.34.dist-info/licenses/LICENSE (David Pagnon)"
_CAMS = ("cam01", "cam02", "cam03", "cam04")


def _pose2sim(trial: str, content: str) -> Source:
    return Source(
        id=f"pose2sim_{trial.lower()}",
        kind="multiview",
        obtain="wheel",
        origin=POSE2SIM_WHEEL,
        members=tuple(f"Pose2Sim/Demo_{trial}/videos/{c}.mp4" for c in _CAMS),
        views=_CAMS,
        calibration=f"Pose2Sim/Demo_{trial}/calibration/Calib.qca.txt",
        licence="BSD-3-Clause",
        licence_note=_P2S_NOTE,
        frames=(100, 100, 100, 100),
        content=content,
        default_step=1,  # 100 frames per view; the only real 3D labels: take them all
    )


#: The default corpus, in labelling order.
DEFAULT_SOURCES: tuple[Source, ...] = (
    _pose2sim("SinglePerson", "lab, one person throwing/twisting, 4 calibrated synced views"),
    _pose2sim("MultiPerson", "lab, two people, 4 calibrated synced views (same rig), 60 fps"),
    Source(
        id="sports2d_demo", kind="video", obtain="wheel", origin=SPORTS2D_WHEEL,
        members=("Sports2D/Demo/demo.mp4",), licence="BSD-3-Clause", licence_note=_S2D_NOTE,
        frames=(230,),
        content=("park, two people ~350 px tall: a man on a roof who jumps down, a woman "
                 "walking; 1768x994, 30 fps"),
        teacher_mode="video",  # static mode found someone in 60 % of frames, video 97 %
    ),
    Source(
        id="opencv_vtest", kind="video", obtain="debian", origin="opencv-doc",
        members=("/usr/share/doc/opencv-doc/examples/data/vtest.avi",),
        licence="BSD-3-Clause", licence_note="OpenCV samples (Debian opencv-doc copyright file)",
        frames=(795,), content="several small walking pedestrians, 768x576, 10 fps",
        teacher_mode="video",  # static mode found someone in 10 % of frames, video 54 %
    ),
    Source(
        id="opencv_stills", kind="stills", obtain="debian", origin="opencv-doc",
        members=tuple(str(OPENCV_DOC_DATA / n) for n in
                      ("basketball1.png", "basketball2.png", "messi5.jpg")),
        licence="BSD-3-Clause", licence_note="OpenCV samples (Debian opencv-doc copyright file)",
        frames=(1, 1, 1), content="sport photos", default_step=1,
    ),
    Source(
        id="python_stills", kind="stills", obtain="python",
        origin="scikit-image (astronaut, camera), matplotlib (grace_hopper)",
        members=("astronaut", "camera", "grace_hopper"),
        licence="public-domain / CC0",
        licence_note=("skimage.data.astronaut: NASA, public domain; skimage.data.camera: CC0 "
                      "(Lav Varshney), both per their docstrings; grace_hopper.jpg: US Navy photo, "
                      "reported public domain (matplotlib sample data)"),
        frames=(1, 1, 1), content="upper-body portraits and a standing man", default_step=1,
    ),
    Source(
        id="sam2_bedroom", kind="video", obtain="clip", origin=SAM2_REPO,
        members=("notebooks/videos/bedroom.mp4",), licence="Apache-2.0",
        licence_note="repository LICENSE (Apache-2.0)", frames=(200,),
        content="two children jumping on a bed, 960x540, 30 fps",
    ),
    Source(
        id="sam2_juggle", kind="video", obtain="clip", origin=SAM2_REPO,
        members=("demo/data/gallery/05_default_juggle.mp4",), licence="Apache-2.0",
        licence_note="repository LICENSE (Apache-2.0)", frames=(247,),
        content="full-body juggling outdoors, 1280x720, 24 fps",
    ),
    Source(
        id="mmhuman3d_single", kind="video", obtain="clip", origin=MMHUMAN3D_REPO,
        members=("demo/resources/single_person_demo.mp4",), licence="Apache-2.0",
        licence_note="repository LICENSE (Apache-2.0)", frames=(40,), default_step=1,
        content="one person outdoors, 1080x1920, 12 fps",
    ),
    Source(
        id="mmhuman3d_multi", kind="video", obtain="clip", origin=MMHUMAN3D_REPO,
        members=("demo/resources/multi_person_demo.mp4",), licence="Apache-2.0",
        licence_note="repository LICENSE (Apache-2.0)", frames=(40,), default_step=1,
        content="two people outdoors, 1080x1920, 12 fps",
    ),
)
SOURCES_BY_ID: dict[str, Source] = {s.id: s for s in DEFAULT_SOURCES}

#: Never trained on: a whole video (Sports2D's demo) and one Pose2Sim trial. The single-person
#: trial is the held-out one because its triangulated person is unambiguous for 3D evaluation
#: (in the two-person trial a model may rightly pick the other person). Same lab and rig as the
#: training trial: held out by trial, not by subject or scene.
HELDOUT: tuple[str, ...] = ("sports2d_demo", "pose2sim_singleperson")


def select_sources(ids: Sequence[str] | None) -> list[Source]:
    """The named sources (all defaults when ``ids`` is None), in default order."""
    if ids is None:
        return list(DEFAULT_SOURCES)
    unknown = [i for i in ids if i not in SOURCES_BY_ID]
    if unknown:
        raise ValueError(f"unknown source ids {unknown}; known: {sorted(SOURCES_BY_ID)}")
    return [s for s in DEFAULT_SOURCES if s.id in ids]


def wheel_filename(spec: str) -> str:
    """``pose2sim==0.10.49`` -> ``pose2sim-0.10.49-py3-none-any.whl`` (pure-Python wheels)."""
    name, _, version = spec.partition("==")
    if not version:
        raise ValueError(f"pin the wheel version: {spec!r}")
    return f"{name.replace('-', '_')}-{version}-py3-none-any.whl"


def ensure_wheel(spec: str, cache: Path, allow_download: bool = True) -> Path:
    """The wheel in ``cache/wheels``, downloaded with ``pip download --no-deps`` if absent.

    Raises:
        SourceMissing: absent and ``allow_download`` is False, or pip failed (no network).
    """
    wheels = cache / "wheels"
    path = wheels / wheel_filename(spec)
    if path.is_file():
        return path
    how = f"pip download --no-deps {spec} -d {wheels}"
    if not allow_download:
        raise SourceMissing(f"{path} missing; get it with: {how}")
    wheels.mkdir(parents=True, exist_ok=True)
    LOG.info("downloading %s (once): %s", spec, how)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           spec, "-d", str(wheels)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not path.is_file():
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise SourceMissing(f"could not download {spec} (run: {how}):\n{tail}")
    return path


def extract_member(wheel: Path, member: str, out_dir: Path) -> Path:
    """Unzip one member of ``wheel`` to ``out_dir/member`` (skipped when already there)."""
    out = out_dir / member
    with zipfile.ZipFile(wheel) as z:
        try:
            info = z.getinfo(member)
        except KeyError as exc:
            raise SourceMissing(f"{wheel.name} has no member {member}") from exc
        if out.is_file() and out.stat().st_size == info.file_size:
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".part")
        with z.open(info) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        tmp.replace(out)
    return out


def find_clip(member: str, clip_paths: Sequence[Path]) -> Path | None:
    """A clip given on the command line: a file with the member's name, a folder holding it
    directly, or a clone of the repository (``folder/member``)."""
    name = Path(member).name
    for p in clip_paths:
        if p.is_file() and p.name == name:
            return p
        if p.is_dir():
            for cand in (p / name, p / member):
                if cand.is_file():
                    return cand
    return None


def resolve(
    source: Source,
    cache: Path = DEFAULT_SOURCE_CACHE,
    clip_paths: Sequence[Path] = (),
    allow_download: bool = True,
) -> ResolvedSource:
    """Put ``source``'s files on disk (or find them) and return their paths.

    Raises:
        SourceMissing: with what is missing and the command or clone that provides it.
    """
    if source.obtain == "wheel":
        wheel = ensure_wheel(source.origin, cache, allow_download)
        out_dir = cache / "extracted" / wheel.stem
        paths: list[Path | None] = [extract_member(wheel, m, out_dir) for m in source.members]
        calib = extract_member(wheel, source.calibration, out_dir) if source.calibration else None
        return ResolvedSource(source, paths, calib)
    if source.obtain == "debian":
        missing = [m for m in source.members if not Path(m).is_file()]
        if missing:
            raise SourceMissing(
                f"{source.id}: {', '.join(missing)} missing; install the Debian package "
                f"{source.origin} (sudo apt-get install {source.origin})"
            )
        return ResolvedSource(source, [Path(m) for m in source.members])
    if source.obtain == "python":
        return ResolvedSource(source, [None] * len(source.members))
    found = [find_clip(m, clip_paths) for m in source.members]
    if any(f is None for f in found):
        absent = [m for m, f in zip(source.members, found, strict=True) if f is None]
        raise SourceMissing(
            f"{source.id}: clip {', '.join(absent)} of {source.origin} not given; "
            f"git clone https://{source.origin} and pass --clips <clone> (or the file / a folder "
            "holding it)"
        )
    return ResolvedSource(source, list(found))
