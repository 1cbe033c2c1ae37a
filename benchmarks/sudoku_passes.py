"""Sudoku accuracy vs passes: evaluate trained runs on their held-out puzzles with confidence
samplers at several k (cells committed per pass) and, optionally, self-correction.

    python benchmarks/sudoku_passes.py RUN_ID [RUN_ID ...] --uri sqlite:///mlflow.db \
        --ks 1 2 5 10 20 81 --self-correction --png passes.png --out passes.md
    python benchmarks/sudoku_passes.py --experiment quickstart --num-puzzles 200

Each run is reloaded as `difflab eval` does (pipelines/evaluate.py: its logged spec, its latest
checkpoint, EMA weights when kept), with the run's eval samplers replaced by the k-sweep, then
evaluated by the pipeline's own evaluation (pipelines/train.py `evaluate`, i.e. the task's
metrics on every held-out set of the spec: puzzle accuracy, cell accuracy over unknown cells,
unit violations, passes = measured model calls per puzzle). Nothing is logged back to MLflow.

Confidence sampler `k<k>`: commit the top-k unresolved cells per pass, never revisited, so a
puzzle with u unknowns takes ceil(u / k) passes. Self-correction `k1+sc`: k = 1, then GIDD
correction iterations at t0 (each one more pass; stops when nothing changes or after
--sc-patience iterations without a new best). The table lists every (run, set, sampler);
the plot draws puzzle accuracy against mean passes, one panel per held-out set, one line per
run over the confidence samplers, self-correction as a separate marker.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from pipelines import leaderboard, tracking  # noqa: E402
from pipelines.evaluate import load_run  # noqa: E402
from pipelines.train import evaluate  # noqa: E402

METRICS = ("puzzle_accuracy", "cell_accuracy", "violations", "passes", "seconds")
SC_NAME = "k1+sc"


def sampler_settings(ks: list[int], score: str, self_correction: bool, sc_iters: int, sc_patience: int) -> dict:
    """Named eval samplers: ``k<k>`` per k, and ``k1+sc`` when asked."""
    settings = {f"k{k}": {"kind": "confidence", "k": k, "score": score} for k in ks}
    if self_correction:
        settings[SC_NAME] = {
            "kind": "self_correction",
            "base": {"kind": "confidence", "k": 1, "score": score},
            "t0": 0.01,
            "temperature": 0.1,
            "tokens_per_step": 1,
            "max_iters": sc_iters,
            "patience": sc_patience,
        }
    return settings


def run_ids(client: MlflowClient, args: argparse.Namespace) -> list[str]:
    """The given run ids, else the finished training runs of ``--experiment``."""
    if args.runs:
        return args.runs
    runs = leaderboard.fetch_runs(client, args.experiment)
    return [r.info.run_id for r in runs if r.info.status == "FINISHED"]


def evaluate_run(uri: str, run_id: str, settings: dict, args: argparse.Namespace) -> list[dict]:
    """One row per (held-out set, sampler) of ``run_id``."""
    overrides = [
        f"eval.samplers={json.dumps(settings)}",
        f"eval.num_samples={args.num_puzzles}",
        f"eval.batch_size={args.batch_size}",
        f"eval.batches={args.elbo_batches}",
    ]
    loaded = load_run(uri, run_id, overrides)
    run = loaded.client.get_run(run_id)
    name = run.info.run_name or run_id
    started = time.perf_counter()
    metrics, _ = evaluate(loaded.experiment, loaded.model, loaded.device, loaded.resolved.spec.train.seed + 10_007)
    print(f"{name}: evaluated at step {loaded.step} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    sets = sorted({key.split("/")[0] for key in metrics if key.endswith("/puzzle_accuracy")})
    rows = []
    for set_name in sets:
        for sampler in settings:
            row = {"run": name, "run_id": run_id, "step": loaded.step, "set": set_name, "sampler": sampler}
            row |= {m: metrics[f"{set_name}/{sampler}/{m}"] for m in METRICS}
            rows.append(row)
    return rows


def plot(frame: pl.DataFrame, path: Path) -> Path:
    """Puzzle accuracy vs mean passes (log x), one panel per set, one line per run."""
    sets = frame["set"].unique(maintain_order=True).to_list()
    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4.5), squeeze=False)
    for ax, set_name in zip(axes[0], sets):
        part = frame.filter(pl.col("set") == set_name)
        for (run,), rows in part.group_by("run", maintain_order=True):
            confidence = rows.filter(pl.col("sampler") != SC_NAME).sort("passes")
            line = ax.plot(confidence["passes"], confidence["puzzle_accuracy"], marker="o", label=run)[0]
            corrected = rows.filter(pl.col("sampler") == SC_NAME)
            if not corrected.is_empty():
                ax.scatter(corrected["passes"], corrected["puzzle_accuracy"], marker="*", s=140,
                           color=line.get_color(), label=f"{run} {SC_NAME}")
        ax.set_xscale("log")
        ax.set_xlabel("mean passes (model calls per puzzle)")
        ax.set_ylabel("puzzle accuracy")
        ax.set_title(f"held-out {set_name}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", help="MLflow run ids (default: the finished runs of --experiment)")
    parser.add_argument("--uri", default=None, help="tracking URI (default MLFLOW_TRACKING_URI, else ./mlflow.db)")
    parser.add_argument("--experiment", default=None, help="MLflow experiment whose finished runs to evaluate")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 5, 10, 20, 81], help="cells committed per pass")
    parser.add_argument("--score", choices=["max_prob", "margin", "neg_entropy"], default="max_prob")
    parser.add_argument("--self-correction", action="store_true", help=f"add {SC_NAME}: k=1 then self-correction")
    parser.add_argument("--sc-iters", type=int, default=128, help="self-correction iterations at most")
    parser.add_argument("--sc-patience", type=int, default=32)
    parser.add_argument("--num-puzzles", type=int, default=1000, help="first N puzzles of each held-out set")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--elbo-batches", type=int, default=1, help="validation ELBO batches (reported, not plotted)")
    parser.add_argument("--png", type=Path, default=None, help="write the accuracy-vs-passes plot here")
    parser.add_argument("--out", type=Path, default=None, help="write the table as markdown here")
    args = parser.parse_args()
    if not args.runs and not args.experiment:
        parser.error("give run ids or --experiment")

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = tracking.resolve_uri(args.uri)
    os.environ.setdefault("MLFLOW_TRACKING_URI", uri)
    client = tracking.use(uri)
    settings = sampler_settings(args.ks, args.score, args.self_correction, args.sc_iters, args.sc_patience)
    rows = [row for run_id in run_ids(client, args) for row in evaluate_run(uri, run_id, settings, args)]
    if not rows:
        sys.exit("no runs to evaluate")
    frame = pl.DataFrame(rows).sort("set", "run", "passes")
    print(leaderboard.render(frame.drop("run_id"), "table", f"Sudoku accuracy vs passes ({uri})"))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(leaderboard.render(frame.drop("run_id"), "md", "Sudoku accuracy vs passes"))
        print(f"wrote {args.out}")
    if args.png:
        print(f"wrote {plot(frame, args.png)}")


if __name__ == "__main__":
    main()
