"""The shipped local text specs through the real pipeline (Ray Train local mode, MLflow SQLite),
shortened with --set: a local-ar judge, then local-mdlm scored by it; the eval metrics the text
benchmark (benchmarks/results/text.md) reads must all be logged."""

from __future__ import annotations

from pathlib import Path

import pytest

import yaml
from mlflow.tracking import MlflowClient

from pipelines.cli import main

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SHORT = [
    "train.steps=2",
    "train.batch_size=4",
    "train.log_every=1",
    "train.checkpoint_every=2",
    "eval.every=2",
    "eval.batches=1",
    "eval.batch_size=4",
    "eval.num_samples=4",
    "eval.elbo.t_samples=1",
]


def _overrides(values: list[str]) -> list[str]:
    return [arg for value in values for arg in ("--set", value)]


def test_local_mdlm_logs_likelihood_sample_and_judge_metrics(workdir: Path) -> None:
    (workdir / "experiments").symlink_to(EXPERIMENTS)  # the specs' paths are relative to the repo root
    # The judge: local-ar, shortened in a spec file of its own, since the judge is named by a spec.
    judge = workdir / "short-ar.yaml"
    spec = {"extends": "experiments/text/local-ar.yaml", "name": "short-ar"}
    for value in [*SHORT, "eval.num_samples=0"]:
        path, raw = value.split("=")
        *parents, leaf = path.split(".")
        section = spec
        for part in parents:
            section = section.setdefault(part, {})
        section[leaf] = yaml.safe_load(raw)
    judge.write_text(yaml.safe_dump(spec))
    assert main(["run", str(judge)]) == 0
    overrides = [*SHORT, "sampler.steps=4", f"task.judge.spec={judge}"]
    assert main(["run", "experiments/text/local-mdlm.yaml", *_overrides(overrides)]) == 0

    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("text-local")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"short-ar", "local-mdlm"}
    mdlm = runs["local-mdlm"]
    assert mdlm.info.status == "FINISHED"
    metrics = mdlm.data.metrics
    for key in (
        "eval/elbo",
        "eval/ppl",
        "eval/bits_per_token",
        "eval/bytes_per_token",
        "eval/data/unigram_entropy",
        "eval/data/gen_ppl",
        "eval/default/unigram_entropy",
        "eval/default/gen_ppl",
        "eval/default/nfe",
        "train/tokens_per_s",
    ):
        assert key in metrics, key
    assert metrics["eval/default/nfe"] == 4.0
    assert 1.0 < metrics["eval/bytes_per_token"] < 10.0
    bits_per_byte = metrics["eval/bits_per_token"] / metrics["eval/bytes_per_token"]
    assert metrics["eval/bits_per_byte"] == pytest.approx(bits_per_byte, rel=1e-9)
    assert 0.0 < metrics["eval/data/unigram_entropy"] <= 4.86  # at most ln(128) for 128-token rows
    # A judge trained 2 steps is poor, but a PPL beyond the vocabulary would mean a broken judge.
    assert 1.0 < metrics["eval/data/gen_ppl"] < 2 * 1024
    artifacts = Path(client.download_artifacts(mdlm.info.run_id, "eval/step_00000002"))
    statement = (artifacts / "gen_ppl.txt").read_text()
    assert statement.count("judge short-ar-") == 2  # data and default, scored by the trained judge
    assert (artifacts / "samples" / "default.txt").read_text().count("=== default sample") == 4
