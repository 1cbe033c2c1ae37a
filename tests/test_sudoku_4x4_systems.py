"""The issue-6 systems train to 100% held-out 4x4 Sudoku through the real pipeline (`difflab run`,
Ray Train local mode, MLflow SQLite): GDDS with the digit kernel, edit noise, and the two-head
model with the scheduled gate. About 45-65 s each on a shared 2-core CPU, hence ``slow``."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipelines.cli import main

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec, samplers",
    [("4x4-gdds.yaml", ["k1"]), ("4x4-edit.yaml", ["k1", "edit"]), ("4x4-two-head.yaml", ["k1", "gated"])],
)
def test_system_solves_every_held_out_puzzle(workdir: Path, spec: str, samplers: list[str]) -> None:
    (workdir / "experiments").symlink_to(EXPERIMENTS)  # the gdds kernel file is relative to the cwd
    assert main(["run", f"experiments/sudoku/{spec}"]) == 0
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("sudoku").experiment_id])
    assert run.info.status == "FINISHED"
    for name in samplers:
        assert run.data.metrics[f"eval/easy/{name}/puzzle_accuracy"] == 1.0, name
