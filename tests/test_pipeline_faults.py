"""Faults on purpose, through the CLI with a real MLflow store: concurrent first runs, a lost
store, a run folder in use, NaN losses, broken checkpoints, unwritable storage. Each ends in a
clean recovery or a clear exit, never a lost checkpoint or a corrupted store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from components.losses.mdlm import MdlmLoss
from components.spec import load_spec
from pipelines.cli import main
from pipelines.tracking import TAG_ERROR, TAG_RESUMED_FROM
from specs import tiny_spec, write_spec


def _client(folder: Path, path: str = "mlflow.db") -> MlflowClient:
    """``path``: another spelling of the database's path opens it anew (MLflow caches a store per URI)."""
    return MlflowClient(f"sqlite:///{folder}/{path}")


def _runs(folder: Path, path: str = "mlflow.db") -> list:
    client = _client(folder, path)
    found = client.get_experiment_by_name("tests")
    return [] if found is None else client.search_runs([found.experiment_id])


def _run_folder(folder: Path, spec: Path) -> Path:
    resolved = load_spec(spec)
    return folder / "runs" / f"{resolved.spec.name}-{resolved.short_hash}"


def _cli(folder: Path, *args: str) -> tuple[int, str]:
    """``difflab`` in a new process (a fresh MLflow store cache): (exit status, stderr)."""
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=folder, env=os.environ.copy(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
    return done.returncode, done.stderr


def _snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.glob("step_*/*.pt"))}


