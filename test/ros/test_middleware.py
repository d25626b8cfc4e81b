"""ros.middleware.apply_default_profile: the shipped Fast DDS profile unless the user chose."""

from __future__ import annotations

from pathlib import Path

from sparse_pose_ros.ros.middleware import PROFILE_ENV, apply_default_profile, profile_path


def test_profile_ships_and_is_applied_when_nothing_is_set(tmp_path: Path):
    env: dict[str, str] = {}
    note = apply_default_profile(env, cwd=tmp_path)
    assert env[PROFILE_ENV] == str(profile_path()) and profile_path().is_file()
    assert "segment_size" in profile_path().read_text()
    assert str(profile_path()) in note


def test_a_users_own_configuration_wins(tmp_path: Path):
    env = {PROFILE_ENV: "/etc/mine.xml"}
    assert "/etc/mine.xml" in apply_default_profile(env, cwd=tmp_path)
    assert env == {PROFILE_ENV: "/etc/mine.xml"}
    old_name = {"FASTRTPS_DEFAULT_PROFILES_FILE": "/etc/old.xml"}
    apply_default_profile(old_name, cwd=tmp_path)
    assert PROFILE_ENV not in old_name
    (tmp_path / "DEFAULT_FASTDDS_PROFILES.xml").write_text("<dds/>")
    env = {}
    assert "working directory" in apply_default_profile(env, cwd=tmp_path)
    assert env == {}


def test_other_middlewares_are_left_alone(tmp_path: Path):
    env = {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}
    assert "does not apply" in apply_default_profile(env, cwd=tmp_path)
    assert PROFILE_ENV not in env
    env = {"RMW_IMPLEMENTATION": "rmw_fastrtps_dynamic_cpp"}
    apply_default_profile(env, cwd=tmp_path)
    assert PROFILE_ENV in env


def test_empty_value_opts_out_and_reaches_children(tmp_path: Path):
    here = {PROFILE_ENV: ""}
    assert "is empty" in apply_default_profile(here, cwd=tmp_path)
    assert here == {}  # this process: removed (Fast DDS would report an XML error for "")
    children = {PROFILE_ENV: ""}
    apply_default_profile(children, cwd=tmp_path, for_children=True)
    assert children == {PROFILE_ENV: ""}  # started processes must see the opt-out themselves
