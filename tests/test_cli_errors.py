"""Every command exits 2 with a clear message (no traceback) on a bad spec, an unknown run id or
an unreachable tracking store, and starts nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.cli import main
from specs import tiny_spec, write_spec

DEAD_URI = "http://127.0.0.1:9"  # discard port: nothing listens there


def _fails(capsys: pytest.CaptureFixture, argv: list[str], *needles: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


@pytest.fixture
def bad_spec(workdir: Path) -> Path:
    spec = tiny_spec(noise={"kind": "masked", "eps": 2.0}, train={"stepz": 3})
    return write_spec(workdir, spec, "bad.yaml")


@pytest.mark.parametrize("command", ["validate", "run", "sweep"])
def test_bad_spec_exits_2_naming_each_field(workdir: Path, bad_spec: Path, capsys, command: str) -> None:
    _fails(capsys, [command, str(bad_spec)], "noise.eps", "less than 1", "train.stepz", "allowed: batch_size")
    assert not (workdir / "runs").exists()


@pytest.mark.parametrize("command", ["validate", "run", "sweep"])
def test_missing_spec_file_exits_2(workdir: Path, capsys, command: str) -> None:
    _fails(capsys, [command, str(workdir / "nope.yaml")], "file not found")


def test_bad_override_exits_2(workdir: Path, capsys) -> None:
    path = write_spec(workdir, tiny_spec())
    _fails(capsys, ["validate", str(path), "--set", "noise.kind=gaussian"], "noise.kind", "allowed: ")
    _fails(capsys, ["validate", str(path), "--set", "nokey"], "expected dotted.path=value")


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_unreachable_tracking_server_exits_2_before_training(workdir: Path, capsys, command: str) -> None:
    spec = tiny_spec(tracking={"experiment": "x", "uri": DEAD_URI})
    spec["sweep"] = {"metric": "eval/elbo", "mode": "min", "space": {"train.seed": {"grid": [0, 1]}}}
    _fails(capsys, [command, str(write_spec(workdir, spec))], DEAD_URI, "unreachable")
    assert not (workdir / "runs").exists()


@pytest.mark.parametrize(
    "argv", [["eval", "abc123"], ["sample", "abc123"], ["leaderboard", "tests"], ["leaderboard", "--sweep", "abc"]]
)
def test_unreachable_uri_for_run_commands(workdir: Path, capsys, argv: list[str]) -> None:
    _fails(capsys, [*argv, "--uri", DEAD_URI], DEAD_URI)


@pytest.mark.parametrize("command", ["eval", "sample"])
def test_unknown_run_id_exits_2(workdir: Path, capsys, command: str) -> None:
    _fails(capsys, [command, "0123456789abcdef"], "no run with id '0123456789abcdef'")


def test_unknown_experiment_and_sweep_exit_2(workdir: Path, capsys) -> None:
    _fails(capsys, ["leaderboard", "no-such-experiment"], "no experiment named 'no-such-experiment'")
    _fails(capsys, ["leaderboard", "--sweep", "feedbeef"], "no run with id 'feedbeef'")


def test_sweep_without_sweep_section_and_missing_eval_file(workdir: Path, capsys) -> None:
    path = write_spec(workdir, tiny_spec())
    _fails(capsys, ["sweep", str(path)], "sweep", "use `difflab run`")
    missing = write_spec(workdir, tiny_spec(eval={"data": str(workdir / "gone.csv")}), "missing.yaml")
    _fails(capsys, ["run", str(missing)], "eval.data:", "gone.csv: no such file")
    assert not (workdir / "runs").exists()


def test_console_script_exit_status_and_no_traceback(workdir: Path, bad_spec: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "validate", str(bad_spec)], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "noise.eps" in done.stderr and "Traceback" not in done.stderr
