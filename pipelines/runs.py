"""Run management: ``difflab runs | show | diff | rm``.

A run is named on the command line by its MLflow run id, a unique prefix of it, or its run name
(unique among the store's active runs). ``rm`` deletes exactly the runs named: each MLflow run
(MLflow's own deletion: restorable until ``mlflow gc``) and its run folder, the folder only when
its ``run.json`` records that very run, so checkpoints another run resumed are never touched.
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from rich.console import Console
from rich.table import Table

from pipelines import tracking
from pipelines.errors import UsageError
from pipelines.locks import RunLock
from pipelines.storage import Location, cache_dir

DEFAULT_METRIC = "eval/elbo"
FALLBACK_METRIC = "train/loss"
SHOWN_CANDIDATES = 10  # runs listed when a reference is ambiguous
SHOWN_ARTIFACTS = 60  # artifact files listed by ``show``


class RunNotFound(UsageError):
    """No run, or more than one, answers to a RUN argument (exit 2)."""


def _experiments(client: MlflowClient) -> dict[str, str]:
    """Active experiments: id -> name."""
    return {e.experiment_id: e.name for e in client.search_experiments()}


def _search(client: MlflowClient, experiment_ids: list[str], limit: int | None = None) -> list[Run]:
    """Active runs of the experiments, newest first (every page, or the first ``limit``)."""
    found: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            experiment_ids, order_by=["attributes.start_time DESC"], page_token=token,
            max_results=min(limit - len(found), 1000) if limit else 1000,
        )
        found.extend(page)
        token = page.token
        if not token or (limit and len(found) >= limit):
            return found


def find_run(client: MlflowClient, ref: str, argument: str) -> Run:
    """The one active run whose id is ``ref``, starts with ``ref``, or is named ``ref``.
    Raises RunNotFound naming ``argument`` (and the candidates when several match)."""
    try:
        run = client.get_run(ref)
        if run.info.lifecycle_stage == "active":
            return run
    except MlflowException:
        pass
    experiments = _experiments(client)
    runs = _search(client, list(experiments)) if experiments and ref else []
    for candidates in ([r for r in runs if r.info.run_id.startswith(ref)], [r for r in runs if r.info.run_name == ref]):
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            listed = "\n".join(
                f"  {r.info.run_id}  {r.info.run_name}  ({experiments[r.info.experiment_id]}, {_age(r)} ago)"
                for r in candidates[:SHOWN_CANDIDATES]
            )
            more = f"\n  ... and {len(candidates) - SHOWN_CANDIDATES} more" if len(candidates) > SHOWN_CANDIDATES else ""
            raise RunNotFound(f"{argument} {ref!r} matches {len(candidates)} runs; name one by its id:\n{listed}{more}")
    raise RunNotFound(
        f"{argument}: no run with id {ref!r}, an id starting with it, or that name in {client.tracking_uri}; "
        "`difflab runs` lists the runs"
    )


def key_metric(run: Run) -> str | None:
    """The metric a run is judged by: its spec's sweep metric, else eval/elbo, else train/loss."""
    swept = run.data.params.get("sweep.metric")
    for name in (swept, DEFAULT_METRIC, FALLBACK_METRIC):
        if name and name in run.data.metrics:
            return name
    return None


def _age(run: Run) -> str:
    seconds = max(0.0, time.time() - run.info.start_time / 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _render(*tables: Table | str) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=160, force_terminal=False)
    for table in tables:
        console.print(table)
    return buffer.getvalue().rstrip("\n")


def list_runs(client: MlflowClient, experiment: str | None, limit: int) -> tuple[list[Run], dict[str, str]]:
    """The newest ``limit`` active runs of ``experiment`` (every experiment when None), and the
    experiment names by id. Raises UsageError naming the experiments there are."""
    experiments = _experiments(client)
    if experiment is None:
        ids = list(experiments)
    else:
        ids = [i for i, name in experiments.items() if name == experiment]
        if not ids:
            names = ", ".join(sorted(experiments.values())) or "none yet"
            raise UsageError(f"EXPERIMENT {experiment!r} does not exist in {client.tracking_uri}; experiments: {names}")
    return (_search(client, ids, limit) if ids else []), experiments


