"""Sweep identity and resume through the CLI, real Ray Tune + Train and MLflow on SQLite: a
SIGKILLed sweep re-run ends with each trial exactly once and nothing RUNNING; a finished sweep
returns without Ray; another sweep over the same trials takes them over (re-parented);
seeds are grouped (mean, std, n); leaderboard --metric is checked against logged names."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from mlflow.tracking import MlflowClient

from pipelines.cli import main
from pipelines.sweep import TAG_BEST
from pipelines.tracking import TAG_KIND
from specs import tiny_spec, write_spec

ROOT = Path(__file__).resolve().parents[1]


def _runs(workdir: Path) -> tuple[MlflowClient, list]:
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tests")
    return client, ([] if experiment is None else client.search_runs([experiment.experiment_id]))


def _csv_after(printed: str, header: str) -> pl.DataFrame:
    return pl.read_csv(printed[printed.index(header) :].split("\n\n")[0].encode())


@pytest.mark.usefixtures("ray_cluster")
def test_killed_sweep_resumes_each_trial_once_then_returns_at_once(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    spec = write_spec(workdir, tiny_spec(train={"steps": 24, "checkpoint_every": 4, "log_every": 2}))
    args = ["sweep", str(spec), "--grid", "train.optimizer.weight_decay=0.0", "--seeds", "2", "--metric", "eval/elbo", "--mode", "min"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args], cwd=workdir, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:  # SIGKILL the whole sweep (driver, Ray, workers) once a trial has logged training metrics
        while time.monotonic() < deadline and proc.poll() is None:
            _, runs = _runs(workdir)
            if any(r.data.tags.get(TAG_KIND) == "trial" and "train/loss" in r.data.metrics for r in runs):
                break
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    _, runs = _runs(workdir)
    assert any(r.info.status == "RUNNING" for r in runs), "the kill left nothing unfinished: the test proves nothing"

    assert main([*args, "--format", "csv"]) == 0
    printed = capsys.readouterr().out
    client, runs = _runs(workdir)
    [parent] = [r for r in runs if r.data.tags.get(TAG_KIND) == "sweep"]
    trials = [r for r in runs if r.data.tags.get(TAG_KIND) == "trial"]
    assert sorted(r.data.params["train.seed"] for r in trials) == ["0", "1"]  # each trial exactly once
    assert all(r.info.status == "FINISHED" for r in runs)  # parent and trials: nothing left RUNNING
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in trials)
    assert "trial 1 wd=0 seed=0: started" in printed or "trial 1 wd=0 seed=0: finished" in printed
    # Seeds are grouped: one configuration, n = 2, mean and sample std of the two trials.
    board = _csv_after(printed, "config,")
    values = [r.data.metrics["eval/elbo"] for r in trials]
    assert board.height == 1 and board["n"][0] == 2
    assert board["eval/elbo"][0] == pytest.approx(statistics.mean(values))
    assert board["eval/elbo std"][0] == pytest.approx(statistics.stdev(values))
    assert parent.data.metrics["eval/elbo"] == pytest.approx(statistics.mean(values)) and parent.data.tags[TAG_BEST] == "wd=0"

    # Same sweep again: every trial has finished, so it returns without starting any trial.
    started = time.monotonic()
    assert main([*args, "--format", "csv"]) == 0
    assert time.monotonic() - started < 20
    again = capsys.readouterr()
    assert "every trial of this sweep has finished" in again.err and ": started" not in again.out
    _, after = _runs(workdir)
    assert len(after) == len(runs)

    # Another sweep (other metric: other identity) over the same trials takes them over.
    assert main(["sweep", str(spec), "--grid", "train.optimizer.weight_decay=0.0", "--seeds", "2",
                 "--metric", "eval/bits_per_token", "--mode", "min", "--format", "csv"]) == 0
    _, runs = _runs(workdir)
    parents = [r for r in runs if r.data.tags.get(TAG_KIND) == "sweep"]
    newest = max(parents, key=lambda r: r.info.start_time)
    assert len(parents) == 2 and newest.info.run_id != parent.info.run_id
    assert all(r.data.tags["mlflow.parentRunId"] == newest.info.run_id for r in runs if r.data.tags.get(TAG_KIND) == "trial")
    capsys.readouterr()

    # The leaderboard defaults to the newest sweep and its metric; a metric nobody logged exits 2.
    assert main(["leaderboard", "tests", "--format", "csv"]) == 0
    board = _csv_after(capsys.readouterr().out, "config,")
    assert "eval/bits_per_token" in board.columns and board["n"][0] == 2
    assert main(["leaderboard", "tests", "--metric", "eval/nope"]) == 2
    err = capsys.readouterr().err
    assert "eval/nope" in err and "eval/elbo" in err and "Traceback" not in err
