"""Ray Tune over a spec's ``sweep:`` section.

Identity: the sweep is a run of its resolved spec (space included), so running the same sweep
again reopens its parent run; each trial is a spec of its own (base + swept values, its own
hash), so a trial resumes its own MLflow run, which is moved under the current parent. When a
sweep's trials are all listed up front (grid dimensions only) and every one has finished, the
sweep returns without starting Ray.

Each trial is a plain Tune function (the "Train driver" pattern of Ray 2.60): it opens an MLflow
child run under the sweep's parent run and fits a TorchTrainer whose report callback forwards
the rank-0 reports that carry the sweep metric to Tune. Trials always use real Ray Train workers
(at least one): Ray Train's in-process local mode is not available inside a Tune trial.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from mlflow.entities import Metric, RunTag

from components.spec import ResolvedSpec, trial_spec, validate
from components.spec.sections import SweepDimension
from pipelines import checkpoint, tracking
from pipelines.launch import cache_dir, open_run, prepare, run_location
from pipelines.storage import Location

TAG_TRIAL = "difflab.trial"  # the trial's short name, e.g. "trial 3 p_uniform=0.1 wd=0.1"
TAG_BEST = "difflab.best_config"  # on the parent: the best configuration's short name
SHORT_KEYS = {"weight_decay": "wd", "learning_rate": "lr"}


@dataclass
class SweepResult:
    parent_run_id: str
    uri: str
    experiment: str
    trials: int
    errors: int
    reused: bool = False  # every trial had finished before: nothing ran


@dataclass(frozen=True)
class Trial:
    """One planned trial: its 1-based number and the value set at each spec path."""

    index: int
    assignment: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"trial {self.index} {short_label(self.assignment)}".rstrip()


def _short_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return str(value.get("kind", json.dumps(value, sort_keys=True)))
    if isinstance(value, str) and "/" in value:
        return value.rsplit("/", 1)[-1]
    return str(value)


def short_label(assignment: dict[str, Any]) -> str:
    """``{"noise.p_uniform": 0.1, "train.optimizer.weight_decay": 0.1}`` -> ``p_uniform=0.1 wd=0.1``."""
    parts = []
    for path, value in assignment.items():
        key = path.rsplit(".", 1)[-1]
        parts.append(f"{SHORT_KEYS.get(key, key)}={_short_value(value)}")
    return " ".join(parts)


def seed_values(resolved: ResolvedSpec) -> list[int]:
    """train.seed of each run of one configuration (one value unless ``sweep.seeds`` > 1)."""
    seeds = resolved.spec.sweep.seeds
    return [resolved.spec.train.seed + k for k in range(seeds)] if seeds > 1 else []


def plan(resolved: ResolvedSpec) -> list[Trial] | None:
    """Every trial of a grid-only sweep (configurations x seeds, in space order), or None when a
    dimension is drawn at random (Tune draws those)."""
    cfg = resolved.spec.sweep
    if any(dim.kind != "grid" for dim in cfg.space.values()):
        return None
    dims = {path: list(dim.grid) for path, dim in cfg.space.items()}
    seeds = seed_values(resolved)
    if seeds:
        dims["train.seed"] = seeds
    combos = itertools.product(*dims.values())
    return [Trial(i + 1, dict(zip(dims, combo))) for i, combo in enumerate(combos)]


def _domain(dim: SweepDimension) -> Any:
    from ray import tune

    value = getattr(dim, dim.kind)
    return {
        "grid": lambda: tune.grid_search(list(value)),
        "choice": lambda: tune.choice(list(value)),
        "uniform": lambda: tune.uniform(*value),
        "loguniform": lambda: tune.loguniform(*value),
        "randint": lambda: tune.randint(*value),
    }[dim.kind]()


def trial_resources(resolved: ResolvedSpec) -> dict[str, float]:
    """What one trial holds while it runs: its Train workers (at least one) and its 0.1-CPU driver."""
    res = resolved.spec.resources
    workers = max(1, res.workers)
    return {"workers": workers, "CPU": workers * res.cpus_per_worker + 0.1, "GPU": workers * res.gpus_per_worker}


def max_concurrent(resolved: ResolvedSpec, cpus: float, gpus: float) -> int:
    """Trials that fit at once on ``cpus`` / ``gpus``: every trial needs all its workers."""
    cfg = resolved.spec.sweep
    if cfg.max_concurrent is not None:
        return cfg.max_concurrent
    need = trial_resources(resolved)
    if need["GPU"] > 0:
        return max(1, math.floor(gpus / need["GPU"]))
    return max(1, math.floor(cpus / need["CPU"]))


def dry_run(resolved: ResolvedSpec, cpus: float, gpus: float) -> str:
    """The trial list a sweep would run, with resources and concurrency, as text."""
    cfg, res = resolved.spec.sweep, resolved.spec.resources
    need = trial_resources(resolved)
    trials = plan(resolved)
    at_once = max_concurrent(resolved, cpus, gpus)
    seeds = seed_values(resolved)
    lines = [f"sweep {resolved.spec.name}-{resolved.short_hash}: metric {cfg.metric} ({cfg.mode}), scheduler {cfg.scheduler.kind}"]
    per_worker = f"{res.cpus_per_worker:g} CPU" + (f" + {res.gpus_per_worker:g} GPU" if res.gpus_per_worker else "")
    lines.append(
        f"resources per trial: {need['workers']} worker(s) x {per_worker}, plus a 0.1-CPU trial driver; "
        f"{at_once} at once on {cpus:g} CPU / {gpus:g} GPU"
    )
    if trials is None:
        drawn = {p: f"{d.kind} {getattr(d, d.kind)}" for p, d in cfg.space.items()}
        lines.append(f"{cfg.samples} draw(s) by {cfg.search} search x {max(1, len(seeds))} seed(s) of: " + "; ".join(f"{p}: {v}" for p, v in drawn.items()))
        return "\n".join(lines) + "\n"
    configs = len(trials) // max(1, len(seeds))
    lines.append(f"{len(trials)} trials: {configs} configuration(s) x {max(1, len(seeds))} seed(s)")
    for trial in trials:
        full = " ".join(f"{p}={json.dumps(v) if isinstance(v, dict) else v}" for p, v in trial.assignment.items())
        lines.append(f"  {trial.name:<40}  {full}")
    return "\n".join(lines) + "\n"


def _all_finished(resolved: ResolvedSpec, trials: list[Trial], client: Any) -> list[str] | None:
    """MLflow run ids of the planned trials when every one has a FINISHED run, else None."""
    ids = []
    for trial in trials:
        record_file = run_location(trial_spec(resolved, trial.assignment)).child("run.json")
        if not record_file.exists():
            return None
        run_id = json.loads(record_file.read_text() or "{}").get("mlflow_run_id")
        if not run_id or not tracking.run_exists(client, run_id) or client.get_run(run_id).info.status != "FINISHED":
            return None
        ids.append(run_id)
    return ids


def _delete_trials(resolved: ResolvedSpec, trials: list[Trial]) -> None:
    """``--fresh``: delete each planned trial's folder (checkpoints), saying what goes."""
    for trial in trials:
        folder = run_location(trial_spec(resolved, trial.assignment))
        if folder.exists():
            listed = ", ".join(checkpoint.folder_name(s) for s in checkpoint.steps(folder)) or "no checkpoints"
            folder.delete()
            _say(f"--fresh: deleted {folder.uri} ({listed}) of {trial.name}")


