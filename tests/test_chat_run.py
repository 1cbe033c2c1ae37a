"""A shipped local chat spec through the real pipeline (Ray Train local mode, MLflow SQLite),
shortened with --set and on a tiny random ``hf`` encoder: it trains, evaluates the answer metrics
with the semi-AR and one-shot samplers, `difflab sample` completes validation rows, and
`difflab export` writes a folder that difflab and transformers load with identical logits."""

from __future__ import annotations

from pathlib import Path

import torch
from mlflow.tracking import MlflowClient
from transformers import AutoModelForMaskedLM

from components.experiment import build_experiment, build_task
from components.spec import load_spec
from components.spec.trials import eval_metric_names
from pipelines.cli import main
from pipelines.evaluate import load_run
from pipelines.export import load_export

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
BACKBONE = (
    "backbone={kind: hf, time_conditioning: true, config: {model_type: modernbert, hidden_size: 32, "
    "intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, max_position_embeddings: 128}}"
)
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
    "eval.samplers={semi_ar: {kind: semi_ar, block_length: 16, steps_per_block: 8}, semi_ar_random: {kind: semi_ar, block_length: 16, steps_per_block: 4, inner: {kind: ancestral, steps: 4}}, one_shot: {kind: confidence, k: 8}}",
    BACKBONE,
]


def test_local_chat_spec_runs_and_logs_answer_metrics(workdir: Path) -> None:
    (workdir / "experiments").symlink_to(EXPERIMENTS)  # the specs' paths are relative to the repo root
    overrides = [arg for value in SHORT for arg in ("--set", value)]
    assert main(["run", "experiments/chat/local-scored-padding.yaml", *overrides]) == 0
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("chat-local")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    for sampler in ("data", "semi_ar", "semi_ar_random", "one_shot"):
        for key in ("answer_length", "terminated", "at_window_end", "role_marker_rate", "distinct_1", "repeated_2gram_rate", "exact_match"):
            assert f"eval/{sampler}/{key}" in metrics, (sampler, key)
    assert metrics["eval/data/terminated"] == 1.0  # every reference answer ends with <|im_end|>
    assert metrics["eval/data/exact_match"] == 1.0
    assert 0 < metrics["eval/data/answer_length"] < 128
    assert metrics["eval/semi_ar/nfe"] >= 8  # at least one block of 8 passes
    assert "eval/elbo" in metrics and "train/loss" in metrics
    # The names a sweep may rank by are exactly the ones logged.
    resolved = load_spec("experiments/chat/local-scored-padding.yaml", SHORT)
    assert {k for k in metrics if k.startswith("eval/")} == eval_metric_names(resolved.spec)
    assert main(["sample", run.info.run_id, "-n", "2", "--sampler", "semi_ar"]) == 0
    check_export(workdir, run.info.run_id)


def check_export(workdir: Path, run_id: str) -> None:
    """export -> load gives the run's logits: through difflab (time embedding included) and
    through transformers alone (the encoder); `sample --from` generates; nothing is overwritten."""
    out = workdir / "export"
    assert main(["export", run_id, "--format", "hf", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"spec.yaml", "difflab.safetensors", "tokenizer.json", "config.json", "model.safetensors", "README.md"} <= names
    card = (out / "README.md").read_text()
    assert run_id in card and "eval/elbo" in card and "kind: chat" in card
    loaded = load_run(f"sqlite:///{workdir / 'mlflow.db'}", run_id)
    exported, model, _ = load_export(out)
    torch.manual_seed(0)
    zt = torch.randint(0, exported.task.vocab_size, (2, 16))
    t = torch.tensor([0.3, 0.8])
    with torch.no_grad():
        expected = loaded.model.cpu()(zt, t)
        assert torch.equal(model.cpu()(zt, t), expected)
        encoder = AutoModelForMaskedLM.from_pretrained(out).eval()
        inner = loaded.model.model(inputs_embeds=loaded.model.model.get_input_embeddings()(zt)).logits
        assert torch.equal(encoder(input_ids=zt).logits, loaded.model.model(input_ids=zt).logits)
        assert torch.allclose(encoder(input_ids=zt).logits, inner, atol=1e-6)
    assert main(["sample", "--from", str(out), "-n", "2", "--sampler", "semi_ar"]) == 0
    assert main(["export", run_id, str(out)]) == 2  # not empty: never overwritten
    assert main(["sample", "--from", str(workdir / "nothing-here")]) == 2
    assert main(["sample"]) == 2  # neither a run nor --from


def test_samplers_get_the_tasks_stop_ids(workdir: Path, data_cache: Path) -> None:
    (workdir / "experiments").symlink_to(EXPERIMENTS)
    resolved = load_spec("experiments/chat/local-random-cut.yaml", [BACKBONE])
    task = build_task(resolved.spec, data_cache)
    task.prepare()
    exp = build_experiment(resolved.spec, data_cache, task)
    assert exp.samplers["semi_ar_hidden"].stop_ids == (task.tokenizer.end_id, task.tokenizer.pad_id)
    assert exp.samplers["semi_ar_hidden"].config.future == "hidden"
