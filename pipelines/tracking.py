"""MLflow: tracking URI, experiment and run setup (driver) and rank-0 metric logging (worker).

The driver creates the database, the experiment and the run before any worker starts (the first
touch of a SQLite store runs migrations, which races if two processes do it); workers only log
into an existing run through :class:`RunLogger`.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipelines.errors import UsageError
from pipelines.locks import file_lock

if TYPE_CHECKING:  # reading runs (leaderboard, runs, show) needs no spec models, hence no torch
    from components.spec import ResolvedSpec

TAG_HASH = "difflab.spec_hash"
TAG_COMMIT = "difflab.git_commit"  # <sha> or <sha>-dirty
TAG_GIT_COMMIT = "mlflow.source.git.commit"  # MLflow's standard tags, shown in its UI
TAG_GIT_DIRTY = "difflab.git_dirty"  # "true" when the code had uncommitted changes
TAG_USER = "mlflow.user"
TAG_RUN_DIR = "difflab.run_dir"
TAG_CHECKPOINT = "difflab.checkpoint"
TAG_KIND = "difflab.kind"  # "run" | "sweep" | "trial"
TAG_ERROR = "difflab.error"
TAG_RESUMED_FROM = "difflab.resumed_from_run"  # checkpoints of this MLflow run (missing from this store) continued here
DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")  # SQLAlchemy stores MLflow supports
SPEC_ARTIFACT = "spec.yaml"
CHECKPOINT_ARTIFACT = "checkpoint"  # the final checkpoint's shared state: checkpoint/step_N/state.pt
PARAM_LIMIT = 6000


class TrackingError(UsageError):
    """The tracking server or store cannot be used (reported before training, exit 2)."""


def resolve_uri(spec_uri: str | None) -> str:
    """``tracking.uri`` from the spec, else ``MLFLOW_TRACKING_URI``, else ./mlflow.db (SQLite)."""
    uri = spec_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{(Path.cwd() / 'mlflow.db').resolve()}"


def default_artifact_root(uri: str) -> str | None:
    """For the embedded SQLite store, artifacts go to ./mlartifacts beside the database."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    return None


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Raise :class:`TrackingError` naming the URI if the store cannot be reached."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s) as reply:
                if reply.status != 200:
                    raise TrackingError(f"MLflow server at {uri} answered /health with HTTP {reply.status}")
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise TrackingError(f"MLflow tracking server {uri} is unreachable: {reason}") from None
    elif uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise TrackingError(f"MLflow SQLite store {uri}: folder {folder} does not exist or is not writable")
    elif uri.startswith(DATABASE_SCHEMES):
        check_driver(uri)
    elif uri.startswith("file:") or "://" not in uri:
        raise TrackingError(
            f"tracking URI {uri!r} is a file store, which MLflow 3 no longer supports; "
            "use sqlite:///path/mlflow.db, http(s)://host:port or postgresql://..."
        )


def check_driver(uri: str) -> None:
    """Raise :class:`TrackingError` naming the package to install when the Python driver of a
    database store (SQLAlchemy URI) is missing; the password never appears in the message."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        url = make_url(uri)
        shown = url.render_as_string(hide_password=True)
        url.get_dialect().import_dbapi()
    except (ArgumentError, NoSuchModuleError) as err:
        raise TrackingError(f"tracking URI {uri.split('://')[0]}://...: {err}") from None
    except ImportError as err:
        if err.name == "psycopg":
            hint = "install the postgres extra: pip install 'difflab[postgres]'"
        else:
            hint = f"install the package that provides the module {err.name!r}"
        raise TrackingError(f"tracking URI {shown} needs the database driver {err.name!r}, which is not installed; {hint}") from None


def git_state() -> tuple[str, bool] | None:
    """(commit, whether tracked files have uncommitted changes) of the code being run, or None
    outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here, capture_output=True, text=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha, bool(dirty)


def source_tags() -> dict[str, str]:
    """Who ran which code: difflab's commit tag, MLflow's standard commit and user tags, the dirty flag."""
    state = git_state()
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        user = "unknown"
    tags = {TAG_USER: user}
    if state is None:
        return tags | {TAG_COMMIT: "unknown"}
    sha, dirty = state
    return tags | {TAG_COMMIT: f"{sha}-dirty" if dirty else sha, TAG_GIT_COMMIT: sha, TAG_GIT_DIRTY: str(dirty).lower()}


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested spec dict -> ``{"noise.p_uniform": "0.2", ...}`` (values as text, MLflow-sized).
    Unset (None) leaves are left out: the logged spec artifact holds them."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if value is None:
            continue
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)[:PARAM_LIMIT]
    return out