def render_list(listed: tuple[list[Run], dict[str, str]]) -> str:
    """Table: id, name, experiment, kind, status, key metric, age, spec hash."""
    runs, experiments = listed
    table = Table(title=f"{len(runs)} run(s), newest first")
    for column in ("id", "name", "experiment", "kind", "status", "key metric", "age", "spec hash"):
        table.add_column(column, justify="right" if column == "age" else "left")
    for run in runs:
        metric = key_metric(run)
        value = f"{metric} {run.data.metrics[metric]:.5g}" if metric else "-"
        tags = run.data.tags
        table.add_row(
            run.info.run_id[:8], run.info.run_name, experiments.get(run.info.experiment_id, "?"),
            tags.get(tracking.TAG_KIND, "-"), run.info.status, value, _age(run),
            tags.get(tracking.TAG_HASH, "-")[:12],
        )
    return _render(table)


def _spec_text(client: MlflowClient, run: Run) -> str | None:
    """The run's logged resolved spec (YAML text), or None when it has none."""
    with tempfile.TemporaryDirectory(prefix="difflab-spec-") as scratch:
        try:
            return Path(client.download_artifacts(run.info.run_id, tracking.SPEC_ARTIFACT, scratch)).read_text()
        except (MlflowException, OSError):
            return None


def _artifact_files(client: MlflowClient, run_id: str, path: str | None = None) -> list[tuple[str, int]]:
    """(path, bytes) of every artifact file of the run."""
    files: list[tuple[str, int]] = []
    for info in client.list_artifacts(run_id, path):
        if info.is_dir:
            files.extend(_artifact_files(client, run_id, info.path))
        else:
            files.append((info.path, info.file_size or 0))
    return files


def _folder_record(run: Run) -> tuple[Location | None, str]:
    """The run folder if it exists and records this run, and a line saying what it holds."""
    folder = run.data.tags.get(tracking.TAG_RUN_DIR)
    if not folder:
        return None, "no run folder recorded"
    location = Location(folder)
    if not location.exists():
        return None, f"{folder} (gone)"
    record = json.loads(location.child("run.json").read_text() or "{}")
    if record.get("mlflow_run_id") != run.info.run_id:
        owner = record.get("mlflow_run_id") or "no run"
        return None, f"{folder} (records MLflow run {owner}, not this one)"
    from pipelines import checkpoint  # torch and Ray: only where a run folder is there to read

    found = checkpoint.steps(location)
    listed = ", ".join(checkpoint.folder_name(s) for s in found) or "no checkpoints"
    return location, f"{folder} ({listed})"


