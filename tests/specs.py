"""A tiny 4x4 Sudoku spec for pipeline tests (import as ``from specs import ...``)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

TINY_SPEC: dict[str, Any] = {
    "name": "tiny",
    "task": {"kind": "sudoku", "size": 4, "tier": "easy", "train_puzzles": 64, "eval_puzzles": 16, "workers": 1},
    "noise": {"kind": "masked"},
    "loss": {"kind": "mdlm"},
    "backbone": {"kind": "dit", "layers": 1, "heads": 2, "width": 32, "cond_dim": 16},
    "sampler": {"kind": "confidence", "k": 4},
    "schedule": {"lr": {"peak": 3.0e-3, "warmup_steps": 2, "decay": "cosine"}},
    "train": {"steps": 12, "batch_size": 8, "log_every": 2, "checkpoint_every": 4},
    "eval": {"every": 6, "batches": 1, "batch_size": 8, "num_samples": 8},
    "tracking": {"experiment": "tests"},
}


def tiny_spec(**sections: Any) -> dict[str, Any]:
    """TINY_SPEC with sections merged in (one level deep)."""
    spec = copy.deepcopy(TINY_SPEC)
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict) and "kind" not in value:
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return spec


def write_spec(folder: Path, spec: dict[str, Any], name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path
