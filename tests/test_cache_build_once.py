"""``build_once``, the atomic cache-folder build that text splits and chat examples share: a
second call is a cache hit that writes nothing, and a failing build leaves no folder behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.tasks.text.cache import build_once


def test_second_build_is_a_hit_and_a_failed_build_leaves_nothing(tmp_path: Path) -> None:
    calls: list[Path] = []

    def write(folder: Path) -> dict:
        calls.append(folder)
        (folder / "rows.txt").write_text("a\nb\n")
        return {"rows": 2}

    target = tmp_path / "cache" / "train-abc"
    assert build_once(target, write) is True
    assert build_once(target, write) is False and len(calls) == 1
    assert json.loads((target / "meta.json").read_text()) == {"rows": 2} and (target / "rows.txt").read_text() == "a\nb\n"
    assert calls[0] != target and not calls[0].exists()  # built elsewhere, then renamed into place

    def broken(folder: Path) -> dict:
        (folder / "half.bin").write_bytes(b"\0")
        raise RuntimeError("disk full")

    other = tmp_path / "cache" / "validation-abc"
    with pytest.raises(RuntimeError, match="disk full"):
        build_once(other, broken)
    assert sorted(p.name for p in other.parent.iterdir()) == ["train-abc"]
