"""Bad input that the spec's types alone let through: each exits 2 through the CLI, naming the
YAML path or argument and what is allowed, without a traceback, and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

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
