"""Checkpoints: written atomically, loaded with ``weights_only=True``.

Layout of a run folder ``{train.storage}/{name}-{hash[:12]}/``::

    run.json                      MLflow run id and spec hash (written by the driver)
    checkpoints/step_00000500/    one complete checkpoint
        state.pt                  model, optimizer, lr schedule, EMA, step, shared RNG (rank 0)
        rank_0.pt, rank_1.pt ...  each rank's RNG states and data position

Every rank writes its file into ``step_N.tmp/``; after a barrier rank 0 writes ``state.pt`` and
renames the folder, so a folder without ``.tmp`` is always complete. A SIGKILL at any point
leaves at worst a ``.tmp`` folder, which is ignored and cleaned up.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import torch

KEEP = 2


def checkpoints_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def _step_of(path: Path) -> int:
    return int(path.name.removeprefix("step_"))


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    folder = checkpoints_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob("step_*") if p.is_dir() and p.name[5:].isdigit() and (p / "state.pt").is_file()]
    return sorted(found, key=_step_of)


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = complete_checkpoints(run_dir)
    return found[-1] if found else None


def _atomic_save(obj: Any, path: Path) -> None:
    part = path.with_name(path.name + ".part")
    torch.save(obj, part)
    os.replace(part, path)


def save(
    run_dir: Path,
    step: int,
    rank: int,
    shared_state: dict[str, Any] | None,
    rank_state: dict[str, Any],
    barrier: Callable[[], None],
) -> Path:
    """Write one checkpoint collectively (every rank calls this; only rank 0 passes shared_state)."""
    final = checkpoints_dir(run_dir) / f"step_{step:08d}"
    tmp = final.with_name(final.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    _atomic_save(rank_state, tmp / f"rank_{rank}.pt")
    barrier()
    if rank == 0:
        assert shared_state is not None
        _atomic_save(shared_state, tmp / "state.pt")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in complete_checkpoints(run_dir)[:-KEEP]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in checkpoints_dir(run_dir).glob("step_*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
    barrier()
    return final


def load(path: Path, rank: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(shared state, this rank's state or None if the checkpoint has no file for this rank)."""
    shared = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    rank_file = path / f"rank_{rank}.pt"
    rank_state = torch.load(rank_file, map_location="cpu", weights_only=True) if rank_file.is_file() else None
    return shared, rank_state


def read_run_record(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "run.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def write_run_record(run_dir: Path, record: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    part = run_dir / "run.json.part"
    part.write_text(json.dumps(record, indent=2, sort_keys=True))
    os.replace(part, run_dir / "run.json")
