"""Test-suite root: its folder is on ``sys.path`` (pytest's default import mode inserts every
conftest's folder), so helpers shared across test folders (``fake_label_cache``) import plainly."""
