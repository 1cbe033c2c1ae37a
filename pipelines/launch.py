"""Driver side of a training run: prepare data, set up MLflow, start Ray Train, finish the run.

Identity: a run lives in ``{train.storage}/{name}-{hash[:12]}``; running the same spec again
(same hash) resumes from its latest checkpoint into the same MLflow run.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from mlflow.tracking import MlflowClient
from ray.train import FailureConfig, LoggingConfig, RunConfig, ScalingConfig, UserCallback
from ray.train.torch import TorchConfig, TorchTrainer

from components.experiment import build_task, check_buildable
from components.spec import ResolvedSpec
from pipelines import checkpoint, tracking
from pipelines.errors import RunFailed, UsageError
from pipelines.train import train_worker, worker_config


def cache_dir() -> Path:
    """Shared cache for generated/tokenized data: ``DIFFLAB_CACHE`` or ./.cache/difflab."""
    return Path(os.environ.get("DIFFLAB_CACHE", ".cache/difflab")).resolve()


def run_dir_for(resolved: ResolvedSpec) -> Path:
    return Path(resolved.spec.train.storage).resolve() / f"{resolved.spec.name}-{resolved.short_hash}"


def prepare(resolved: ResolvedSpec) -> None:
    """Build the task's caches once, in the driver, and check the components fit together and
    that the files the spec names exist, so a bad spec fails before any worker starts."""
    spec = resolved.spec
    if spec.eval.data is not None and not Path(spec.eval.data).is_file():
        raise UsageError(f"eval.data: file not found: {spec.eval.data}")
    task = build_task(spec, cache_dir())
    try:
        task.prepare()
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(f"task ({spec.task.kind}): {err}") from None
    check_buildable(spec, task)


def ensure_ray(address: str | None) -> None:
    """Attach to ``address`` / RAY_ADDRESS, or start a local Ray instance (once per process)."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(logging_level=logging.WARNING, object_store_memory=512 * 2**20)


def make_trainer(
    resolved: ResolvedSpec,
    run_dir: Path,
    uri: str,
    run_id: str,
    *,
    min_workers: int = 0,
    callbacks: list[UserCallback] | None = None,
) -> TorchTrainer:
    """A TorchTrainer for this spec; Ray run name = run folder name, so a restarted run resumes."""
    spec = resolved.spec
    res = spec.resources
    workers = max(min_workers, res.workers)
    per_worker: dict[str, float] = {"CPU": res.cpus_per_worker}
    if res.gpus_per_worker:
        per_worker["GPU"] = res.gpus_per_worker
    return TorchTrainer(
        train_worker,
        train_loop_config=worker_config(
            spec=resolved.to_dict(),
            run_dir=str(run_dir),
            cache_dir=str(cache_dir()),
            tracking_uri=uri,
            mlflow_run_id=run_id,
            workdir=os.getcwd(),
        ),
        torch_config=TorchConfig(backend=None if res.backend == "auto" else res.backend),
        scaling_config=ScalingConfig(
            num_workers=workers,
            use_gpu=res.gpus_per_worker > 0,
            resources_per_worker=per_worker if workers else None,
        ),
        run_config=RunConfig(
            name=run_dir.name,
            storage_path=str(run_dir.parent),
            failure_config=FailureConfig(max_failures=res.max_failures, controller_failure_limit=2),
            callbacks=callbacks,
            logging_config=LoggingConfig(log_level="WARNING"),  # our progress lines replace Ray's per-report INFO
        ),
    )


@dataclass
class TrackedRun:
    client: MlflowClient
    uri: str
    run_id: str
    run_dir: Path
    resumed: bool


def open_run(
    resolved: ResolvedSpec,
    *,
    fresh: bool,
    kind: str = "run",
    parent_run_id: str | None = None,
    extra_tags: dict[str, str] | None = None,
) -> TrackedRun:
    """Create the MLflow run for this spec, or reopen the one its run folder records."""
    uri = tracking.resolve_uri(resolved.spec.tracking.uri)
    client = tracking.use(uri)
    experiment_id = tracking.ensure_experiment(client, resolved.spec.tracking.experiment, uri)
    run_dir = run_dir_for(resolved)
    if fresh and run_dir.exists():
        shutil.rmtree(run_dir)
    record = checkpoint.read_run_record(run_dir)
    run_id = record.get("mlflow_run_id")
    resumed = bool(run_id) and tracking.run_exists(client, run_id)
    if resumed:
        tracking.reopen_run(client, run_id)
    else:
        if run_dir.exists():  # checkpoints without a usable MLflow run: start clean
            shutil.rmtree(run_dir)
        run_id = tracking.create_run(
            client, experiment_id, resolved, run_dir, kind, parent_run_id=parent_run_id, extra_tags=extra_tags
        )
        checkpoint.write_run_record(
            run_dir, {"mlflow_run_id": run_id, "spec_hash": resolved.hash, "tracking_uri": uri}
        )
        (run_dir / "spec.yaml").write_text(resolved.to_yaml())
    return TrackedRun(client, uri, run_id, run_dir, resumed)


def run(resolved: ResolvedSpec, *, fresh: bool = False, address: str | None = None) -> TrackedRun:
    """Train ``resolved`` end to end; returns the finished run. Raises RunFailed."""
    uri = tracking.resolve_uri(resolved.spec.tracking.uri)
    tracking.check_reachable(uri)
    prepare(resolved)
    tracked = open_run(resolved, fresh=fresh)
    if resolved.spec.resources.workers > 0:
        ensure_ray(address)
    status, error = "FAILED", None
    try:
        make_trainer(resolved, tracked.run_dir, tracked.uri, tracked.run_id).fit()
        status = "FINISHED"
    except KeyboardInterrupt:
        status, error = "KILLED", "interrupted"
        raise
    except Exception as err:  # noqa: BLE001 - recorded on the run, then re-raised
        error = f"{type(err).__name__}: {err}"
        raise RunFailed(error) from err
    finally:
        tracking.finish_run(tracked.client, tracked.run_id, status, error)
    return tracked


def final_metrics(client: MlflowClient, run_id: str) -> dict[str, Any]:
    """Latest value of every metric of a run."""
    return dict(client.get_run(run_id).data.metrics)
