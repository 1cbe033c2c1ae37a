"""Training and sampling speed of the path ``difflab run`` / ``difflab sample`` execute.

    python benchmarks/pipeline_throughput.py experiments/sudoku/4x4.yaml --steps 60 \
        --out benchmarks/results/pipeline-cpu.md
    python benchmarks/pipeline_throughput.py experiments/text/local-mdlm.yaml --steps 200 \
        --set resources.workers=1 --out benchmarks/results/pipeline-h100.md

The spec trains ``--steps`` steps through the CLI in a scratch folder (its own SQLite store
and run folder), so the figures come from the real engine: the spec's loss and noise, data
stream, micro-batching, precision, EMA, DDP workers and checkpoints. Training figures are
the engine's own logged metrics (``train/tokens_per_s``, ``train/mfu``,
``train/data_wait_fraction``, ``train/peak_memory_gib``), as medians over the log windows
after the first (which holds compilation and warm-up). Sampling times ``difflab sample RUN
-n N`` end to end (checkpoint load included) with the spec's sampler.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.cli import main as difflab  # noqa: E402

METRICS = ("train/tokens_per_s", "train/mfu", "train/data_wait_fraction", "train/peak_memory_gib", "train/loss")


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "components", "pipelines"], cwd=REPO,
                           capture_output=True, text=True).stdout.strip()
    return (out.stdout.strip() or "unknown") + (" (uncommitted changes)" if dirty else "")


def _device() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.machine())
    return f"CPU {model}, {os.cpu_count()} logical cores"


def _median_after_first(client: MlflowClient, run_id: str, key: str) -> float | None:
    history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
    values = [m.value for m in history[1:]] or [m.value for m in history]
    return statistics.median(values) if values else None


def measure(spec: Path, steps: int, overrides: list[str], samples: int, folder: Path) -> dict[str, object]:
    sets = [f"train.steps={steps}", f"eval.every={steps}", f"train.checkpoint_every={steps}", *overrides]
    args = [str(spec.resolve()), *[x for s in sets for x in ("--set", s)]]
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
    previous = Path.cwd()
    os.chdir(folder)
    try:
        started = time.perf_counter()
        if difflab(["run", *args]) != 0:
            raise SystemExit("training failed (see above)")
        train_wall = time.perf_counter() - started
        client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
        [run] = client.search_runs([e.experiment_id for e in client.search_experiments()])
        result: dict[str, object] = {k: _median_after_first(client, run.info.run_id, k) for k in METRICS}
        result["train wall s (incl. start, eval, checkpoint)"] = train_wall
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            if difflab(["sample", run.info.run_id, "-n", str(samples)]) != 0:
                raise SystemExit("sampling failed (see above)")
        sample_wall = time.perf_counter() - started
        result["sample wall s"] = sample_wall
        result["samples/s (incl. checkpoint load)"] = samples / sample_wall
        result["spec hash"] = run.data.tags.get("difflab.spec_hash", "")
        return result
    finally:
        os.chdir(previous)


def report(args: argparse.Namespace, result: dict[str, object]) -> str:
    def fmt(value: object) -> str:
        if value is None:
            return "n/a"
        return f"{value:,.4g}" if isinstance(value, float) else str(value)

    lines = [
        f"# Pipeline throughput: {args.spec}",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- device: {_device()}",
        f"- torch {torch.__version__}, Python {platform.python_version()}, git commit {_commit()}",
        f"- command: `python benchmarks/pipeline_throughput.py {shlex.join(args.argv)}`",
        f"- load average (1 min) before / after: {args.load[0]:.2f} / {args.load[1]:.2f}",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {fmt(v)} |" for k, v in result.items()],
        "",
        "Training figures are medians of the engine's logged metrics over the log windows after",
        "the first; `train/mfu` is logged on GPUs only.",
    ]
    if args.note:
        lines += ["", f"Note: {args.note}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", type=Path)
    parser.add_argument("--steps", type=int, default=60, help="training steps (default 60)")
    parser.add_argument("--samples", type=int, default=16, help="sequences / puzzles to sample (default 16)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    parser.add_argument("--note", default="")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    args.argv = argv if argv is not None else sys.argv[1:]
    before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="difflab-bench-") as folder:
        result = measure(args.spec, args.steps, args.overrides, args.samples, Path(folder))
    args.load = (before, os.getloadavg()[0])
    text = report(args, result)
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