def _say(message: str) -> None:
    print(f"difflab: {message}", file=sys.stderr, flush=True)


def _trial(config: dict[str, Any], base: dict[str, Any], parent_run_id: str, fresh: bool, driver: dict[str, str]) -> None:
    """Tune trainable: one trial = one TorchTrainer fit recorded as an MLflow child run.

    Trial actors start in Ray's session folder; ``driver`` carries the driver's working folder,
    tracking URI and data cache so relative paths in the spec mean what they mean for the driver."""
    from ray.exceptions import ActorDiedError

    from pipelines.launch import make_trainer, resume_point, root_cause

    os.chdir(driver["cwd"])
    os.environ["MLFLOW_TRACKING_URI"] = driver["uri"]
    os.environ["DIFFLAB_CACHE"] = driver["cache"]
    trial = Trial(config["index"], config["assign"])
    resolved = trial_spec(validate(base), trial.assignment, label=trial.name)
    tags = {"mlflow.runName": trial.name, TAG_TRIAL: trial.name, "mlflow.parentRunId": parent_run_id}
    tracked = open_run(resolved, fresh=fresh, kind="trial", parent_run_id=parent_run_id, extra_tags=tags)
    # A resumed trial's run may hang under an earlier sweep's parent: it belongs to this one now.
    tracked.client.log_batch(tracked.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    try:
        prepare(resolved)  # a cache hit unless the sweep changes the task
        trainer = make_trainer(
            resolved, tracked, resume_step=resume_point(tracked), min_workers=1, callbacks=[_metric_reports(base["sweep"]["metric"])]
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


def _metric_reports(metric: str) -> Any:
    """A Train callback that forwards to Tune only the reports that carry the sweep metric.

    Checkpoints between evaluations report training metrics alone; the scheduler and the
    searcher read the sweep metric from every result they get, so those stay with Ray Train."""
    from ray.tune.integration.ray_train import TuneReportCallback

    class MetricReports(TuneReportCallback):
        def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
            if metric in metrics[0]:
                super().after_report(run_context, metrics, checkpoint)

    return MetricReports()


def _scheduler(resolved: ResolvedSpec) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

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


def record_best(client: Any, parent_run_id: str, experiment_id: str, metric: str, mode: str) -> None:
    """Log the best configuration (by its mean over seeds) and its metrics on the parent run."""
    from pipelines import leaderboard

    runs = client.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'")
    frame = leaderboard.group_seeds(leaderboard.build_frame(runs, metric, mode), metric, mode)
    if frame.is_empty() or frame[metric][0] is None:
        return
    best = frame.row(0, named=True)
    metrics = {f"best/{k}": float(v) for k, v in best.items() if isinstance(v, float) and not math.isnan(v)}
    metrics[metric] = float(best[metric])
    client.log_batch(
        parent_run_id,
        metrics=[Metric(k, v, int(time.time() * 1000), 0) for k, v in metrics.items()],
        tags=[RunTag(TAG_BEST, str(best["config"] if "config" in best else best["run"]))],
    )


def sweep(
    resolved: ResolvedSpec, *, address: str | None = None, fresh: bool = False, verbose: bool = False
) -> SweepResult:
    """Run every trial of the sweep; a failing trial is recorded and does not stop the others."""
    spec = resolved.spec
    cfg = spec.sweep
    uri = tracking.resolve_uri(spec.tracking.uri)
    tracking.check_reachable(uri)
    prepare(resolved)
    trials = plan(resolved)
    if fresh and trials is not None:
        _delete_trials(resolved, trials)
    parent = open_run(resolved, fresh=fresh, kind="sweep")
    experiment_id = parent.client.get_run(parent.run_id).info.experiment_id
    done = None if fresh or trials is None else _all_finished(resolved, trials, parent.client)
    if done is not None:
        for run_id in done:
            parent.client.set_tag(run_id, "mlflow.parentRunId", parent.run_id)
        record_best(parent.client, parent.run_id, experiment_id, cfg.metric, cfg.mode)
        tracking.finish_run(parent.client, parent.run_id, "FINISHED")
        parent.lock.release()
        _say(f"every trial of this sweep has finished (parent run {parent.run_id}); --fresh starts over")
        return SweepResult(parent.run_id, uri, spec.tracking.experiment, len(trials), 0, reused=True)

    import ray
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from pipelines.launch import ensure_ray
    from pipelines.sweep_console import SweepConsole

    ensure_ray(address, log_to_driver=verbose)
    available = ray.cluster_resources()
    at_once = max_concurrent(resolved, available.get("CPU", 1), available.get("GPU", 0))
    if trials is not None:
        space = {"trial": tune.grid_search([{"index": t.index, "assign": t.assignment} for t in trials])}
    else:
        dims = {path: _domain(dim) for path, dim in cfg.space.items()}
        if seed_values(resolved):
            dims["train.seed"] = tune.grid_search(seed_values(resolved))
        space = {"trial": {"index": 0, "assign": dims}}
    search_alg = None
    if cfg.search == "optuna":
        search_alg = ConcurrencyLimiter(OptunaSearch(seed=cfg.seed), max_concurrent=at_once)
    console = SweepConsole(cfg.metric, cfg.mode, total=len(trials) if trials is not None else None)
    tuner = tune.Tuner(
        tune.with_resources(
            tune.with_parameters(
                _tune_entry,
                base=resolved.to_dict(),
                parent_run_id=parent.run_id,
                fresh=fresh and trials is None,
                driver={"cwd": os.getcwd(), "uri": uri, "cache": str(cache_dir())},
            ), {"CPU": 0.1}
        ),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=cfg.metric,
            mode=cfg.mode,
            num_samples=1 if trials is not None else cfg.samples,
            scheduler=_scheduler(resolved),
            search_alg=search_alg,
            max_concurrent_trials=at_once,
        ),
        run_config=tune.RunConfig(
            name=parent.run.name,
            storage_path=Location.of(spec.train.storage).child("tune").uri,
            failure_config=tune.FailureConfig(max_failures=0),
            callbacks=[console],
            verbose=1 if verbose else 0,
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
        _mark_unfinished(parent.client, parent.run_id, experiment_id)
        if status == "FINISHED":
            record_best(parent.client, parent.run_id, experiment_id, cfg.metric, cfg.mode)
        tracking.finish_run(parent.client, parent.run_id, status, error)
        parent.lock.release()
    return SweepResult(parent.run_id, uri, spec.tracking.experiment, len(grid), grid.num_errors)


def _tune_entry(config: dict[str, Any], **kwargs: Any) -> None:
    """Tune passes the sampled ``trial`` entry; random draws get their number from Tune's trial id."""
    from ray import tune

    entry = dict(config["trial"])
    if not entry["index"]:
        entry["index"] = int(tune.get_context().get_trial_id().rsplit("_", 1)[-1]) + 1
    _trial(entry, **kwargs)
