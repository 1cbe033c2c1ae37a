"""Driver side of a training run: prepare data, set up MLflow, start Ray Train, finish the run.

Identity: a run lives in ``{train.storage}/{name}-{hash[:12]}`` (Ray Train storage: a local folder
or a URI); running the same spec again (same hash) resumes from its newest readable checkpoint
into the same MLflow run.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from mlflow.tracking import MlflowClient
from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig, UserCallback
from ray.train.torch import TorchConfig, TorchTrainer

from components.experiment import build_task, check_buildable
from components.spec import ResolvedSpec, Spec
from components.tasks.base import Task
from pipelines import checkpoint, tracking
from pipelines.errors import RunFailed, UsageError
from pipelines.locks import RunLock
from pipelines.storage import Location, cache_dir
from pipelines.train import train_worker, worker_config


def run_location(resolved: ResolvedSpec) -> Location:
    """The run's folder in Ray Train storage: ``{train.storage}/{name}-{hash[:12]}``."""
    return Location.of(resolved.spec.train.storage).child(f"{resolved.spec.name}-{resolved.short_hash}")


def prepare(resolved: ResolvedSpec) -> None:
    """Build the task's caches once, in the driver, and check the components fit together and
    that the files the spec names exist, so a bad spec fails before any worker starts."""
    spec = resolved.spec
    task = build_task(spec, cache_dir())
    check_eval_data(spec, task)
    try:
        task.prepare()
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(f"task ({spec.task.kind}): {err}") from None
    check_buildable(spec, task)


def check_eval_data(spec: Spec, task: Task) -> None:
    """Raise UsageError naming ``eval.data`` and the problem unless it is a valid evaluation
    file for ``task`` (or unset)."""
    if spec.eval.data is None:
        return
    try:
        task.check_data(Path(spec.eval.data))
    except (OSError, ValueError) as err:
        raise UsageError(f"eval.data: {err}") from None


def ensure_ray(address: str | None, log_to_driver: bool = True) -> None:
    """Attach to ``address`` / RAY_ADDRESS, or start a local Ray instance (once per process).
    ``log_to_driver=False`` keeps the workers' output in Ray's log files (the sweep console
    prints its own lines instead)."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=log_to_driver)
        except ray.exceptions.AuthenticationError:
            raise UsageError(
                f"--address {address}: the Ray cluster there requires token authentication; set "
                "RAY_AUTH_MODE=token (Ray then reads the token from RAY_AUTH_TOKEN or ~/.ray/auth_token)"
            ) from None
        except (ConnectionError, TimeoutError) as err:
            raise UsageError(
                f"--address {address}: no Ray cluster reachable there ({err}); a cluster started with "
                "token authentication (Ray's default) also needs RAY_AUTH_MODE=token here"
            ) from None
    else:
        ray.init(logging_level=logging.WARNING, object_store_memory=512 * 2**20, log_to_driver=log_to_driver)


def make_trainer(
    resolved: ResolvedSpec,
    tracked: "TrackedRun",
    *,
    resume_step: int | None,
    min_workers: int = 0,
    callbacks: list[UserCallback] | None = None,
) -> TorchTrainer:
    """A TorchTrainer for this spec whose Ray Train storage is the run's folder."""
    spec = resolved.spec
    res = spec.resources
    workers = max(min_workers, res.workers)
    per_worker: dict[str, float] = {"CPU": res.cpus_per_worker}
    # In local mode the training function runs in this process, where Ray Train's INFO lines
    # (one per report) would interleave with the progress display.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    if res.gpus_per_worker:
        per_worker["GPU"] = res.gpus_per_worker
    return TorchTrainer(
        train_worker,
        train_loop_config=worker_config(
            spec=resolved.to_dict(),
            run_uri=tracked.run.uri,
            cache_dir=str(cache_dir()),
            tracking_uri=tracked.uri,
            mlflow_run_id=tracked.run_id,
            workdir=os.getcwd(),
            fit_id=uuid.uuid4().hex,
            resume_step=resume_step,
            local_mode=workers == 0,
        ),
        torch_config=TorchConfig(backend=None if res.backend == "auto" else res.backend),
        scaling_config=ScalingConfig(
            num_workers=workers,
            use_gpu=res.gpus_per_worker > 0,
            resources_per_worker=per_worker if workers else None,
        ),
        run_config=RunConfig(
            name=tracked.run.name,
            storage_path=Location.of(spec.train.storage).uri,
            failure_config=FailureConfig(max_failures=res.max_failures, controller_failure_limit=2),
            checkpoint_config=CheckpointConfig(num_to_keep=spec.train.keep_checkpoints),
            callbacks=callbacks,
            logging_config=LoggingConfig(log_level="WARNING"),  # our progress lines replace Ray's per-report INFO
        ),
    )


@dataclass
class TrackedRun:
    client: MlflowClient
    uri: str
    run_id: str
    run: Location
    resumed: bool
    lock: RunLock


def _say(message: str) -> None:
    print(f"difflab: {message}", file=sys.stderr, flush=True)


