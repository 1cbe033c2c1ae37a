"""Tabulate finished chat runs of an MLflow store as markdown (benchmarks/results/chat.md), one
row per run labelled by its loss target, end remedy and seed: final losses, the answer metrics of
every eval sampler and the answer-length distributions of the last evaluation (its
``answer_lengths.json`` artifact). Sweep parents and failed trials are left out.

    python benchmarks/chat_report.py --uri sqlite:///mlflow.db --experiment chat-local-sweep --experiment chat-local
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mlflow.tracking import MlflowClient

COLUMNS = ("answer_length", "answer_length_p50", "answer_length_p90", "terminated", "at_window_end",
           "role_marker_rate", "distinct_2", "repeated_3gram_rate", "exact_match", "nfe")
BINS = (0, 5, 10, 20, 40, 80, 120, 129)


def histogram(lengths: list[int]) -> str:
    counts = [sum(lo <= x < hi for x in lengths) for lo, hi in zip(BINS, BINS[1:])]
    return " ".join(f"{c:2d}" for c in counts)


def label(run) -> str:  # noqa: ANN001 - an MLflow Run
    p = run.data.params
    return f"{p['task.loss_on']} / {p['task.end_remedy']} / seed {p['train.seed']}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uri", action="append", required=True, help="MLflow store (repeatable)")
    parser.add_argument("--experiment", action="append", required=True, help="experiment name (repeatable)")
    args = parser.parse_args()
    runs = []
    for uri in args.uri:
        client = MlflowClient(uri)
        ids = [e.experiment_id for name in args.experiment if (e := client.get_experiment_by_name(name)) is not None]
        finished = [r for r in client.search_runs(ids) if r.info.status == "FINISHED" and "eval/elbo" in r.data.metrics]
        runs += [(label(r), client, r) for r in finished]
    runs.sort(key=lambda item: item[0])
    print("| loss_on / end_remedy / seed | train/loss | eval/elbo | eval/ppl |\n|---|---|---|---|")
    for name, _, run in runs:
        m = run.data.metrics
        print(f"| {name} | {m.get('train/loss', float('nan')):.3f} | {m['eval/elbo']:.3f} | {m['eval/ppl']:.2f} |")
    print("\n| loss_on / end_remedy / seed | sampler | " + " | ".join(COLUMNS) + " |\n|---|---|" + "---|" * len(COLUMNS))
    lengths = {}
    for name, client, run in runs:
        m = run.data.metrics
        samplers = sorted({k.split("/")[1] for k in m if k.startswith("eval/") and k.endswith("/answer_length")})
        for s in samplers:
            cells = [f"{m.get(f'eval/{s}/{c}', float('nan')):.3g}" for c in COLUMNS]
            print(f"| {name} | {s} | " + " | ".join(cells) + " |")
        folders = sorted(f.path for f in client.list_artifacts(run.info.run_id, "eval") if f.is_dir)
        artifact = client.download_artifacts(run.info.run_id, f"{folders[-1]}/answer_lengths.json")
        lengths[name] = json.loads(Path(artifact).read_text())
    edges = " ".join(f"{lo}-{hi - 1}" for lo, hi in zip(BINS, BINS[1:]))
    print(f"\nAnswer lengths (tokens), counts per bin [{edges}] of the last evaluation's answers:\n")
    print("| loss_on / end_remedy / seed | sampler | counts |\n|---|---|---|")
    for name, per_sampler in lengths.items():
        for s, values in per_sampler.items():
            print(f"| {name} | {s} | `{histogram(values)}` |")


if __name__ == "__main__":
    main()
