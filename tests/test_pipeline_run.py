"""`difflab run`: real Ray Train (local mode and 2 gloo workers), real MLflow (SQLite)."""

from __future__ import annotations

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