def open_run(
    resolved: ResolvedSpec,
    *,
    fresh: bool,
    kind: str = "run",
    parent_run_id: str | None = None,
    extra_tags: dict[str, str] | None = None,
) -> TrackedRun:
    """Lock the run folder, then reopen the MLflow run it records or create one.

    Nothing is deleted implicitly: checkpoints whose MLflow run this store does not have (a lost
    or different store) are resumed into a new MLflow run, which says so in a tag. Only
    ``fresh`` deletes the folder, and it says what it deleted. Raises UsageError (exit 2) when
    another process trains in the folder or the storage cannot be written."""
    uri = tracking.resolve_uri(resolved.spec.tracking.uri)
    client = tracking.use(uri)
    experiment_id = tracking.ensure_experiment(client, resolved.spec.tracking.experiment, uri)
    run = run_location(resolved)
    lock = RunLock.acquire(run, cache_dir())
    try:
        if fresh and run.exists():
            found = checkpoint.steps(run)
            lock.release()
            run.delete()
            lock = RunLock.acquire(run, cache_dir())
            listed = ", ".join(checkpoint.folder_name(s) for s in found) or "no checkpoints"
            _say(f"--fresh: deleted {run.uri} ({listed})")
        record = json.loads(run.child("run.json").read_text() or "{}")
        run_id = record.get("mlflow_run_id")
        if run_id and tracking.run_exists(client, run_id):
            tracking.reopen_run(client, run_id)
            return TrackedRun(client, uri, run_id, run, True, lock)
        try:
            run.child("spec.yaml").write_text(resolved.to_yaml())
        except OSError as err:
            raise UsageError(f"train.storage: cannot write the run folder {run.uri}: {err}") from None
        tags = dict(extra_tags or {})
        found = checkpoint.steps(run)
        if found:
            tags[tracking.TAG_RESUMED_FROM] = run_id or "unknown"
        run_id_new = tracking.create_run(
            client, experiment_id, resolved, run.uri, kind, parent_run_id=parent_run_id, extra_tags=tags
        )
        if found:
            _say(
                f"{run.uri} holds checkpoints up to {checkpoint.folder_name(found[0])} of MLflow run "
                f"{run_id or '(unrecorded)'}, which {uri} does not have: resuming them into new MLflow run {run_id_new}"
            )
        previous = record.get("previous_mlflow_run_ids", []) + ([run_id] if run_id else [])
        run.child("run.json").write_text(json.dumps(
            {"mlflow_run_id": run_id_new, "spec_hash": resolved.hash, "tracking_uri": uri,
             "previous_mlflow_run_ids": previous}, indent=2, sort_keys=True,
        ))
        return TrackedRun(client, uri, run_id_new, run, bool(found), lock)
    except BaseException:
        lock.release()
        raise


def resume_point(tracked: TrackedRun) -> int | None:
    """The newest checkpoint of the run whose every file loads (None: start at step 0). Newer,
    broken checkpoints are moved aside to ``step_N.broken`` (training rebuilds step N; the
    broken files stay for inspection), and so is Ray Train's snapshot that names them. Raises CheckpointError naming the files when
    none loads."""
    found, skipped = checkpoint.newest_readable(tracked.run)
    for line in skipped:
        _say(f"warning: skipping a broken checkpoint: {line}")
    if found is None:
        return None
    newer = [step for step in checkpoint.steps(tracked.run) if step > found.step]
    for step in newer:
        _move_aside(tracked.run.child(checkpoint.folder_name(step)))
    snapshot = tracked.run.child(checkpoint.RAY_SNAPSHOT)
    if newer and snapshot.exists():
        # Ray Train refuses a run folder whose snapshot names a checkpoint that is gone; without
        # the snapshot it starts a new record (older checkpoints stay, outside its retention).
        _move_aside(snapshot)
    if skipped:
        _say(f"resuming from {found.location.uri}")
    return found.step


def _move_aside(item: Location) -> None:
    """Rename ``item`` to ``<name>.broken`` (or ``.broken-2``, ...) beside it, and say so."""
    parent = item.parent()
    aside, n = parent.child(f"{item.name}.broken"), 1
    while aside.exists():
        n += 1
        aside = parent.child(f"{item.name}.broken-{n}")
    item.move_to(aside)
    _say(f"moved {item.uri} to {aside.uri}")


def root_cause(err: BaseException) -> str:
    """The error a worker raised, without Ray's wrapping: ``Type: message``."""
    seen = err
    for _ in range(8):
        failures = getattr(seen, "worker_failures", None)
        if isinstance(failures, dict) and failures:
            seen = next(iter(failures.values()))
            continue
        inner = getattr(seen, "cause", None) or getattr(seen, "__cause__", None)
        if isinstance(inner, BaseException) and inner is not seen:
            seen = inner
            continue
        break
    message = str(seen).strip().splitlines()
    return f"{type(seen).__name__}: {message[-1] if message else ''}"


def run(resolved: ResolvedSpec, *, fresh: bool = False, address: str | None = None) -> TrackedRun:
    """Train ``resolved`` end to end; returns the finished run. Raises RunFailed."""
    uri = tracking.resolve_uri(resolved.spec.tracking.uri)
    tracking.check_reachable(uri)
    prepare(resolved)
    if resolved.spec.resources.workers > 0:
        ensure_ray(address)
    tracked = open_run(resolved, fresh=fresh)
    status, error = "FAILED", None
    try:
        resume_step = resume_point(tracked)
        make_trainer(resolved, tracked, resume_step=resume_step).fit()
        status = "FINISHED"
    except KeyboardInterrupt:
        status, error = "KILLED", "interrupted"
        raise
    except Exception as err:  # noqa: BLE001 - recorded on the run, then re-raised
        error = root_cause(err)
        raise RunFailed(error) from err
    finally:
        tracking.finish_run(tracked.client, tracked.run_id, status, error)
        tracked.lock.release()
    return tracked
