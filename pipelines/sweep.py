"""Ray Tune over a spec's ``sweep:`` section.

Each trial is a plain Tune function (the "Train driver" pattern of Ray 2.60): it turns its
assignment into a trial spec (base spec + swept values, its own hash), opens an MLflow child run
under the sweep's parent run and fits a TorchTrainer whose report callback forwards the
rank-0 reports that carry the sweep metric to Tune. Trials always use real Ray Train workers (at least one):
Ray Train's in-process local mode is not available inside a Tune trial.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import ActorDiedError
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from components.spec import ResolvedSpec, trial_spec, validate
from components.spec.sections import SweepDimension
from pipelines import tracking
from pipelines.launch import cache_dir, ensure_ray, make_trainer, open_run, prepare, resume_point, root_cause
from pipelines.storage import Location


@dataclass
class SweepResult:
    parent_run_id: str
    uri: str
    experiment: str
    trials: int
    errors: int


def _domain(dim: SweepDimension) -> Any:
    value = getattr(dim, dim.kind)
    return {
        "grid": lambda: tune.grid_search(list(value)),
        "choice": lambda: tune.choice(list(value)),
        "uniform": lambda: tune.uniform(*value),
        "loguniform": lambda: tune.loguniform(*value),
        "randint": lambda: tune.randint(*value),
    }[dim.kind]()


def max_concurrent(resolved: ResolvedSpec) -> int:
    """Trials that fit at once: every trial needs all its workers (GPU count or CPU count)."""
    sweep, res = resolved.spec.sweep, resolved.spec.resources
    if sweep.max_concurrent is not None:
        return sweep.max_concurrent
    workers = max(1, res.workers)
    available = ray.cluster_resources()
    if res.gpus_per_worker > 0:
        return max(1, math.floor(available.get("GPU", 0) / (workers * res.gpus_per_worker)))
    # Each trial also runs a light driver actor (0.1 CPU).
    return max(1, math.floor(available.get("CPU", 1) / (workers * res.cpus_per_worker + 0.1)))


def _trial(config: dict[str, Any], base: dict[str, Any], parent_run_id: str, fresh: bool, driver: dict[str, str]) -> None:
    """Tune trainable: one trial = one TorchTrainer fit recorded as an MLflow child run.

    Trial actors start in Ray's session folder; ``driver`` carries the driver's working folder,
    tracking URI and data cache so relative paths in the spec mean what they mean for the driver."""
    os.chdir(driver["cwd"])
    os.environ["MLFLOW_TRACKING_URI"] = driver["uri"]
    os.environ["DIFFLAB_CACHE"] = driver["cache"]
    assignment = config["assign"]
    resolved = trial_spec(validate(base), assignment, label=f"trial {assignment}")
    label = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in assignment.items())
    tracked = open_run(
        resolved,
        fresh=fresh,
        kind="trial",
        parent_run_id=parent_run_id,
        extra_tags={"mlflow.runName": f"{resolved.spec.name} [{label}]", "difflab.trial": label},
    )
    try:
        prepare(resolved)  # a cache hit unless the sweep changes the task
        trainer = make_trainer(
            resolved, tracked, resume_step=resume_point(tracked), min_workers=1, callbacks=[_MetricReports(base["sweep"]["metric"])]
        )
        trainer.fit()
    except ActorDiedError:
        # The scheduler stopped this trial by removing its workers; the driver closes the run.
        raise
    except BaseException as err:  # noqa: BLE001 - recorded on the child run, then re-raised to Tune
        status = "KILLED" if isinstance(err, (KeyboardInterrupt, SystemExit)) else "FAILED"
        tracking.finish_run(tracked.client, tracked.run_id, status, root_cause(err))
        raise
    finally:
        tracked.lock.release()
    tracking.finish_run(tracked.client, tracked.run_id, "FINISHED")


class _MetricReports(TuneReportCallback):
    """Forwards to Tune only the reports that carry the sweep metric.

    Checkpoints between evaluations report training metrics alone; the scheduler and the
    searcher read the sweep metric from every result they get, so those stay with Ray Train."""

    def __init__(self, metric: str):
        super().__init__()
        self._metric = metric

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        if self._metric in metrics[0]:
            super().after_report(run_context, metrics, checkpoint)


def _scheduler(resolved: ResolvedSpec) -> ASHAScheduler | FIFOScheduler:
    cfg = resolved.spec.sweep.scheduler
    if cfg.kind == "asha":
        return ASHAScheduler(
            time_attr="step",
            max_t=resolved.spec.train.steps + 1,  # never stop a trial at its last report
            grace_period=cfg.grace_steps,
            reduction_factor=cfg.reduction_factor,
        )
    return FIFOScheduler()


def _mark_unfinished(client: Any, parent_run_id: str, experiment_id: str) -> None:
    """Children still RUNNING after Tune returned were stopped early by the scheduler."""
    children = client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = 'RUNNING'"
    )
    for child in children:
        client.set_tag(child.info.run_id, "difflab.stopped_early", "true")
        client.set_terminated(child.info.run_id, status="KILLED")


def sweep(resolved: ResolvedSpec, *, address: str | None = None, fresh: bool = False) -> SweepResult:
    """Run every trial of the sweep; a failing trial is recorded and does not stop the others."""
    spec = resolved.spec
    uri = tracking.resolve_uri(spec.tracking.uri)
    tracking.check_reachable(uri)
    prepare(resolved)
    ensure_ray(address)
    parent = open_run(resolved, fresh=fresh, kind="sweep")
    cfg = spec.sweep
    space = {"assign": {path: _domain(dim) for path, dim in cfg.space.items()}}
    search_alg = None
    if cfg.search == "optuna":
        search_alg = ConcurrencyLimiter(OptunaSearch(seed=cfg.seed), max_concurrent=max_concurrent(resolved))
    tuner = tune.Tuner(
        tune.with_resources(
            tune.with_parameters(
                _trial,
                base=resolved.to_dict(),
                parent_run_id=parent.run_id,
                fresh=fresh,
                driver={"cwd": os.getcwd(), "uri": uri, "cache": str(cache_dir())},
            ), {"CPU": 0.1}
        ),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=cfg.metric,
            mode=cfg.mode,
            num_samples=cfg.samples,
            scheduler=_scheduler(resolved),
            search_alg=search_alg,
            max_concurrent_trials=max_concurrent(resolved),
        ),
        run_config=tune.RunConfig(
            name=parent.run.name,
            storage_path=Location.of(spec.train.storage).child("tune").uri,
            failure_config=tune.FailureConfig(max_failures=0),
            verbose=int(os.environ.get("DIFFLAB_TUNE_VERBOSE", "1")),
        ),
    )
    status, error = "FAILED", None
    try:
        grid = tuner.fit()
        status = "FINISHED"
    except BaseException as err:  # noqa: BLE001 - recorded on the parent run, then re-raised
        error = f"{type(err).__name__}: {err}"
        raise
    finally:
        experiment_id = parent.client.get_run(parent.run_id).info.experiment_id
        _mark_unfinished(parent.client, parent.run_id, experiment_id)
        tracking.finish_run(parent.client, parent.run_id, status, error)
        parent.lock.release()
    return SweepResult(parent.run_id, uri, spec.tracking.experiment, len(grid), grid.num_errors)

