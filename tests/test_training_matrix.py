"""The configurations paper-scale specs use, through ``difflab run`` on a real Ray cluster
(``ray start --head``, reached with ``--address``): workers {0, 2} x gradient accumulation
{1, 2} x precision {fp32, bf16} x EMA {off, on} as a half fraction (EMA on exactly when an odd
number of the other three are at their second level, so every pair of factors meets in all
four combinations), plus ``train.compile`` once. Each configuration is SIGKILLed after a
checkpoint and resumed into the same MLflow run with a gapless, duplicate-free history; the
local configurations and the 2-worker one with every feature on must also end with the
weights (and EMA) of an uninterrupted run, bit for bit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from components.spec import load_spec
from pipelines.cli import main
from specs import tiny_spec, write_spec

RAY = str(Path(sys.executable).with_name("ray"))  # the ray CLI of this environment
STEPS, LOG_EVERY, CHECKPOINT_EVERY = 40, 5, 10

CONFIGS = [  # (workers, accumulation, precision, ema)
    (0, 1, "fp32", False),
    (2, 1, "fp32", True),
    (0, 2, "fp32", True),
    (2, 2, "fp32", False),
    (0, 1, "bf16", True),
    (2, 1, "bf16", False),
    (0, 2, "bf16", False),
    (2, 2, "bf16", True),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head() -> str:
    """A real local Ray cluster started the way users start one; ``ray stop`` in teardown.
    Ray starts it with token authentication; drivers given its address send the token once
    RAY_AUTH_MODE=token (Ray does not send it to an explicit address by itself)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "token"
    subprocess.run(
        [RAY, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
         "--object-store-memory=268435456", "--disable-usage-stats"],
        check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120,
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        import ray

        ray.shutdown()
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE")
        else:
            os.environ["RAY_AUTH_MODE"] = saved
        subprocess.run([RAY, "stop", "--force"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=120)


def _spec(workers: int, accum: int, precision: str, ema: bool, compile: bool = False) -> dict:
    batch = 16
    per_worker = batch // max(workers, 1)
    train = {
        "steps": STEPS, "batch_size": batch, "micro_batch_size": per_worker // accum, "precision": precision,
        "ema": 0.9 if ema else None, "compile": compile, "log_every": LOG_EVERY, "checkpoint_every": CHECKPOINT_EVERY,
    }
    resources = {"workers": workers, "cpus_per_worker": 1, "backend": "gloo"} if workers else {"workers": 0}
    return tiny_spec(name="matrix", train=train, resources=resources, eval={"every": STEPS // 2})


def _run_dir(workdir: Path, path: Path, storage: str = "runs") -> Path:
    resolved = load_spec(path)
    return workdir / storage / f"{resolved.spec.name}-{resolved.short_hash}"


def _checkpoint_steps(run_dir: Path) -> list[int]:
    return sorted(int(p.name[5:]) for p in run_dir.glob("step_*") if p.name[5:].isdigit())


def _kill_after_first_checkpoint(workdir: Path, path: Path, address: list[str]) -> int:
    """Start ``difflab run`` in its own process group, SIGKILL it once a checkpoint exists;
    returns the newest checkpoint step at the kill."""
    run_dir = _run_dir(workdir, path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "run", str(path), *address],
        cwd=workdir, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while not (run_dir / f"step_{CHECKPOINT_EVERY:08d}" / "state.pt").exists():
        assert proc.poll() is None, "run ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = max(_checkpoint_steps(run_dir))
    assert killed_at < STEPS, "the run finished before it was killed"
    return killed_at


def _final_state(run_dir: Path) -> dict:
    return torch.load(run_dir / f"step_{STEPS:08d}" / "state.pt", weights_only=True)


def _assert_same_weights(got: dict, want: dict, ema: bool) -> None:
    for part in ("model", "ema") if ema else ("model",):
        assert got[part].keys() == want[part].keys()
        for name, value in want[part].items():
            assert torch.equal(got[part][name], value), f"{part}.{name}"
    assert (got["ema"] is None) == (not ema)


def _check(workdir: Path, spec: dict, address: list[str], compare: bool = True) -> None:
    path = write_spec(workdir, spec)
    _kill_after_first_checkpoint(workdir, path, address)
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    [interrupted] = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert interrupted.info.status == "RUNNING"  # a killed driver cannot close its run

    assert main(["run", str(path), *address]) == 0
    [resumed] = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert resumed.info.run_id == interrupted.info.run_id and resumed.info.status == "FINISHED"
    steps = sorted(m.step for m in client.get_metric_history(resumed.info.run_id, "train/loss"))
    assert steps == list(range(LOG_EVERY, STEPS + 1, LOG_EVERY))
    assert sorted(m.step for m in client.get_metric_history(resumed.info.run_id, "eval/elbo")) == [STEPS // 2, STEPS]

    if not compare:
        return
    spec["train"]["storage"] = "reference"
    reference = write_spec(workdir, spec, "reference.yaml")
    assert main(["run", str(reference), *address]) == 0
    ema = spec["train"]["ema"] is not None
    _assert_same_weights(_final_state(_run_dir(workdir, path)), _final_state(_run_dir(workdir, reference, "reference")), ema)


def _param(workers: int, accum: int, precision: str, ema: bool):
    """The default suite runs every local configuration and the 2-worker one with every feature
    on (accumulation, bf16, EMA); the other three 2-worker configurations cost about 40 s each on
    2 cores and run under ``-m slow`` (``make test-all``)."""
    slow = workers and not (accum == 2 and precision == "bf16" and ema)
    return pytest.param(workers, accum, precision, ema, id=f"w{workers}-acc{accum}-{precision}-ema_{'on' if ema else 'off'}",
                        marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize(("workers", "accum", "precision", "ema"), [_param(*c) for c in CONFIGS])
def test_killed_run_resumes_to_the_uninterrupted_weights(
    workdir: Path, ray_head: str, workers: int, accum: int, precision: str, ema: bool
) -> None:
    # Each 2-worker fit costs about 20 s here: the uninterrupted reference runs for the local
    # configurations and for the one 2-worker configuration that has every feature on.
    compare = workers == 0 or (accum == 2 and precision == "bf16" and ema)
    _check(workdir, _spec(workers, accum, precision, ema), ["--address", ray_head] if workers else [], compare)
    if workers:
        import ray

        assert ray.is_initialized() and ray.get_runtime_context().gcs_address.endswith(ray_head.split(":")[1])  # that cluster


def test_compiled_backbone_trains_and_resumes(workdir: Path) -> None:
    _check(workdir, _spec(0, 2, "fp32", True, compile=True), [])
