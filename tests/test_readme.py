"""The README's spec walk-through is a valid spec (with the base file it extends)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from components.spec.loading import load_spec

ROOT = Path(__file__).resolve().parents[1]


def test_readme_spec_example_validates(tmp_path) -> None:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no yaml block"
    (tmp_path / "base").mkdir()
    for name in ("sudoku9.yaml", "sudoku9-data.yaml"):
        shutil.copy(ROOT / "experiments/sudoku/base" / name, tmp_path / "base" / name)
    path = tmp_path / "example.yaml"
    path.write_text(blocks[0])
    spec = load_spec(path).spec
    assert spec.noise.kind == "gidd" and spec.noise.p_uniform == 0.2
    assert spec.task.size == 9 and spec.sweep.space["noise.p_uniform"].grid == [0.0, 0.1, 0.2, 0.4]
    assert spec.backbone.kind == "dit" and spec.resources.workers == 8
    assert {"k1", "k5"} <= set(spec.eval.samplers)
