"""`difflab run`: real Ray Train (local mode and 2 gloo workers), real MLflow (SQLite)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from components.spec import load_spec
from components.tasks.sudoku import dataset
from pipelines.cli import main
from pipelines.tracking import TAG_CHECKPOINT, TAG_COMMIT, TAG_HASH, TAG_RUN_DIR
from specs import tiny_spec, write_spec


def _client(workdir: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")


def _runs(client: MlflowClient, experiment: str = "tests") -> list:
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


def _steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    last = sorted(run_dir.glob("step_*"))[-1]
    return torch.load(last / "state.pt", weights_only=True)["model"]


def test_local_run_records_params_curves_tags_and_artifacts(workdir: Path) -> None:
    path = write_spec(workdir, tiny_spec())
    assert main(["run", str(path)]) == 0
    client = _client(workdir)
    [run] = _runs(client)
    assert run.info.status == "FINISHED"
    params, tags = run.data.params, run.data.tags
    assert params["noise.kind"] == "masked" and params["train.steps"] == "12" and params["backbone.width"] == "32"
    assert tags[TAG_HASH] == load_spec(path).hash
    assert len(tags[TAG_COMMIT]) >= 7
    assert Path(tags[TAG_CHECKPOINT]).name == "step_00000012"
    assert _steps(client, run.info.run_id, "train/loss") == [2, 4, 6, 8, 10, 12]
    assert _steps(client, run.info.run_id, "eval/elbo") == [6, 12]
    for key in ("train/tokens_per_s", "train/peak_memory_gib", "eval/ppl", "eval/easy/default/puzzle_accuracy"):
        assert key in run.data.metrics, key
    artifacts = client.download_artifacts(run.info.run_id, "")
    assert (Path(artifacts) / "spec.yaml").read_text() == load_spec(path).to_yaml()
    assert (Path(artifacts) / "eval" / "step_00000012" / "sudoku_examples.md").is_file()

    # The same spec again resumes the same run (already complete): no new run, no new points.
    assert main(["run", str(path)]) == 0
    [again] = _runs(client)
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    assert _steps(client, run.info.run_id, "train/loss") == [2, 4, 6, 8, 10, 12]


def test_killed_run_resumes_exactly(workdir: Path) -> None:
    """SIGKILL the driver after its first checkpoint; the rerun continues the same MLflow run with
    a gapless, duplicate-free history and ends with the weights of an uninterrupted run."""
    spec = tiny_spec(train={"steps": 300, "log_every": 5, "checkpoint_every": 10}, eval={"every": 100})
    path = write_spec(workdir, spec)
    run_dir = workdir / "runs" / f"tiny-{load_spec(path).short_hash}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "run", str(path)],
        cwd=workdir, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while not (run_dir / "step_00000010" / "state.pt").exists():
        assert proc.poll() is None, "run ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 180 s"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = max(int(p.name[5:13]) for p in run_dir.glob("step_*") if p.name[5:13].isdigit())
    assert killed_at < 300, "the run finished before it was killed"

    client = _client(workdir)
    [interrupted] = _runs(client)
    assert interrupted.info.status == "RUNNING"  # a killed driver cannot close its run
    assert main(["run", str(path)]) == 0
    [resumed] = _runs(client)
    assert resumed.info.run_id == interrupted.info.run_id and resumed.info.status == "FINISHED"
    assert _steps(client, resumed.info.run_id, "train/loss") == list(range(5, 301, 5))
    assert _steps(client, resumed.info.run_id, "eval/elbo") == [100, 200, 300]

    spec["train"]["storage"] = "reference"
    reference = write_spec(workdir, spec, "ref.yaml")
    assert main(["run", str(reference)]) == 0
    ref_dir = workdir / "reference" / f"tiny-{load_spec(reference).short_hash}"
    got, want = _final_weights(run_dir), _final_weights(ref_dir)
    assert got.keys() == want.keys()
    for name in want:
        assert torch.equal(got[name], want[name]), name


def test_fresh_starts_a_new_run(workdir: Path) -> None:
    path = write_spec(workdir, tiny_spec(train={"steps": 4, "checkpoint_every": 2}, eval={"every": 4}))
    assert main(["run", str(path)]) == 0
    assert main(["run", str(path), "--fresh"]) == 0
    runs = _runs(_client(workdir))
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert len({r.data.tags[TAG_RUN_DIR] for r in runs}) == 1


@pytest.mark.usefixtures("ray_cluster")
def test_two_gloo_workers_train_and_rank0_logs(workdir: Path) -> None:
    held = dataset.generate_frame(dataset.SetKey("eval", "easy", 4, 6, 1), workers=1, progress=False)
    held.select(quizzes="puzzle", solutions="solution").write_csv(workdir / "extra.csv")
    spec = tiny_spec(
        loss={"kind": "x0_ce"},
        resources={"workers": 2, "cpus_per_worker": 1, "backend": "gloo"},
        train={"steps": 40, "batch_size": 16, "log_every": 5, "checkpoint_every": 20},
        eval={"every": 40, "data": "extra.csv"},  # relative: workers resolve it in the driver's folder
    )
    path = write_spec(workdir, spec)
    assert main(["run", str(path)]) == 0
    client = _client(workdir)
    [run] = _runs(client)
    assert run.info.status == "FINISHED"
    history = sorted(client.get_metric_history(run.info.run_id, "train/loss"), key=lambda m: m.step)
    assert [m.step for m in history] == list(range(5, 41, 5))  # one writer: no duplicate steps
    assert history[-1].value < history[0].value
    checkpoint = Path(run.data.tags[TAG_CHECKPOINT])
    rank_states = [torch.load(checkpoint / f"rank_{r}.pt", weights_only=True) for r in (0, 1)]
    assert "eval/file/default/puzzle_accuracy" in run.data.metrics
    # Both ranks reached the checkpoint with their own RNG streams (seeded per rank).
    assert not torch.equal(rank_states[0]["torch_rng"], rank_states[1]["torch_rng"])
