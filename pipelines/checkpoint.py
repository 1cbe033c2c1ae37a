"""Checkpoints in Ray Train storage: written by every rank, loaded with ``weights_only=True``.

Layout of a run folder ``{train.storage}/{name}-{hash[:12]}/`` (a local folder or a URI)::

    run.json                 MLflow run id and spec hash (written by the driver)
    spec.yaml                the resolved spec
    step_00000500/           one checkpoint
        state.pt             the state every rank shares (:meth:`TrainState.state_dict`, rank 0)
        rank_0.pt, ...       each rank's RNG streams and data position
    checkpoint_manager_snapshot.json   Ray Train's record of its checkpoints (N workers)

With N >= 1 workers each rank hands its folder to ``ray.train.report(checkpoint=...)``; Ray
uploads them into one ``step_N`` folder and keeps ``train.keep_checkpoints`` of them. In local mode
(``workers: 0``) Ray does not persist checkpoints, so the worker uploads into the same layout
itself (to ``step_N.tmp``, then renamed). A checkpoint counts only if every file in it loads: the
driver picks the newest such one before training starts and says which broken ones it skipped.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray.train
import torch

from pipelines.storage import Location

PREFIX = "step_"
STATE_FILE = "state.pt"
RAY_SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train's record of the checkpoints it reported


class CheckpointError(RuntimeError):
    """No checkpoint of a run that has some can be read (exit status 1, the files named)."""


def folder_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def steps(run: Location) -> list[int]:
    """Steps of the checkpoint folders in ``run``, newest first (complete or not)."""
    names = [n for n in run.subfolders() if n.startswith(PREFIX) and n[len(PREFIX):].isdigit()]
    return sorted((int(n[len(PREFIX):]) for n in names), reverse=True)


def _rank_file(rank: int) -> str:
    return f"rank_{rank}.pt"


def _load_file(folder: Location, name: str, scratch: Path) -> dict[str, Any]:
    """One file of a checkpoint, loaded on the CPU; raises CheckpointError naming it."""
    target = scratch / name
    where = folder.child(name).uri
    try:
        folder.download(name, target)
    except (OSError, FileNotFoundError) as err:
        raise CheckpointError(f"{where}: missing ({err})") from None
    try:
        return torch.load(target, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported by name
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else "empty or truncated"
        raise CheckpointError(f"{where}: unreadable ({type(err).__name__}: {reason})") from None
    finally:
        target.unlink(missing_ok=True)


@dataclass
class Checkpoint:
    """A checkpoint folder whose files all load."""

    location: Location
    step: int
    world_size: int


def newest_readable(run: Location, *, ranks: bool = True) -> tuple[Checkpoint | None, list[str]]:
    """The newest checkpoint of ``run`` whose state (and, with ``ranks``, every rank file) loads,
    and one line per newer checkpoint skipped because a file is missing or broken.
    Raises CheckpointError naming the files when checkpoints exist but none loads."""
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="difflab-ckpt-") as scratch:
        for step in steps(run):
            folder = run.child(folder_name(step))
            try:
                state = _load_file(folder, STATE_FILE, Path(scratch))
                world = int(state.get("world_size", 1))
                if ranks:
                    for rank in range(world):
                        _load_file(folder, _rank_file(rank), Path(scratch))
            except CheckpointError as err:
                skipped.append(str(err))
                continue
            return Checkpoint(folder, int(state["step"]), world), skipped
    if skipped:
        raise CheckpointError("no readable checkpoint: " + "; ".join(skipped))
    return None, skipped


def load(folder: Location, rank: int | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(shared state, rank ``rank``'s own state; None when ``rank`` is None)."""
    with tempfile.TemporaryDirectory(prefix="difflab-ckpt-") as scratch:
        shared = _load_file(folder, STATE_FILE, Path(scratch))
        own = _load_file(folder, _rank_file(rank), Path(scratch)) if rank is not None else None
    return shared, own


def save(
    run: Location,
    step: int,
    rank: int,
    shared: dict[str, Any] | None,
    own: dict[str, Any],
    metrics: dict[str, float],
    *,
    fit_id: str,
    local_mode: bool,
    keep: int,
) -> Location:
    """Write one checkpoint collectively (every rank calls this; rank 0 passes ``shared``) and
    report ``metrics`` with it. Returns the checkpoint's folder."""
    final = run.child(folder_name(step))
    with tempfile.TemporaryDirectory(prefix="difflab-save-") as scratch:
        folder = Path(scratch)
        torch.save(own, folder / _rank_file(rank))
        if shared is not None:
            torch.save(shared, folder / STATE_FILE)
        if not local_mode:
            checkpoint = ray.train.Checkpoint.from_directory(folder)
            checkpoint.set_metadata({"fit_id": fit_id, "step": step})
            ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=final.name)
            return final
        partial = run.child(final.name + ".tmp")
        partial.upload_folder(folder)
        partial.move_to(final)
    for old in steps(run)[keep:]:
        run.child(folder_name(old)).delete()  # retention the spec sets (train.keep_checkpoints)
    ray.train.report(metrics)
    return final


def restart_step(fit_id: str) -> int | None:
    """The step of the checkpoint Ray hands a worker group it restarted within this fit
    (``resources.max_failures``), or None on the first start, where the driver's choice applies."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    metadata = checkpoint.get_metadata()
    return int(metadata["step"]) if metadata.get("fit_id") == fit_id else None
