"""Tabulate the local chat runs of an MLflow store as markdown (benchmarks/results/chat.md):
final losses, the answer metrics of every eval sampler and the answer-length distributions of
the last evaluation (its ``answer_lengths.json`` artifact).

    python benchmarks/chat_report.py --uri sqlite:///mlflow.db --experiment chat-local
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mlflow.tracking import MlflowClient

COLUMNS = ("answer_length", "answer_length_p50", "answer_length_p90", "terminated", "at_window_end",
           "role_marker_rate", "distinct_2", "repeated_3gram_rate", "nfe")
BINS = (0, 5, 10, 20, 40, 80, 120, 129)


def histogram(lengths: list[int]) -> str:
    counts = [sum(lo <= x < hi for x in lengths) for lo, hi in zip(BINS, BINS[1:])]
    return " ".join(f"{c:2d}" for c in counts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uri", default="sqlite:///mlflow.db")
    parser.add_argument("--experiment", default="chat-local")
    args = parser.parse_args()
    client = MlflowClient(args.uri)
    experiment = client.get_experiment_by_name(args.experiment)
    runs = sorted(client.search_runs([experiment.experiment_id]), key=lambda r: r.info.run_name)
    print("| run | train/loss | eval/elbo | eval/ppl |\n|---|---|---|---|")
    for run in runs:
        m = run.data.metrics
        print(f"| {run.info.run_name} | {m.get('train/loss', float('nan')):.3f} | {m['eval/elbo']:.3f} | {m['eval/ppl']:.2f} |")
    print("\n| run | sampler | " + " | ".join(COLUMNS) + " |\n|---|---|" + "---|" * len(COLUMNS))
    lengths = {}
    for run in runs:
        m = run.data.metrics
        samplers = sorted({k.split("/")[1] for k in m if k.startswith("eval/") and k.endswith("/answer_length")})
        for s in samplers:
            cells = [f"{m.get(f'eval/{s}/{c}', float('nan')):.3g}" for c in COLUMNS]
            print(f"| {run.info.run_name} | {s} | " + " | ".join(cells) + " |")
        folders = [f.path for f in client.list_artifacts(run.info.run_id, "eval") if f.is_dir]
        last = sorted(folders)[-1]
        lengths[run.info.run_name] = json.loads(Path(client.download_artifacts(run.info.run_id, f"{last}/answer_lengths.json")).read_text())
    edges = " ".join(f"{lo}-{hi - 1}" for lo, hi in zip(BINS, BINS[1:]))
    print(f"\nAnswer lengths (tokens), counts per bin [{edges}] of the last evaluation's answers:\n")
    print("| run | sampler | counts |\n|---|---|---|")
    for name, per_sampler in lengths.items():
        for s, values in per_sampler.items():
            print(f"| {name} | {s} | `{histogram(values)}` |")


if __name__ == "__main__":
    main()
