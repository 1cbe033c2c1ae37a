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


def test_booleans_stay_booleans_where_a_field_takes_them(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_spec(workdir, tiny_spec())
    assert main(["validate", str(path), "--set", "task.augment=false", "--set", "train.compile=true"]) == 0
    out = capsys.readouterr().out
    assert "augment: false" in out and "compile: true" in out