def test_concurrent_first_runs_on_a_fresh_store_both_succeed(tmp_path: Path, data_cache: Path) -> None:
    """An empty folder (no pre-migrated database): two drivers create and migrate it at once."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env["DIFFLAB_CACHE"] = str(data_cache)
    specs = [write_spec(tmp_path, tiny_spec(name=f"first{i}", train={"steps": 2}, eval={"every": 2}), f"s{i}.yaml")
             for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", str(s)], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for s in specs]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert sorted(r.data.tags["mlflow.runName"] for r in _runs(tmp_path)) == ["first0", "first1"]
    assert all(r.info.status == "FINISHED" for r in _runs(tmp_path))


def test_lost_store_resumes_checkpoints_into_a_new_run(workdir: Path) -> None:
    path = write_spec(workdir, tiny_spec(train={"steps": 4, "checkpoint_every": 2}, eval={"every": 4}))
    assert main(["run", str(path)]) == 0
    [old] = _runs(workdir)
    run = _run_folder(workdir, path)
    before = _snapshot(run)
    assert before
    (workdir / "mlflow.db").unlink()
    status, said = _cli(workdir, "run", str(path))
    assert status == 0, said
    assert "resuming them into new MLflow run" in said and old.info.run_id in said
    [new] = _runs(workdir, "./mlflow.db")  # the new database, not the deleted one this process still holds
    assert new.data.tags[TAG_RESUMED_FROM] == old.info.run_id and new.info.status == "FINISHED"
    assert _snapshot(run) == before  # the finished checkpoints are untouched, nothing retrained


def test_a_run_folder_in_use_is_refused_and_a_dead_holder_is_taken_over(workdir: Path, capsys) -> None:
    path = write_spec(workdir, tiny_spec(train={"steps": 2}, eval={"every": 2}))
    run = _run_folder(workdir, path)
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, time; from pathlib import Path; from pipelines.locks import RunLock; "
            "from pipelines.storage import Location; held = RunLock.acquire(Location(sys.argv[1]), Path('.')); "
            "print('locked', flush=True); time.sleep(600)"
        ), str(run)],
        cwd=workdir, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["run", str(path)]) == 2
        said = capsys.readouterr().err
        assert f"pid {holder.pid}" in said and "in use" in said
        assert _runs(workdir) == []  # nothing started
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert main(["run", str(path)]) == 0  # the dead process's lock is recovered
    assert [r.info.status for r in _runs(workdir)] == ["FINISHED"]


def test_a_diverging_optimizer_fails_the_run_with_the_step_named(workdir: Path, capsys) -> None:
    """Adam with eps=1e-300 (0 in float32) divides 0 by 0 on its first update."""
    path = write_spec(workdir, tiny_spec(train={"steps": 6, "checkpoint_every": 1, "optimizer": {"eps": 1.0e-300}}))
    assert main(["run", str(path)]) == 1
    said = capsys.readouterr().err
    assert "non-finite weights after step 1" in said and "Traceback" not in said
    [run] = _runs(workdir)
    assert run.info.status == "FAILED" and "step 1" in run.data.tags[TAG_ERROR]
    assert list(_run_folder(workdir, path).glob("step_*")) == []  # no checkpoint holds the broken weights


def _nan_loss_at(monkeypatch, steps: set[int], total: int) -> None:
    """Training losses become NaN at the given steps (1-based); evaluation is untouched."""
    progress = {"step": 0}
    set_progress, objective = MdlmLoss.set_progress, MdlmLoss.objective

    def record(self, fraction: float) -> None:
        progress["step"] = round(fraction * total) + 1
        set_progress(self, fraction)

    def poisoned(self, model, batch, t):
        out = objective(self, model, batch, t)
        return replace(out, loss=out.loss * float("nan")) if progress["step"] in steps else out

    monkeypatch.setattr(MdlmLoss, "set_progress", record)
    monkeypatch.setattr(MdlmLoss, "objective", poisoned)


def test_a_nan_loss_fails_the_run_at_that_step_and_keeps_the_good_checkpoint(workdir: Path, capsys, monkeypatch) -> None:
    _nan_loss_at(monkeypatch, {3}, total=6)
    path = write_spec(workdir, tiny_spec(train={"steps": 6, "checkpoint_every": 2, "log_every": 2}, eval={"every": 6}))
    assert main(["run", str(path)]) == 1
    said = capsys.readouterr().err
    assert "non-finite loss or gradient norm at step 3" in said and "Traceback" not in said
    [run] = _runs(workdir)
    assert run.info.status == "FAILED" and "step 3" in run.data.tags[TAG_ERROR]
    folder = _run_folder(workdir, path)
    assert sorted(p.name for p in folder.glob("step_*")) == ["step_00000002"]
    state = torch.load(folder / "step_00000002" / "state.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_max_nonfinite_steps_skips_them_and_counts_them(workdir: Path, monkeypatch) -> None:
    _nan_loss_at(monkeypatch, {3, 4}, total=6)
    spec = tiny_spec(train={"steps": 6, "checkpoint_every": 6, "log_every": 6, "max_nonfinite_steps": 2}, eval={"every": 6})
    path = write_spec(workdir, spec)
    assert main(["run", str(path)]) == 0
    [run] = _runs(workdir)
    assert run.info.status == "FINISHED" and run.data.metrics["train/nonfinite_steps"] == 2
    state = torch.load(_run_folder(workdir, path) / "step_00000006" / "state.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values())

    spec["train"]["max_nonfinite_steps"] = 1
    assert main(["run", str(write_spec(workdir, spec, "strict.yaml"))]) == 1
    failed = [r for r in _runs(workdir) if r.info.status == "FAILED"]
    assert len(failed) == 1 and "more than train.max_nonfinite_steps=1" in failed[0].data.tags[TAG_ERROR]


# The 2-worker case (about 45 s on 2 cores) runs under -m slow; the rank files it reads are
# also read back by every 2-worker resume in tests/test_training_matrix.py.
@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_a_broken_latest_checkpoint_falls_back_to_the_previous_one(workdir: Path, capsys, workers: int) -> None:
    spec = tiny_spec(train={"steps": 8, "checkpoint_every": 4}, eval={"every": 8}, resources={"workers": workers})
    path = write_spec(workdir, spec)
    assert main(["run", str(path)]) == 0
    run = _run_folder(workdir, path)
    good = torch.load(run / "step_00000008" / "state.pt", weights_only=True)["model"]
    state = run / "step_00000008" / "state.pt"
    truncated = state.read_bytes()[:1000]
    state.write_bytes(truncated)
    capsys.readouterr()
    assert main(["run", str(path)]) == 0
    said = capsys.readouterr().err
    assert str(state) in said and "step_00000004" in said
    again = torch.load(state, weights_only=True)["model"]
    assert all(torch.equal(again[k], good[k]) for k in good)  # exact resume from step 4 rebuilds step 8
    assert (run / "step_00000008.broken" / "state.pt").read_bytes() == truncated  # kept aside, not deleted
    if workers:
        return

    (run / "step_00000008" / "rank_0.pt").write_bytes(b"")
    (run / "step_00000004" / "state.pt").write_bytes(b"not a checkpoint")
    assert main(["run", str(path)]) == 1
    said = capsys.readouterr().err
    assert "rank_0.pt" in said and str(run / "step_00000004" / "state.pt") in said
    [failed] = _runs(workdir)
    assert failed.info.status == "FAILED" and "no readable checkpoint" in failed.data.tags[TAG_ERROR]


def test_unwritable_storage_exits_2_before_anything_starts(workdir: Path, capsys) -> None:
    (workdir / "blocked").write_text("a file where the storage folder should be")
    path = write_spec(workdir, tiny_spec(train={"steps": 2, "storage": "blocked/runs"}))
    assert main(["run", str(path)]) == 2
    said = capsys.readouterr().err
    assert "train.storage" in said and "blocked/runs" in said and "Traceback" not in said
    assert _runs(workdir) == []


def test_eval_does_not_log_a_step_twice(workdir: Path) -> None:
    path = write_spec(workdir, tiny_spec())
    assert main(["run", str(path)]) == 0
    [run] = _runs(workdir)
    assert main(["eval", run.info.run_id]) == 0
    steps = sorted(m.step for m in _client(workdir).get_metric_history(run.info.run_id, "eval/elbo"))
    assert steps == [6, 12]

