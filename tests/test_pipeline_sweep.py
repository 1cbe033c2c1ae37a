"""`difflab sweep`: real Ray Tune + Train workers, MLflow parent/child runs, a failing trial."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from mlflow.tracking import MlflowClient

from components.spec import load_spec
from components.tasks.sudoku.grid import array_to_texts
from pipelines.cli import main
from components.experiment import build_task
from pipelines.launch import cache_dir
from pipelines.tracking import TAG_ERROR, TAG_KIND
from specs import tiny_spec, write_spec


def _write_puzzle_file(spec_path: Path, out: Path) -> Path:
    """Held-out 4x4 puzzles of the spec's own task, in the Kaggle CSV format."""
    task = build_task(load_spec(spec_path).spec, cache_dir())
    task.prepare()
    data = next(iter(task.eval_sets().values()))
    pl.DataFrame({"quizzes": array_to_texts(data.puzzles), "solutions": array_to_texts(data.solutions)}).write_csv(out)
    return out


@pytest.mark.slow  # about 70 s on 2 cores; tests/test_sweep_resume.py runs a real sweep by default
@pytest.mark.usefixtures("ray_cluster")
def test_asha_sweep_records_parent_children_and_a_failed_trial(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    base = write_spec(workdir, tiny_spec())
    good = _write_puzzle_file(base, workdir / "held_out.csv")
    spec = tiny_spec(
        sweep={
            "metric": "eval/easy/default/cell_accuracy",
            "mode": "max",
            "scheduler": {"kind": "asha", "grace_steps": 6, "reduction_factor": 2},
            # The third trial names an eval file that does not exist: it fails before training.
            "space": {"eval.data": {"grid": [None, str(good), str(workdir / "missing.csv")]}},
        }
    )
    path = write_spec(workdir, spec)
    assert main(["sweep", str(path), "--format", "csv"]) == 0
    printed = capsys.readouterr().out

    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tests").experiment_id
    runs = client.search_runs([experiment])
    [parent] = [r for r in runs if r.data.tags.get(TAG_KIND) == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED" and len(children) == 3
    failed = [r for r in children if r.info.status == "FAILED"]
    assert len(failed) == 1 and "missing.csv" in failed[0].data.tags[TAG_ERROR]
    ok = [r for r in children if r.info.status != "FAILED"]
    assert all(r.info.status in ("FINISHED", "KILLED") for r in ok)
    assert all("eval/easy/default/cell_accuracy" in r.data.metrics for r in ok)
    # The sweep printed its leaderboard: every trial, the swept parameter, best first.
    board = pl.read_csv(printed[printed.index("run,status") :].split("\n\n")[0].encode())
    assert board.height == 3 and "eval.data" in board.columns
    assert board["status"].to_list()[-1] == "FAILED"
    scores = board["eval/easy/default/cell_accuracy"].drop_nulls().to_list()
    assert scores == sorted(scores, reverse=True) and len(scores) == 2
