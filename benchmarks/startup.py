"""Where the start-up of a ``workers: 0`` run goes: process start to the first optimizer step.

Runs ``difflab run`` (the real CLI, Ray Train local mode, MLflow SQLite in a temporary folder)
in a fresh process whose phases are timed by wrapping the functions that make them up; the
first call of ``optimizer_step`` ends the measurement. Each repeat is a fresh store and run
(``--warm-store`` keeps one migrated store, as on a machine that has run before).

``--sweep`` times a one-trial ``difflab sweep`` of the same spec instead: process start to the
trial's first line announcing its model (printed right before its first step), read from the
console as it streams, so the Tune trial and any Train actors it starts are included.

    python benchmarks/startup.py [--repeats 3] [--warm-store] [--sweep [--sweep-args ARGS]]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SPEC = {
    "name": "startup",
    "task": {"kind": "sudoku", "size": 4, "tier": "easy", "train_puzzles": 64, "eval_puzzles": 16, "workers": 1},
    "noise": {"kind": "masked"},
    "loss": {"kind": "mdlm"},
    "backbone": {"kind": "dit", "layers": 1, "heads": 2, "width": 32, "cond_dim": 16},
    "sampler": {"kind": "confidence", "k": 4},
    "train": {"steps": 4, "batch_size": 8, "log_every": 2, "checkpoint_every": 4},
    "eval": {"every": 4, "batches": 1, "batch_size": 8, "num_samples": 8},
    "resources": {"workers": 0},
    "tracking": {"experiment": "startup"},
}

# Runs in the measured process: wraps the phases, stops the clock at the first optimizer step.
PROBE = r"""
import json, sys, time
started = time.perf_counter()
marks = {}
from pipelines import cli
marks["imports (cli, spec models, torch)"] = time.perf_counter() - started
import importlib
def wrap(module_name, attr, label):
    module = importlib.import_module(module_name)
    inner = getattr(module, attr)
    def timed(*args, **kwargs):
        t = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            marks[label] = marks.get(label, 0.0) + time.perf_counter() - t
    setattr(module, attr, timed)
phases = [
    ("components.spec", "load_spec", "read + validate the spec"),
    ("pipelines.launch", "prepare", "prepare the task (data cache)"),
    ("pipelines.launch", "open_run", "MLflow: store, experiment, run, params"),
    ("pipelines.launch", "resume_point", "find a checkpoint to resume"),
    ("pipelines.train", "build_experiment", "build model, noise, loss (worker)"),
    ("pipelines.train", "_build_optimizer", "build the optimizer (worker)"),
    ("pipelines.train", "RunLogger", "MLflow logger (worker)"),
]
for phase in phases:
    wrap(*phase)
import pipelines.train as train
first = train.optimizer_step
def stop(*args, **kwargs):
    marks["total: process start to first step"] = time.perf_counter() - started
    marks["CPU s of the process to first step"] = time.process_time()
    print("STARTUP " + json.dumps(marks), flush=True)
    train.optimizer_step = first
    return first(*args, **kwargs)
train.optimizer_step = stop
sys.exit(cli.main(["run", "spec.yaml"]))
"""


def measure(folder: Path) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=folder, capture_output=True, text=True)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("STARTUP ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"difflab run failed:\n{done.stderr[-3000:]}")
    return json.loads(line.removeprefix("STARTUP "))


FIRST_STEP = "parameters (without embeddings)"  # the worker's line right before its training loop


def measure_sweep(folder: Path, extra: list[str]) -> dict[str, float]:
    """Seconds from starting ``difflab sweep`` to the trial's model line, and to the exit."""
    spec = yaml.safe_load((folder / "spec.yaml").read_text())
    spec["sweep"] = {"metric": "eval/elbo", "mode": "min", "space": {"train.optimizer.weight_decay": {"grid": [0.0]}}}
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "sweep", "spec.yaml", *extra],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    marks: dict[str, float] = {}
    for line in process.stdout:
        if FIRST_STEP in line and "total: process start to first step" not in marks:
            marks["total: process start to first step"] = time.perf_counter() - started
    if process.wait() != 0 or not marks:
        raise SystemExit("difflab sweep failed or its trial never announced its model")
    marks["whole sweep (4 steps)"] = time.perf_counter() - started
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warm-store", action="store_true", help="reuse one migrated MLflow store")
    parser.add_argument("--sweep", action="store_true", help="time a one-trial sweep instead of a run")
    parser.add_argument("--sweep-args", default="", help="extra `difflab sweep` arguments, e.g. --verbose")
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = str(ROOT)
    results = []
    with tempfile.TemporaryDirectory(prefix="difflab-startup-") as scratch:
        os.environ["DIFFLAB_CACHE"] = str(Path(scratch) / "cache")  # built once, then a cache hit
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        for i in range(args.repeats + 1):  # the first run fills the data cache; it is not counted
            folder = Path(scratch) / ("store" if args.warm_store else f"run{i}")
            folder.mkdir(exist_ok=True)
            SPEC["train"]["seed"] = i  # a new run each time, also in a kept store
            (folder / "spec.yaml").write_text(yaml.safe_dump(SPEC))
            marks = measure_sweep(folder, args.sweep_args.split()) if args.sweep else measure(folder)
            if i:
                results.append(marks)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    print(f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; commit {commit}; {platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {'warm' if args.warm_store else 'new'} store; "
          f"{'one-trial sweep' if args.sweep else 'difflab run'}")
    print("\n| phase | median s | runs (s) |\n|---|---|---|")
    for key in results[0]:
        values = [r.get(key, 0.0) for r in results]
        print(f"| {key} | {statistics.median(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} |")


if __name__ == "__main__":
    main()
