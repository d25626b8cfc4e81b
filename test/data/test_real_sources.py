"""Real-frame source records: licences, held-out split, and what a missing source says."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from sparse_pose_ros.data.real_sources import (
    DEFAULT_SOURCES,
    HELDOUT,
    SOURCES_BY_ID,
    Source,
    SourceMissing,
    ensure_wheel,
    extract_member,
    find_clip,
    resolve,
    select_sources,
    wheel_filename,
)


def test_every_source_records_licence_origin_and_split() -> None:
    assert len({s.id for s in DEFAULT_SOURCES}) == len(DEFAULT_SOURCES)
    for s in DEFAULT_SOURCES:
        rec = s.record()
        assert rec["licence"] and rec["licence_note"] and rec["origin"] and rec["members"]
        assert rec["split"] == ("heldout" if s.id in HELDOUT else "train")
        # DATA.md's avoid list: non-commercial and GPL material must never enter the corpus
        assert not any(bad in s.licence.lower() for bad in ("nc", "gpl", "non-commercial"))
    kinds = {SOURCES_BY_ID[h].kind for h in HELDOUT}
    assert kinds == {"video", "multiview"}  # one whole video and one Pose2Sim trial
    assert any(SOURCES_BY_ID[s].kind == "multiview" for s in SOURCES_BY_ID if s not in HELDOUT)


def test_pose2sim_sources_name_views_and_calibration_inside_the_wheel() -> None:
    for sid in ("pose2sim_singleperson", "pose2sim_multiperson"):
        s = SOURCES_BY_ID[sid]
        assert s.views == ("cam01", "cam02", "cam03", "cam04")
        assert s.calibration is not None and s.calibration.endswith("calibration/Calib.qca.txt")
        assert all(m.startswith(s.calibration.split("calibration/")[0]) for m in s.members)


def test_source_validation_and_selection() -> None:
    with pytest.raises(ValueError, match="calibration"):
        Source("x", "multiview", "wheel", "a==1", ("a.mp4",), "MIT", "n", (1,), "c",
               views=("cam01",))
    with pytest.raises(ValueError, match="one frame count"):
        Source("x", "video", "clip", "r", ("a.mp4",), "MIT", "n", (), "c")
    with pytest.raises(ValueError, match="teacher_mode"):
        Source("x", "stills", "python", "p", ("a",), "MIT", "n", (1,), "c", teacher_mode="video")
    assert [s.id for s in select_sources(["sam2_juggle", "opencv_vtest"])] == [
        "opencv_vtest", "sam2_juggle"]  # default order
    with pytest.raises(ValueError, match="unknown source ids"):
        select_sources(["nope"])


def test_wheel_missing_without_download_says_how_to_get_it(tmp_path: Path) -> None:
    assert wheel_filename("pose2sim==0.10.49") == "pose2sim-0.10.49-py3-none-any.whl"
    with pytest.raises(ValueError, match="pin"):
        wheel_filename("pose2sim")
    with pytest.raises(SourceMissing, match=r"pip download --no-deps pose2sim==0\.10\.49 -d"):
        ensure_wheel("pose2sim==0.10.49", tmp_path, allow_download=False)


def test_extract_member_only_the_named_file(tmp_path: Path) -> None:
    whl = tmp_path / "wheels" / "demo-1.0-py3-none-any.whl"
    whl.parent.mkdir()
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("Demo/videos/cam01.mp4", b"abc")
        z.writestr("Demo/other.bin", b"x" * 100)
    out = extract_member(whl, "Demo/videos/cam01.mp4", tmp_path / "x")
    assert out.read_bytes() == b"abc"
    assert not (tmp_path / "x" / "Demo" / "other.bin").exists()
    with pytest.raises(SourceMissing, match="no member"):
        extract_member(whl, "Demo/videos/cam09.mp4", tmp_path / "x")


def test_missing_clip_names_repository_and_flag(tmp_path: Path) -> None:
    src = SOURCES_BY_ID["sam2_bedroom"]
    with pytest.raises(SourceMissing) as err:
        resolve(src, tmp_path, clip_paths=[tmp_path])
    msg = str(err.value)
    assert "github.com/facebookresearch/sam2" in msg and "--clips" in msg
    assert "notebooks/videos/bedroom.mp4" in msg


def test_clip_found_as_file_folder_or_clone(tmp_path: Path) -> None:
    member = "notebooks/videos/bedroom.mp4"
    clone = tmp_path / "sam2"
    (clone / "notebooks" / "videos").mkdir(parents=True)
    (clone / member).write_bytes(b"v")
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "bedroom.mp4").write_bytes(b"v")
    assert find_clip(member, [clone]) == clone / member
    assert find_clip(member, [flat]) == flat / "bedroom.mp4"
    assert find_clip(member, [flat / "bedroom.mp4"]) == flat / "bedroom.mp4"
    assert find_clip(member, [tmp_path / "nothing"]) is None
    res = resolve(SOURCES_BY_ID["sam2_bedroom"], tmp_path, clip_paths=[tmp_path / "x", clone])
    assert res.paths == [clone / member]


def test_missing_debian_file_names_the_package(tmp_path: Path) -> None:
    src = Source("deb", "video", "debian", "opencv-doc", (str(tmp_path / "vtest.avi"),),
                 "BSD-3-Clause", "n", (795,), "c")
    with pytest.raises(SourceMissing, match="apt-get install opencv-doc"):
        resolve(src, tmp_path)
