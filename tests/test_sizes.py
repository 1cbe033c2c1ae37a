"""`difflab validate` prints the resolved model sizes; the counts it prints (from a meta-device
build that skips initialisation) equal those of the model really built on the CPU."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from components import backbones
from components.spec import validate
from components.tasks.sudoku.task import SudokuTask
from pipelines.cli import main
from pipelines.sizes import parameter_counts
from specs import tiny_spec, write_spec

ROOT = Path(__file__).resolve().parents[1]
SMALL = {
    "dit": {"kind": "dit", "layers": 2, "heads": 2, "width": 32, "cond_dim": 16},
    "encoder": {"kind": "encoder", "layers": 2, "heads": 2, "width": 32, "ffn": 64},
    "causal": {"kind": "causal", "layers": 2, "heads": 2, "width": 32},
    "hf": {"kind": "hf", "config": {"model_type": "bert", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                    "num_attention_heads": 2, "max_position_embeddings": 64}},
    "two_head": {"kind": "two_head", "trunk": {"kind": "dit", "layers": 1, "heads": 2, "width": 32, "cond_dim": 16}},
}
NEEDS = {"causal": {"loss": {"kind": "ar"}, "sampler": {"kind": "autoregressive"}},
         "two_head": {"noise": {"kind": "uniform"}, "loss": {"kind": "two_head"}, "sampler": {"kind": "gated"}}}


def _real_counts(backbone: torch.nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in backbone.parameters())
    embeddings = sum(m.weight.numel() for m in backbone.modules() if isinstance(m, torch.nn.Embedding))
    return total, total - embeddings


def test_every_backbone_kind_has_a_small_case() -> None:
    assert set(SMALL) == set(backbones.BACKBONES.kinds)


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_meta_count_equals_the_built_model(kind: str) -> None:
    spec = validate(tiny_spec(backbone=SMALL[kind], **NEEDS.get(kind, {}))).spec
    built = backbones.build(spec.backbone, vocab_size=37, seq_len=16)
    assert parameter_counts(spec, 37, 16) == _real_counts(built)


def test_validate_prints_resolved_sizes(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    spec = tiny_spec(backbone={"kind": "dit", "size": "tiny", "width": 64, "cond_dim": 16})
    assert main(["validate", str(write_spec(workdir, spec))]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("# model:"))
    built = backbones.build(validate(spec).spec.backbone, vocab_size=5, seq_len=16)  # 4x4 Sudoku: digits + mask
    total, body = _real_counts(built)
    assert line == f"# model: dit: 8 layers, 8 heads, width 64; {total:,} parameters ({body:,} without embeddings) at vocabulary 5"


def test_readme_preset_table_matches_the_presets() -> None:
    rows = re.findall(r"^\| `(\w+)`[^|]*\| (\d+) \| (\d+) \| (\d+) \| ([\d,]+) \(([\d,]+)\) \| ([\d,]+) \(([\d,]+)\) \|$",
                      (ROOT / "README.md").read_text(), flags=re.M)
    assert [r[0] for r in rows] == ["tiny", "small", "base"]
    for size, layers, heads, width, *counts in rows:
        numbers = [int(c.replace(",", "")) for c in counts]
        dit = validate(tiny_spec(backbone={"kind": "dit", "size": size})).spec
        causal = validate(tiny_spec(backbone={"kind": "causal", "size": size}, **NEEDS["causal"])).spec
        assert dit.backbone.dims() == (int(layers), int(heads), int(width))
        assert [*parameter_counts(dit, 50258, 1024), *parameter_counts(causal, 50258, 1024)] == numbers


def test_validate_counts_structured_backbones_with_the_tasks_structure(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    """Row/column/box position tables depend on the task's structure, so validate builds with it."""
    backbone = {**SMALL["encoder"], "positions": "structured", "attention": "structured"}
    spec = tiny_spec(backbone=backbone)
    assert main(["validate", str(write_spec(workdir, spec))]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("# model:"))
    task = SudokuTask(validate(spec).spec.task, cache_dir=workdir)
    built = backbones.build(validate(spec).spec.backbone, vocab_size=5, seq_len=16, structure=task.structure())
    total, body = _real_counts(built)
    assert line.endswith(f"{total:,} parameters ({body:,} without embeddings) at vocabulary 5")
