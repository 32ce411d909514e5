"""Atomic writes leave the old file or the whole new one, and no temporary file."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.core.fsutil import TEMP_GLOB, atomic_path, atomic_write


def test_atomic_write_replaces_whole(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    atomic_write(target, "old")
    atomic_write(target, b"new", durable=True)
    assert target.read_text() == "new" and list(tmp_path.glob(TEMP_GLOB)) == []


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target, suffix=".npz") as tmp:
        assert tmp.name.endswith(".npz") and tmp.parent == tmp_path
        tmp.write_bytes(b"half")
        assert list(tmp_path.glob(TEMP_GLOB)) == [tmp]
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old" and list(tmp_path.glob(TEMP_GLOB)) == []


def test_a_file_system_failure_names_the_target(tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "a.json"
    with pytest.raises(OSError) as info:
        atomic_write(target, "x")
    assert info.value.filename == str(target)
