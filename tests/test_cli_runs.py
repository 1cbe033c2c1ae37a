"""`difflab runs | show | diff | rm` through the real CLI, on runs that real training (Ray Train
local mode) recorded in a real MLflow SQLite store."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from components.spec import load_spec
from pipelines.cli import main
from pipelines.tracking import TAG_RUN_DIR
from specs import tiny_spec, write_spec

SHORT = {"train": {"steps": 4, "checkpoint_every": 2, "log_every": 2}, "eval": {"every": 4}}
WD = ["--set", "train.optimizer.weight_decay=0.1", "--set", "tracking.run_name=wd"]


def _client(workdir: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")


def _by_name(client: MlflowClient) -> dict:
    experiment = client.get_experiment_by_name("tests")
    return {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}


def _out(capsys: pytest.CaptureFixture, argv: list[str], status: int = 0) -> str:
    assert main(argv) == status
    return capsys.readouterr().out


@pytest.fixture
def two_runs(workdir: Path, capsys: pytest.CaptureFixture) -> tuple[Path, dict]:
    """Two finished runs: ``tiny`` and ``wd`` (weight decay 0.1)."""
    path = write_spec(workdir, tiny_spec(**SHORT))
    assert main(["run", str(path)]) == 0
    assert main(["run", str(path), *WD]) == 0
    capsys.readouterr()
    return path, _by_name(_client(workdir))


def test_runs_lists_name_status_metric_age_and_hash(two_runs: tuple[Path, dict], capsys: pytest.CaptureFixture) -> None:
    path, runs = two_runs
    listed = _out(capsys, ["runs", "tests"])
    rows = {line.split("│")[2].strip(): line for line in listed.splitlines() if line.startswith("│")}
    assert set(rows) == {"tiny", "wd"}
    for name, overrides in (("tiny", []), ("wd", WD[1::2])):
        row, run = rows[name], runs[name]
        assert run.info.run_id[:8] in row and "FINISHED" in row and "tests" in row
        assert load_spec(path, overrides).hash[:12] in row  # the hash of the spec as the CLI resolves it
        assert f"eval/elbo {run.data.metrics['eval/elbo']:.5g}" in row
    assert listed.index("wd") < listed.index("tiny")  # newest first
    assert "2 run(s)" in _out(capsys, ["runs"])  # every experiment


def test_show_prints_spec_metrics_artifacts_and_checkpoint(two_runs: tuple[Path, dict], capsys: pytest.CaptureFixture) -> None:
    path, runs = two_runs
    run = runs["tiny"]
    shown = _out(capsys, ["show", run.info.run_id[:6]])  # a unique prefix
    assert shown.startswith(f"run {run.info.run_id}  tiny")
    assert load_spec(path).to_yaml().strip() in shown
    folder = run.data.tags[TAG_RUN_DIR]
    assert f"run folder  {folder} (step_00000004, step_00000002)" in shown
    assert "artifact    checkpoint/step_00000004/state.pt" in shown
    assert f"{run.data.metrics['eval/elbo']:.6g}" in shown and "spec.yaml" in shown
    assert _out(capsys, ["show", "wd"]).startswith(f"run {runs['wd'].info.run_id}  wd")  # by name


def test_diff_shows_changed_spec_leaves_and_metric_deltas(two_runs: tuple[Path, dict], capsys: pytest.CaptureFixture) -> None:
    _, runs = two_runs
    shown = _out(capsys, ["diff", "tiny", "wd"])
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]] for line in shown.splitlines() if line.startswith("│")}
    assert rows["train.optimizer.weight_decay"] == ["0.0", "0.1"]
    assert rows["tracking.run_name"] == ["null", "wd"]
    assert "noise.kind" not in rows and "train.steps" not in rows
    a, b = runs["tiny"].data.metrics, runs["wd"].data.metrics
    assert rows["eval/elbo"] == [f"{a['eval/elbo']:.6g}", f"{b['eval/elbo']:.6g}", f"{b['eval/elbo'] - a['eval/elbo']:+.6g}"]


def test_rm_asks_deletes_the_run_and_its_folder_only(
    two_runs: tuple[Path, dict], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, workdir: Path, data_cache: Path
) -> None:
    _, runs = two_runs
    tiny, wd = runs["tiny"], runs["wd"]
    tiny_folder, wd_folder = Path(tiny.data.tags[TAG_RUN_DIR]), Path(wd.data.tags[TAG_RUN_DIR])
    cached = sorted(p for p in data_cache.rglob("*") if p.is_file())

    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    assert main(["rm", "wd"]) == 1
    assert wd_folder.is_dir() and _client(workdir).get_run(wd.info.run_id).info.lifecycle_stage == "active"

    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert main(["rm", "wd"]) == 0
    assert not wd_folder.exists()
    assert _client(workdir).get_run(wd.info.run_id).info.lifecycle_stage == "deleted"
    assert tiny_folder.is_dir() and _client(workdir).get_run(tiny.info.run_id).info.lifecycle_stage == "active"
    assert sorted(p for p in data_cache.rglob("*") if p.is_file()) == cached
    assert "1 run(s)" in _out(capsys, ["runs"])


def test_rm_keeps_a_folder_that_another_run_resumed(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    """After --fresh the folder records the new run: removing the old run leaves it alone."""
    path = write_spec(workdir, tiny_spec(**SHORT))
    assert main(["run", str(path)]) == 0
    assert main(["run", str(path), "--fresh"]) == 0
    old, new = sorted(_client(workdir).search_runs([_client(workdir).get_experiment_by_name("tests").experiment_id]),
                      key=lambda r: r.info.start_time)
    folder = Path(new.data.tags[TAG_RUN_DIR])
    assert main(["rm", old.info.run_id, "--yes"]) == 0
    assert "keep run folder" in capsys.readouterr().err
    assert (folder / "step_00000004").is_dir()
    assert _client(workdir).get_run(old.info.run_id).info.lifecycle_stage == "deleted"
    assert _client(workdir).get_run(new.info.run_id).info.lifecycle_stage == "active"


def test_misuse_exits_2_naming_the_argument(two_runs: tuple[Path, dict], workdir: Path, capsys: pytest.CaptureFixture) -> None:
    path, runs = two_runs
    assert main(["run", str(path), "--set", "tracking.run_name=wd", "--set", "train.steps=2"]) == 0  # a second "wd"
    capsys.readouterr()
    assert main(["show", "wd"]) == 2
    err = capsys.readouterr().err
    assert "RUN 'wd' matches 2 runs" in err and runs["wd"].info.run_id in err and "Traceback" not in err
    assert main(["diff", "tiny", "nosuch"]) == 2
    assert "RUN_B: no run with id 'nosuch'" in capsys.readouterr().err
    assert main(["rm", "tiny", "nosuch", "--yes"]) == 2
    assert Path(runs["tiny"].data.tags[TAG_RUN_DIR]).is_dir()  # nothing deleted when one RUN is unknown
    assert main(["runs", "nosuch"]) == 2
    assert "EXPERIMENT 'nosuch' does not exist" in capsys.readouterr().err
    assert main(["runs", "--limit", "0"]) == 2
    assert "--limit" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["rm"])
    assert exit_info.value.code == 2 and "RUN" in capsys.readouterr().err