def ensure_experiment(client: MlflowClient, name: str, uri: str) -> str:
    """Get or create the experiment (driver only); returns its id."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=default_artifact_root(uri))
    except MlflowException:  # created concurrently by another driver
        return client.get_experiment_by_name(name).experiment_id


def run_exists(client: MlflowClient, run_id: str) -> bool:
    try:
        return client.get_run(run_id).info.lifecycle_stage == "active"
    except MlflowException:
        return False


def create_run(
    client: MlflowClient,
    experiment_id: str,
    resolved: ResolvedSpec,
    run_uri: str,
    kind: str,
    parent_run_id: str | None = None,
    extra_tags: dict[str, str] | None = None,
) -> str:
    """Create a run holding the resolved spec: params, YAML artifact, hash and commit tags."""
    spec = resolved.spec
    tags = {
        "mlflow.runName": spec.tracking.run_name or spec.name,
        TAG_HASH: resolved.hash,
        **source_tags(),
        TAG_RUN_DIR: run_uri,
        TAG_KIND: kind,
        **spec.tracking.tags,
        **(extra_tags or {}),
    }
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(experiment_id, tags=tags, run_name=tags["mlflow.runName"])
    run_id = run.info.run_id
    params = [Param(k, v) for k, v in flatten(resolved.to_dict()).items()]
    for i in range(0, len(params), 100):
        client.log_batch(run_id, params=params[i : i + 100])
    client.log_text(run_id, resolved.to_yaml(), SPEC_ARTIFACT)
    return run_id


def reopen_run(client: MlflowClient, run_id: str) -> None:
    """Mark a resumed run as running again."""
    client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))


def finish_run(client: MlflowClient, run_id: str, status: str, error: str | None = None) -> None:
    """End a run: status FINISHED | FAILED | KILLED, with the error text as a tag if any. A
    finished run first logs its final checkpoint and tokenizer as artifacts (see
    :mod:`pipelines.artifacts`); when that fails the run still finishes, and says so."""
    if status == "FINISHED":
        from pipelines.artifacts import log_final

        try:
            log_final(client, run_id)
        except (MlflowException, OSError) as err:
            print(
                f"difflab: warning: run {run_id}: could not log the final checkpoint as an MLflow artifact "
                f"({type(err).__name__}: {err}); eval and sample need the run folder", file=sys.stderr, flush=True,
            )
    if error:
        client.set_tag(run_id, TAG_ERROR, error[-5000:])
    client.set_terminated(run_id, status=status)


class RunLogger:
    """Rank-0 logging into an existing run. After a resume, steps already in the run's history
    are not logged again (exact resume recomputes identical values), so curves have neither
    gaps nor duplicates."""

    def __init__(self, uri: str, run_id: str):
        self.client = MlflowClient(uri)
        self.run_id = run_id
        self._logged_until: dict[str, int] = {}

    def _floor(self, key: str) -> int:
        if key not in self._logged_until:
            history = self.client.get_metric_history(self.run_id, key)
            self._logged_until[key] = max((m.step for m in history), default=-1)
        return self._logged_until[key]

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        fresh = [Metric(k, float(v), now, step) for k, v in metrics.items() if step > self._floor(k)]
        for i in range(0, len(fresh), 1000):
            self.client.log_batch(self.run_id, metrics=fresh[i : i + 1000])
        for metric in fresh:
            self._logged_until[metric.key] = step

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])


def use(uri: str) -> MlflowClient:
    """Point the fluent API and a client at ``uri``. A SQLite store is created or migrated under
    a file lock beside it, so concurrent first runs on one fresh file do not race. MLflow's
    download progress bars stay off: difflab prints what it fetched and why."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(uri)
    if not uri.startswith("sqlite:///"):
        return MlflowClient(uri)
    database = Path(uri.removeprefix("sqlite:///"))
    with file_lock(database.with_name(database.name + ".lock")):
        client = MlflowClient(uri)
        client.search_experiments(max_results=1)
    return client
