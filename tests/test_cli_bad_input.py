"""Bad input the types alone let through (booleans, oversized resources, malformed files,
out-of-range arguments): each exits 2 through the CLI, naming the YAML path or argument and what
is allowed, without a traceback, and starts nothing (no run folder, no MLflow run)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from components.spec import validate
from pipelines import tracking
from pipelines.cli import main
from specs import tiny_spec, write_spec


def _fails(capsys: pytest.CaptureFixture, argv: list[str], *needles: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("train.steps=true", ("train.steps", "got a boolean")),
        ("train.optimizer.betas=[true, 0.9]", ("train.optimizer.betas", "got a boolean")),
        ("eval.samplers={a: {kind: confidence, k: false}}", ("eval.samplers.a.k", "got a boolean")),
        ("sweep={metric: eval/elbo, mode: min, space: {noise.eps: {grid: [true]}}}", ("sweep.space.noise.eps", "got a boolean")),
    ],
)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_booleans_are_not_numbers(
    workdir: Path, capsys: pytest.CaptureFixture, command: str, override: str, needles: tuple[str, ...]
) -> None:
    path = write_spec(workdir, tiny_spec())
    _fails(capsys, [command, str(path), "--set", override], *needles)
    assert not (workdir / "runs").exists()


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("train.steps=1.0e+12", ("train.steps", "less than or equal to 10000000")),
        ("train.batch_size=99999999999999", ("train.batch_size", "less than or equal to 65536")),
        ("train.micro_batch_size=99999999999999", ("train.micro_batch_size", "less than or equal to 65536")),
        ("eval.batch_size=99999999999999", ("eval.batch_size", "less than or equal to 65536")),
        ("eval.num_samples=100000000", ("eval.num_samples", "less than or equal to 100000")),
        ("resources.workers=100000", ("resources.workers", "less than or equal to 4096")),
        ("resources.cpus_per_worker=.inf", ("resources.cpus_per_worker", "finite number")),
        ("resources.cpus_per_worker=2000", ("resources.cpus_per_worker", "less than or equal to 1024")),
        ("resources.gpus_per_worker=.nan", ("resources.gpus_per_worker", "finite number")),
        ("resources.gpus_per_worker=1000", ("resources.gpus_per_worker", "less than or equal to 64")),
    ],
)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_oversized_resources_are_rejected(
    workdir: Path, capsys: pytest.CaptureFixture, command: str, override: str, needles: tuple[str, ...]
) -> None:
    path = write_spec(workdir, tiny_spec())
    _fails(capsys, [command, str(path), "--set", override], *needles)
    assert not (workdir / "runs").exists()


def test_booleans_stay_booleans_where_a_field_takes_them(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_spec(workdir, tiny_spec())
    assert main(["validate", str(path), "--set", "task.augment=false", "--set", "train.compile=true"]) == 0
    out = capsys.readouterr().out
    assert "augment: false" in out and "compile: true" in out


SOLUTION = "1234341221434321"
PUZZLE = "1.3.3..2.1.3...1"
PUZZLE_FILES = {
    "columns.csv": ("a,b\n1,2\n", "match no known format"),
    "length.csv": (f"quizzes,solutions\n{PUZZLE[:-1]},{SOLUTION}\n", "data row 1: puzzle does not have 16 characters"),
    "invalid.csv": (f"quizzes,solutions\n{PUZZLE},{'1' * 16}\n", "data row 1: solution is not a valid grid"),
    "disagree.csv": (f"quizzes,solutions\n2{PUZZLE[1:]},{SOLUTION}\n", "data row 1: solution disagrees with a given"),
    "character.csv": (f"quizzes,solutions\nx{PUZZLE[1:]},{SOLUTION}\n", "data row 1: puzzle has a character outside"),
    "header.csv": ("quizzes,solutions\n", "no puzzles (only a header"),
    "empty.csv": ("", "cannot be read as CSV"),
    "binary.csv": (bytes(range(256)) * 4, "cannot be read as CSV"),
    "puzzles.txt": ("quizzes,solutions\n", "unknown file type (expected .csv, .csv.gz or .parquet)"),
    "missing.csv": (None, "no such file"),
    "folder.csv": ("folder", "not a file"),
}


def _puzzle_file(folder: Path, name: str) -> tuple[Path, str]:
    content, problem = PUZZLE_FILES[name]
    path = folder / name
    if content == "folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    return path, problem


@pytest.fixture
def logged_run(workdir: Path) -> str:
    """A run in ./mlflow.db holding the tiny spec and no checkpoint (eval checks come first)."""
    resolved = validate(tiny_spec())
    uri = tracking.resolve_uri(None)
    client = tracking.use(uri)
    experiment_id = tracking.ensure_experiment(client, "tests", uri)
    return tracking.create_run(client, experiment_id, resolved, str(workdir / "runs" / "none"), "run")


@pytest.mark.parametrize("name", sorted(PUZZLE_FILES))
def test_eval_rejects_a_bad_puzzle_file(workdir: Path, logged_run: str, capsys: pytest.CaptureFixture, name: str) -> None:
    path, problem = _puzzle_file(workdir, name)
    _fails(capsys, ["eval", logged_run, "--set", f"eval.data={path}"], "eval.data", str(path), problem)
    assert tracking.use(tracking.resolve_uri(None)).get_run(logged_run).data.metrics == {}


def test_eval_accepts_the_puzzles_alias(workdir: Path, logged_run: str, capsys: pytest.CaptureFixture) -> None:
    good = workdir / "good.csv"
    good.write_text(f"quizzes,solutions\n{PUZZLE},{SOLUTION}\n")
    bad, problem = _puzzle_file(workdir, "invalid.csv")
    _fails(capsys, ["eval", logged_run, "--set", f"eval.puzzles={bad}"], "eval.data", problem)
    _fails(capsys, ["eval", logged_run, "--set", f"eval.puzzles={good}"], "has no checkpoint")


@pytest.mark.parametrize("name", ["invalid.csv", "header.csv", "folder.csv"])
def test_run_checks_the_eval_file_before_anything_starts(workdir: Path, capsys: pytest.CaptureFixture, name: str) -> None:
    path, problem = _puzzle_file(workdir, name)
    spec = write_spec(workdir, tiny_spec())
    _fails(capsys, ["run", str(spec), "--set", f"eval.data={path}"], "eval.data", str(path), problem)
    assert not (workdir / "runs").exists()
    assert tracking.use(tracking.resolve_uri(None)).get_experiment_by_name("tests") is None


def test_sample_count_has_an_upper_bound(workdir: Path, logged_run: str, capsys: pytest.CaptureFixture) -> None:
    _fails(capsys, ["sample", logged_run, "-n", "100000000"], "-n", "between 1 and 100000", "100000000")


def test_leaderboard_output_into_a_missing_folder(workdir: Path, logged_run: str, capsys: pytest.CaptureFixture) -> None:
    _fails(capsys, ["leaderboard", "tests", "--output", "missing/dir/x.csv"], "--output", str(workdir / "missing" / "dir"), "does not exist")


@pytest.mark.skipif(importlib.util.find_spec("psycopg") is not None, reason="the PostgreSQL driver is installed")
def test_postgres_store_without_its_driver(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    uri = "postgresql://mlflow:secret@db:5432/mlflow"
    path = write_spec(workdir, tiny_spec(tracking={"uri": uri}))
    err = _fails(capsys, ["run", str(path)], "postgresql://mlflow:***@db:5432/mlflow", "psycopg", "difflab[postgres]")
    assert "secret" not in err
    assert not (workdir / "runs").exists()
    _fails(capsys, ["leaderboard", "--uri", uri], "difflab[postgres]")


def _sweep(metric: str) -> dict:
    return {"metric": metric, "mode": "max", "space": {"task.eval_tiers": {"grid": [["easy"], ["easy", "hard"]]}}}


@pytest.mark.parametrize(
    ("metric", "needles"),
    [
        ("eval/puzzle_accuracy", ("never reported by this spec", "eval/easy/default/cell_accuracy", "eval/elbo")),
        ("eval/medium/default/cell_accuracy", ("never reported", "eval/hard/default/puzzle_accuracy")),
        ("puzzle_accuracy", ("never reported", "train/* or eval/*")),
    ],
)
def test_sweep_metric_no_trial_reports(workdir: Path, capsys: pytest.CaptureFixture, metric: str, needles: tuple[str, ...]) -> None:
    path = write_spec(workdir, tiny_spec(sweep=_sweep(metric)))
    _fails(capsys, ["validate", str(path)], "sweep.metric", metric, *needles)


@pytest.mark.parametrize("metric", ["eval/elbo", "eval/ppl", "eval/hard/default/cell_accuracy", "train/loss"])
def test_sweep_metrics_the_spec_reports_pass(workdir: Path, capsys: pytest.CaptureFixture, metric: str) -> None:
    assert main(["validate", str(write_spec(workdir, tiny_spec(sweep=_sweep(metric))))]) == 0