def show(client: MlflowClient, run: Run) -> str:
    """A run's identity, checkpoint, metrics, artifacts and resolved spec, as text."""
    info, tags = run.info, run.data.tags
    started = datetime.fromtimestamp(info.start_time / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    duration = f", ran {((info.end_time or info.start_time) - info.start_time) / 1000:.0f} s" if info.end_time else ""
    experiment = client.get_experiment(info.experiment_id).name
    lines = [
        f"run {info.run_id}  {info.run_name}",
        f"  status      {info.status} ({tags.get(tracking.TAG_KIND, 'run')}), started {started} ({_age(run)} ago{duration})",
        f"  experiment  {experiment}",
        f"  spec hash   {tags.get(tracking.TAG_HASH, '-')}",
        f"  git commit  {tags.get(tracking.TAG_GIT_COMMIT, '-')}"
        + (" (uncommitted changes)" if tags.get(tracking.TAG_GIT_DIRTY) == "true" else ""),
        f"  user        {tags.get(tracking.TAG_USER, '-')}",
    ]
    if "mlflow.parentRunId" in tags:
        lines.append(f"  parent run  {tags['mlflow.parentRunId']}")
    if tracking.TAG_ERROR in tags:
        lines.append(f"  error       {tags[tracking.TAG_ERROR].strip().splitlines()[-1]}")
    _, folder_line = _folder_record(run)
    lines.append(f"  run folder  {folder_line}")
    lines.append(f"  checkpoint  {tags.get(tracking.TAG_CHECKPOINT, '-')}")
    files = _artifact_files(client, info.run_id)
    logged = [p for p, _ in files if p.startswith(tracking.CHECKPOINT_ARTIFACT + "/")]
    lines.append(f"  artifact    {logged[0] if logged else 'none (eval/sample need the run folder)'}")

    metrics = Table(title="metrics (last value)")
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for key in sorted(run.data.metrics):
        metrics.add_row(key, f"{run.data.metrics[key]:.6g}")
    artifacts = Table(title=f"artifacts ({len(files)} files)")
    artifacts.add_column("path")
    artifacts.add_column("bytes", justify="right")
    for path, size in files[:SHOWN_ARTIFACTS]:
        artifacts.add_row(path, f"{size:,}")
    if len(files) > SHOWN_ARTIFACTS:
        artifacts.add_row(f"... {len(files) - SHOWN_ARTIFACTS} more", "")
    spec = _spec_text(client, run)
    spec_block = f"resolved spec ({tracking.SPEC_ARTIFACT}):\n{spec}" if spec else f"no {tracking.SPEC_ARTIFACT} artifact"
    return "\n".join(lines) + "\n" + _render(metrics, artifacts) + "\n" + spec_block.rstrip("\n")


def _leaves(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a.b": value} (lists and empty dicts are leaves)."""
    if not isinstance(data, dict) or not data:
        return {prefix: data} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _spec_leaves(client: MlflowClient, run: Run, argument: str) -> dict[str, Any]:
    text = _spec_text(client, run)
    if text is None:
        raise UsageError(f"{argument} {run.info.run_id}: the run has no {tracking.SPEC_ARTIFACT} artifact; it was not made by difflab")
    return _leaves(yaml.safe_load(text))


def diff(client: MlflowClient, a: Run, b: Run) -> str:
    """The resolved-spec leaves that differ between runs A and B, and each metric's A, B and B - A."""
    left, right = _spec_leaves(client, a, "RUN_A"), _spec_leaves(client, b, "RUN_B")
    absent = object()
    changed = [k for k in sorted(left.keys() | right.keys()) if left.get(k, absent) != right.get(k, absent)]
    header = f"A = {a.info.run_id[:8]} {a.info.run_name}\nB = {b.info.run_id[:8]} {b.info.run_name}"
    spec = Table(title=f"spec: {len(changed)} difference(s)")
    for column in ("path", "A", "B"):
        spec.add_column(column)
    for key in changed:
        spec.add_row(key, *(_show_value(side.get(key, absent), absent) for side in (left, right)))
    metrics = Table(title="metrics (last value)")
    for column, justify in (("metric", "left"), ("A", "right"), ("B", "right"), ("B - A", "right")):
        metrics.add_column(column, justify=justify)
    ma, mb = a.data.metrics, b.data.metrics
    for key in sorted(ma.keys() | mb.keys()):
        delta = f"{mb[key] - ma[key]:+.6g}" if key in ma and key in mb else "-"
        metrics.add_row(key, *(f"{m[key]:.6g}" if key in m else "-" for m in (ma, mb)), delta)
    return header + "\n" + _render(spec, metrics)


def _show_value(value: Any, absent: object) -> str:
    return "(absent)" if value is absent else json.dumps(value) if not isinstance(value, str) else value


def remove(client: MlflowClient, runs: list[Run], *, yes: bool) -> int:
    """Delete each run and its folder after saying what goes (asking unless ``yes``). Returns the
    exit status: 0 deleted, 1 declined. Raises UsageError, deleting nothing, when a run's folder
    is in use by a training process."""
    unique = list({run.info.run_id: run for run in runs}.values())
    plan: list[tuple[Run, Location | None]] = []
    lines = []
    for run in unique:
        folder, line = _folder_record(run)
        if folder is not None:
            RunLock.acquire(folder, cache_dir()).release()  # raises while another process trains there
        plan.append((run, folder))
        children = client.search_runs(
            [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'"
        )
        kept = f"; its {len(children)} child run(s) stay" if children else ""
        action = "delete" if folder is not None else "keep"
        lines.append(f"  {run.info.run_id}  {run.info.run_name} ({run.info.status}){kept}\n    {action} run folder {line}")
    print(f"difflab rm: {len(plan)} run(s):\n" + "\n".join(lines), file=sys.stderr)
    if not yes:
        try:
            answer = input("delete these runs? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted (pass --yes to delete without asking)", file=sys.stderr)
            return 1
    for run, folder in plan:
        if folder is not None:
            folder.delete()
        client.delete_run(run.info.run_id)
        gone = f" and {folder.uri}" if folder is not None else ""
        print(f"deleted MLflow run {run.info.run_id} ({run.info.run_name}){gone}")
    print("MLflow keeps deleted runs' records and artifacts until `mlflow gc`", file=sys.stderr)
    return 0
