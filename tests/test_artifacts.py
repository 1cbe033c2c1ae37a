"""What a finished run records in MLflow for its users: the standard source tags, no null
params, and its final checkpoint as an artifact, so `difflab eval` / `difflab sample` work where
the run folder cannot be read (real training in Ray Train local mode, real MLflow SQLite)."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipelines.cli import main
from pipelines.tracking import TAG_RUN_DIR
from specs import tiny_spec, write_spec

REPO = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()


def _only_run(workdir: Path):
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    return client, run


def test_source_tags_and_no_null_params(workdir: Path) -> None:
    assert main(["run", str(write_spec(workdir, tiny_spec(train={"steps": 2, "checkpoint_every": 2}, eval={"every": 2})))]) == 0
    client, run = _only_run(workdir)
    tags, params = run.data.tags, run.data.params
    assert tags["mlflow.source.git.commit"] == _git("rev-parse", "HEAD")
    assert tags["difflab.git_dirty"] == str(bool(_git("status", "--porcelain", "--untracked-files=no"))).lower()
    assert tags["mlflow.user"] == getpass.getuser()
    assert "None" not in params.values()
    assert "tracking.run_name" not in params and "train.micro_batch_size" not in params  # null in the spec
    spec = Path(client.download_artifacts(run.info.run_id, "spec.yaml")).read_text()
    assert "run_name: null" in spec and "micro_batch_size: null" in spec  # the artifact keeps them


def test_eval_and_sample_work_from_the_logged_checkpoint_without_the_run_folder(
    workdir: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["run", str(write_spec(workdir, tiny_spec()))]) == 0
    client, run = _only_run(workdir)
    run_id = run.info.run_id
    logged = [a.path for a in client.list_artifacts(run_id, "checkpoint/step_00000012")]
    assert logged == ["checkpoint/step_00000012/state.pt"]
    trained_elbo = {m.step: m.value for m in client.get_metric_history(run_id, "eval/elbo")}[12]

    folder = Path(run.data.tags[TAG_RUN_DIR])
    folder.rename(folder.with_name(folder.name + ".elsewhere"))  # the run folder is not reachable here
    capsys.readouterr()
    assert main(["eval", run_id[:8]]) == 0
    captured = capsys.readouterr()
    assert "using the one it logged to MLflow (checkpoint/step_00000012)" in captured.err
    printed = dict(line.split(": ") for line in captured.out.splitlines())
    # The same final weights and the same evaluation seed as at the end of training.
    assert float(printed["eval/elbo"]) == pytest.approx(trained_elbo, rel=1e-5)

    assert main(["sample", "tiny", "-n", "2"]) == 0
    assert capsys.readouterr().out.count("--- sample") == 2


def test_without_the_folder_or_a_logged_checkpoint_eval_says_so(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", str(write_spec(workdir, tiny_spec(train={"steps": 2, "checkpoint_every": 2}, eval={"every": 2})))]) == 0
    client, run = _only_run(workdir)
    # Remove the logged copy where the embedded store keeps it, and the run folder.
    logged = Path(run.info.artifact_uri.removeprefix("file://")) / "checkpoint"
    assert (logged / "step_00000002" / "state.pt").is_file()
    shutil.rmtree(logged)
    folder = Path(run.data.tags[TAG_RUN_DIR])
    folder.rename(folder.with_name(folder.name + ".elsewhere"))
    capsys.readouterr()
    assert main(["eval", run.info.run_id]) == 2
    err = capsys.readouterr().err
    assert "is not reachable here" in err and "Traceback" not in err


def test_a_text_run_logs_its_tokenizer_and_eval_uses_it_on_a_fresh_cache(
    workdir: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A trained BPE lives in the data cache; on a machine without that cache, eval reads the
    logged tokenizer instead of training one again."""
    words = ["red", "fox", "runs", "over", "the", "lazy", "dog", "and", "a", "cat", "sleeps", "today"]
    (workdir / "corpus.txt").write_text("\n".join(" ".join(words[(i + j) % 12] for j in range(8)) for i in range(120)) + "\n")
    spec = {
        "name": "text-tiny",
        "task": {"kind": "text", "source": {"path": "corpus.txt", "sample_by": "line"}, "validation": {"last_documents": 20},
                 "tokenizer": {"train": {"vocab_size": 300}}, "seq_len": 16},
        "noise": {"kind": "masked"}, "loss": {"kind": "mdlm"},
        "backbone": {"kind": "dit", "layers": 1, "heads": 2, "width": 32, "cond_dim": 16},
        "sampler": {"kind": "ancestral", "steps": 4},
        "train": {"steps": 2, "batch_size": 4, "log_every": 1, "checkpoint_every": 2},
        "eval": {"every": 2, "batches": 1, "batch_size": 4, "num_samples": 2},
        "tracking": {"experiment": "tests"},
    }
    assert main(["run", str(write_spec(workdir, spec))]) == 0
    client, run = _only_run(workdir)
    bpe = [p for p in (Path(os.environ["DIFFLAB_CACHE"]) / "text" / "tokenizers").glob("bpe-*.json")
           if p.read_text() == Path(client.download_artifacts(run.info.run_id, "tokenizer.json", str(workdir))).read_text()]
    assert len(bpe) == 1  # the logged tokenizer is the one training used
    trained_elbo = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "eval/elbo")}[2]

    fresh = tmp_path_factory.mktemp("other-machine-cache")
    monkeypatch.setenv("DIFFLAB_CACHE", str(fresh))
    folder = Path(run.data.tags[TAG_RUN_DIR])
    folder.rename(folder.with_name(folder.name + ".elsewhere"))
    capsys.readouterr()
    assert main(["eval", "text-tiny"]) == 0
    printed = dict(line.split(": ") for line in capsys.readouterr().out.splitlines())
    assert float(printed["eval/elbo"]) == pytest.approx(trained_elbo, rel=1e-5)
    assert not list(fresh.rglob("bpe-*.json"))  # no tokenizer trained again
