"""The 10-minute 9x9 CPU recipe (experiments/sudoku/cpu/masked.yaml), shrunk to CI size, trains
through the real pipeline (`difflab run`, Ray Train local mode, MLflow SQLite) and learns:
held-out easy puzzles get far more blank cells right than chance (1/9)."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from pipelines.cli import main

SPEC = Path(__file__).resolve().parents[1] / "experiments/sudoku/cpu/masked.yaml"
SHRUNK = [
    "task.train_puzzles=300",
    "task.eval_puzzles=50",
    "task.workers=1",
    "backbone.layers=2",
    "backbone.width=64",
    "backbone.ffn=128",
    "train.steps=80",
    "train.batch_size=64",
    "train.log_every=20",
    "train.checkpoint_every=80",
    "schedule.lr.warmup_steps=10",
    "schedule.lr.peak=3.0e-3",
    "eval.every=80",
    "eval.batch_size=50",
    "eval.num_samples=50",
]


def test_shrunk_cpu_recipe_learns_the_rules(workdir: Path) -> None:
    """The same structure (row/column/box positions, peer attention), data protocol and loss at
    2 layers x 64 wide and 80 steps: cell accuracy on blank cells of 50 held-out easy puzzles
    well above chance (1/9); the untrained model is at chance."""
    assert main(["run", str(SPEC), *[arg for pair in zip(["--set"] * len(SHRUNK), SHRUNK) for arg in pair]]) == 0
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("sudoku-cpu").experiment_id])
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert metrics["eval/easy/k1/cell_accuracy"] > 0.5, metrics
    assert metrics["eval/easy/k81/cell_accuracy"] > 0.3, metrics
