"""``difflab eval`` / ``difflab sample``: reload a finished run from MLflow and its checkpoint."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from components.batch import Batch
from components.experiment import Experiment, build_experiment, build_task
from components.spec import ResolvedSpec, SpecError, validate
from components.spec.errors import Problem
from components.spec.loading import apply_overrides
from pipelines import artifacts, checkpoint, tracking
from pipelines.errors import UsageError
from pipelines.launch import cache_dir, check_eval_data
from pipelines.state import TrainState, ema_of
from pipelines.storage import Location
from pipelines.train import evaluate as evaluate_model

EDITABLE_PREFIXES = ("eval.", "sampler.")


class UnknownRun(UsageError):
    """The run id is not in the tracking store, or has no checkpoint (CLI exit 2)."""


@dataclass
class LoadedRun:
    client: MlflowClient
    run_id: str
    resolved: ResolvedSpec
    experiment: Experiment
    model: torch.nn.Module
    step: int
    device: torch.device


def load_run(uri: str, run_id: str, overrides: list[str] | None = None) -> LoadedRun:
    """The run's logged spec (with eval./sampler. overrides) and its latest checkpoint's weights
    (EMA weights when the run kept them)."""
    client = tracking.use(uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise UnknownRun(f"no run with id {run_id!r} in the tracking store {uri}") from None
    label = f"run {run_id}"
    bad = [o for o in overrides or [] if not o.startswith(EDITABLE_PREFIXES)]
    if bad:
        raise SpecError(label, [Problem(o.split("=")[0], f"only {' and '.join(EDITABLE_PREFIXES)}* can be changed when reloading a run") for o in bad])
    try:
        text = Path(client.download_artifacts(run_id, tracking.SPEC_ARTIFACT)).read_text()
    except (MlflowException, OSError):
        raise UnknownRun(f"run {run_id} has no {tracking.SPEC_ARTIFACT} artifact; it was not made by difflab") from None
    data = apply_overrides(yaml.safe_load(text), overrides or [], label)
    _use_logged_tokenizer(client, run_id, data)
    resolved = validate(data, label)
    task = build_task(resolved.spec, cache_dir())
    check_eval_data(resolved.spec, task)
    location = _checkpoint_location(client, run)
    experiment = build_experiment(resolved.spec, cache_dir(), task)
    experiment.task.prepare()
    shared, _ = checkpoint.load(location, rank=None)
    state = TrainState(experiment.model, ema=ema_of(experiment.model, resolved.spec.train.ema))
    state.load_weights(shared)
    model = state.eval_model()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    return LoadedRun(client, run_id, resolved, experiment, model, state.step, device)


def _use_logged_tokenizer(client: MlflowClient, run_id: str, data: dict) -> None:
    """Point the spec's tokenizer at the one the run logged, when it logged one: the data cache
    that held it may be on another machine (the file is the same tokenizer, so caches keyed by
    its fingerprint still apply)."""
    task = data.get("task")
    if not isinstance(task, dict) or not isinstance(task.get("tokenizer"), dict):
        return
    path = artifacts.tokenizer_file(client, run_id)
    if path is not None:
        eos = task["tokenizer"].get("eos")
        task["tokenizer"] = {"file": str(path), **({"eos": eos} if eos else {})}


def _checkpoint_location(client: MlflowClient, run: Run) -> Location:
    """The newest readable checkpoint in the run folder, else the final checkpoint the run
    logged to MLflow (downloaded). Raises UnknownRun when there is neither."""
    run_id = run.info.run_id
    folder = run.data.tags.get(tracking.TAG_RUN_DIR, "")
    problem = "no run folder tag"
    if folder:
        try:
            problem = f"none under {folder}" if Location(folder).exists() else f"{folder} is not reachable here"
            found, skipped = checkpoint.newest_readable(Location(folder), ranks=False)
        except (checkpoint.CheckpointError, OSError) as err:
            found, skipped, problem = None, [], str(err)
        for line in skipped:
            print(f"difflab: warning: skipping a broken checkpoint: {line}", file=sys.stderr)
        if found is not None:
            return found.location
    logged = artifacts.checkpoint_folder(client, run_id)
    if logged is None:
        raise UnknownRun(f"run {run_id} has no checkpoint ({problem}) and logged none to MLflow")
    print(f"difflab: run {run_id}: no checkpoint in its run folder ({problem}); using the one it logged to MLflow "
          f"({tracking.CHECKPOINT_ARTIFACT}/{logged.name})", file=sys.stderr)
    return logged


def eval_run(uri: str, run_id: str, overrides: list[str] | None = None) -> dict[str, float]:
    """Evaluate the run's checkpoint as its spec (plus overrides) says; log ``eval/*`` to the run."""
    loaded = load_run(uri, run_id, overrides)
    started = time.perf_counter()
    metrics, artifacts = evaluate_model(loaded.experiment, loaded.model, loaded.device, loaded.resolved.spec.train.seed + 10_007)
    metrics["seconds"] = time.perf_counter() - started
    prefixed = {f"eval/{k}": v for k, v in metrics.items()}
    logger = tracking.RunLogger(uri, run_id)
    logger.log_metrics(prefixed, loaded.step)  # a step that already has eval/* keeps its values
    for name, text in artifacts.items():
        logger.log_text(text, f"eval/cli_{int(time.time())}/{name}")
    return prefixed


def sample_run(uri: str, run_id: str, n: int, steps: int | None, sampler: str | None) -> list[str]:
    """Generate ``n`` unconditional samples (or complete ``n`` eval sequences for conditional
    tasks) with a named eval sampler; log them as a text artifact of the run."""
    loaded = load_run(uri, run_id)
    exp = loaded.experiment
    names = list(exp.samplers)
    chosen = sampler or names[0]
    if chosen not in exp.samplers:
        raise SpecError(f"run {run_id}", [Problem("--sampler", f"unknown sampler {chosen!r}; this run has: {', '.join(names)}")])
    batches = exp.task.eval_batches(n, 1)
    batch = next(iter(batches))
    batch = Batch(x0=batch.x0[:n], fixed=batch.fixed[:n], valid=None if batch.valid is None else batch.valid[:n]).to(loaded.device)
    with torch.no_grad():
        out = exp.samplers[chosen].generate(loaded.model, exp.noise, batch, steps)
    texts = [exp.task.decode(row) for row in out.tokens.cpu()]
    tracking.RunLogger(uri, run_id).log_text("\n\n".join(texts), f"samples/{chosen}_{int(time.time())}.txt")
    return texts
