"""`difflab sweep --dry-run` and `--grid/--seeds` misuse: the trial list is printed and nothing
starts (no Ray, no MLflow run); bad arguments exit 2 naming the argument, without a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipelines.cli import main
from specs import tiny_spec, write_spec


def test_dry_run_lists_configurations_times_seeds_and_starts_nothing(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    spec = write_spec(workdir, tiny_spec(resources={"workers": 2, "cpus_per_worker": 0.5}))
    code = main(["sweep", str(spec), "--grid", "schedule.lr.peak=0.001,0.003", "--grid", "train.optimizer.weight_decay=0,0.1",
                 "--seeds", "3", "--metric", "eval/elbo", "--mode", "min", "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    lines = re.findall(r"^  (trial \d+ .*?)\s{2,}(.*)$", out, flags=re.M)
    assert len(lines) == 2 * 2 * 3 and "12 trials: 4 configuration(s) x 3 seed(s)" in out
    assert lines[0] == ("trial 1 peak=0.001 wd=0 seed=0", "schedule.lr.peak=0.001 train.optimizer.weight_decay=0 train.seed=0")
    assert lines[-1][0] == "trial 12 peak=0.003 wd=0.1 seed=2"
    assert "2 worker(s) x 0.5 CPU" in out and re.search(r"\d+ at once", out)
    assert MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}").get_experiment_by_name("tests") is None
    assert not (workdir / "runs").exists()


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--grid", "noise.p_uniform"], "--grid"),
        (["--grid", "train.optimizer.weight_decay=0,"], "--grid"),
        (["--grid", "train.nope=0,1", "--metric", "eval/elbo", "--mode", "min"], "sweep.space.train.nope"),
        (["--grid", "train.optimizer.weight_decay=0,0.1"], "--metric"),  # the spec has no sweep: section
        (["--seeds", "2"], "--grid"),
        (["--grid", "train.optimizer.weight_decay=0,1", "--seeds", "0", "--metric", "eval/elbo", "--mode", "min"], "--seeds"),
        (["--grid", "train.optimizer.weight_decay=0,1", "--metric", "eval/nope", "--mode", "min"], "sweep.metric"),
    ],
)
def test_sweep_misuse_exits_2_naming_the_argument(workdir: Path, capsys: pytest.CaptureFixture, extra: list[str], named: str) -> None:
    spec = write_spec(workdir, tiny_spec())
    assert main(["sweep", str(spec), *extra, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err
