"""Wall time of short difflab commands: ``--help``, ``validate``, ``runs`` and ``leaderboard``
on a store of 100 runs (each command a fresh process, as a user types it; median of repeats).

The store: one real ``difflab run`` of a tiny 4x4 Sudoku spec, then 99 copies of that run
(its params, tags, every metric point and its spec artifact) under other names, as a sweep's
trials would record them. Prints a markdown block for ``benchmarks/results/cli-startup-cpu.md``.

    python benchmarks/cli_startup.py [--repeats 3] [--runs 100]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
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
    "name": "bench",
    "task": {"kind": "sudoku", "size": 4, "tier": "easy", "train_puzzles": 64, "eval_puzzles": 16, "workers": 1},
    "noise": {"kind": "masked"},
    "loss": {"kind": "mdlm"},
    "backbone": {"kind": "dit", "layers": 1, "heads": 2, "width": 32, "cond_dim": 16},
    "sampler": {"kind": "confidence", "k": 4},
    "train": {"steps": 20, "batch_size": 8, "log_every": 2, "checkpoint_every": 20},
    "eval": {"every": 10, "batches": 1, "batch_size": 8, "num_samples": 8},
    "tracking": {"experiment": "bench"},
}


def _difflab(args: list[str], cwd: Path) -> tuple[float, float] | None:
    """(wall seconds, CPU seconds: user + system) of the command, or None when it failed (a
    command this checkout lacks). CPU time is what a shared, loaded machine distorts least."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=cwd, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return (wall, cpu) if done.returncode == 0 else None


def _copies(store: Path, count: int) -> None:
    """``count`` - 1 copies of the store's one run, as other runs of its experiment."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("bench").experiment_id
    [run] = client.search_runs([experiment])
    history = [m for key in run.data.metrics for m in client.get_metric_history(run.info.run_id, key)]
    spec = Path(client.download_artifacts(run.info.run_id, "spec.yaml", str(store))).read_text()
    for i in range(1, count):
        name = f"bench-{i}"
        copy = client.create_run(experiment, run_name=name, tags={k: v for k, v in run.data.tags.items() if k != "mlflow.runName"})
        params = [Param(k, v) for k, v in run.data.params.items()]
        for j in range(0, len(params), 100):
            client.log_batch(copy.info.run_id, params=params[j : j + 100])
        points = [Metric(m.key, m.value * (1 + i / 1000), m.timestamp, m.step) for m in history]
        for j in range(0, len(points), 1000):
            client.log_batch(copy.info.run_id, metrics=points[j : j + 1000])
        client.log_text(copy.info.run_id, spec, "spec.yaml")
        client.set_terminated(copy.info.run_id, "FINISHED")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = str(ROOT)  # the checkout this file is in
    with tempfile.TemporaryDirectory(prefix="difflab-cli-bench-") as folder:
        store = Path(folder)
        (store / "spec.yaml").write_text(yaml.safe_dump(SPEC))
        os.environ["DIFFLAB_CACHE"] = str(store / "cache")
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        if _difflab(["run", "spec.yaml"], store) is None:
            raise SystemExit("difflab run of the benchmark spec failed")
        _copies(store, args.runs)
        commands = {
            "difflab --help": ["--help"],
            "difflab validate experiments/quickstart.yaml": ["validate", str(ROOT / "experiments/quickstart.yaml")],
            f"difflab runs bench ({args.runs} runs)": ["runs", "bench", "--limit", str(args.runs)],
            f"difflab leaderboard bench ({args.runs} runs)": ["leaderboard", "bench"],
        }
        times = {label: [_difflab(argv, store) for _ in range(args.repeats)] for label, argv in commands.items()}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    print(f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; commit {commit}; {platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    print("\n| command | median wall s | median CPU s | wall s of each repeat |\n|---|---|---|---|")
    for label, values in times.items():
        if None in values:
            print(f"| `{label}` | n/a | n/a | the command fails or does not exist in this checkout |")
            continue
        walls, cpus = [v[0] for v in values], [v[1] for v in values]
        print(f"| `{label}` | {statistics.median(walls):.2f} | {statistics.median(cpus):.2f} | {', '.join(f'{v:.2f}' for v in walls)} |")


if __name__ == "__main__":
    main()
