"""Layers import only downward: image -> tensor -> network -> pose -> messages, and no room is
entered twice. A table of levels; a module may import its own level and the levels below.

Why a test: cycles between ``export`` and ``backends`` (and ``evaluation`` reaching up into
``benchmarks``) made a checkpoint's walk through the code go back and forth; this keeps the
structure that replaced them.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sparse_pose_ros"

#: level -> top-level modules of ``sparse_pose_ros`` (packages or single files).
LEVELS: dict[int, tuple[str, ...]] = {
    0: ("skeleton", "image_codec", "framing", "provenance"),
    1: ("model", "runtime"),
    2: ("pretrained", "sparse", "teachers", "data", "control"),
    3: ("export",),
    4: ("backends",),
    5: ("pipeline",),
    6: ("evaluation", "training"),
    7: ("ros",),
    8: ("benchmarks", "demo"),
}
LEVEL_OF = {name: lvl for lvl, names in LEVELS.items() for name in names}


def _room(rel: Path) -> str:
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported_rooms(path: Path) -> set[str]:
    rel = path.relative_to(PACKAGE)
    rooms: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(rel.parts[:-1])[: len(rel.parts) - node.level]
                parts = base + (node.module.split(".") if node.module else [])
                rooms.add(parts[0] if parts else node.names[0].name)
            elif node.module and node.module.startswith("sparse_pose_ros."):
                rooms.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("sparse_pose_ros."):
                    rooms.add(alias.name.split(".")[1])
    return rooms


def test_every_module_has_a_level():
    rooms = {_room(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")}
    rooms -= {"__init__", "__main__"}
    assert rooms <= set(LEVEL_OF), sorted(rooms - set(LEVEL_OF))


def test_no_layer_imports_upward():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        room = _room(rel)
        if room in ("__init__", "__main__"):
            continue
        for target in _imported_rooms(path):
            if target in LEVEL_OF and LEVEL_OF[target] > LEVEL_OF[room]:
                upward.append(f"{rel} ({room}, level {LEVEL_OF[room]}) imports {target} "
                              f"(level {LEVEL_OF[target]})")
    assert not upward, "\n".join(upward)


def test_the_table_catches_an_upward_import(tmp_path):
    """The checker itself: an export module importing backends is reported."""
    fake = PACKAGE / "export" / "_layer_probe_tmp.py"
    fake.write_text("from ..backends.base import Backend\n")
    try:
        assert "backends" in _imported_rooms(fake)
        assert LEVEL_OF["backends"] > LEVEL_OF["export"]
    finally:
        fake.unlink()
