"""A finished run's final checkpoint and tokenizer as MLflow artifacts, and reading them back.

So that ``difflab eval`` and ``difflab sample`` work from any machine that reaches the tracking
server and its artifact store, even where the run folder (``train.storage``) cannot be read, a
run that finishes logs:

    checkpoint/step_N/state.pt   the shared training state of its final checkpoint (weights, EMA,
                                 optimizer, step), the file :func:`pipelines.checkpoint.load` reads
    tokenizer.json               the task's tokenizer, for tasks that have one (text)

Artifacts are read back into ``{cache}/artifacts/{run_id}/``, which later calls reuse.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from components.experiment import build_task
from components.spec import validate
from pipelines import checkpoint, tracking
from pipelines.storage import Location, cache_dir

TOKENIZER_ARTIFACT = "tokenizer.json"


def log_final(client: MlflowClient, run_id: str) -> None:
    """Log the run's final checkpoint (the one its checkpoint tag names) and its task's tokenizer."""
    folder = client.get_run(run_id).data.tags.get(tracking.TAG_CHECKPOINT)
    if not folder:
        return  # nothing trained (a sweep's parent run)
    location = Location(folder)
    path = f"{tracking.CHECKPOINT_ARTIFACT}/{location.name}"
    if any(i.path == f"{path}/{checkpoint.STATE_FILE}" for i in client.list_artifacts(run_id, path)):
        return  # a re-run of a finished run: logged the first time
    with tempfile.TemporaryDirectory(prefix="difflab-artifact-") as scratch:
        target = Path(scratch) / checkpoint.STATE_FILE
        location.download(checkpoint.STATE_FILE, target)
        client.log_artifact(run_id, str(target), path)
    tokenizer = _tokenizer_text(client, run_id)
    if tokenizer is not None:
        client.log_text(run_id, tokenizer, TOKENIZER_ARTIFACT)


def _tokenizer_text(client: MlflowClient, run_id: str) -> str | None:
    """The serialized tokenizer of the run's task (built from its logged spec; the data cache
    holds it after training), or None for tasks without one."""
    with tempfile.TemporaryDirectory(prefix="difflab-spec-") as scratch:
        text = Path(client.download_artifacts(run_id, tracking.SPEC_ARTIFACT, scratch)).read_text()
    import yaml

    task = build_task(validate(yaml.safe_load(text), f"run {run_id}").spec, cache_dir())
    tokenizer = getattr(task, "tokenizer", None)
    return tokenizer.to_str() if tokenizer is not None else None


def local_folder(run_id: str) -> Path:
    return cache_dir() / "artifacts" / run_id


def checkpoint_folder(client: MlflowClient, run_id: str) -> Location | None:
    """A local folder holding the run's logged final checkpoint (downloaded once), or None when
    the run logged none."""
    try:
        steps = [i.path for i in client.list_artifacts(run_id, tracking.CHECKPOINT_ARTIFACT) if i.is_dir]
    except MlflowException:
        return None
    if not steps:
        return None
    newest = max(steps)
    target = local_folder(run_id) / newest
    if not (target / checkpoint.STATE_FILE).is_file():
        _download(client, run_id, f"{newest}/{checkpoint.STATE_FILE}", target / checkpoint.STATE_FILE)
    return Location(str(target))


def tokenizer_file(client: MlflowClient, run_id: str) -> Path | None:
    """The run's logged tokenizer as a local file (downloaded once), or None when it logged none."""
    target = local_folder(run_id) / TOKENIZER_ARTIFACT
    if target.is_file():
        return target
    if not any(i.path == TOKENIZER_ARTIFACT for i in client.list_artifacts(run_id)):
        return None
    _download(client, run_id, TOKENIZER_ARTIFACT, target)
    return target


def _download(client: MlflowClient, run_id: str, artifact: str, target: Path) -> None:
    """Artifact file -> ``target``, renamed into place once complete (an interrupted download
    leaves no half file for the next call to trust)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="difflab-download-", dir=target.parent) as scratch:
        os.replace(client.download_artifacts(run_id, artifact, scratch), target)
