"""Generative perplexity under an AR judge of ours: windows, token-weighted aggregation (hand
example), re-tokenization round trip, loading from a checkpoint file, and the text task's sample
metrics with self-correction (changes made, judge PPL before and after)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from components import backbones, losses, noise, samplers
from components.batch import Batch
from components.samplers.base import Generation, Sampler
from components.spec import load_spec
from components.tasks import build as build_task
from components.tasks.text.judge import Judge, JudgeConfig, JudgeError, load_judge, retokenize, windows
from components.tasks.text.task import TextTask

STORIES = Path(__file__).resolve().parents[1] / "experiments" / "text" / "data" / "stories.txt"
SEQ_LEN = 32


def text_section(**overrides) -> dict:
    return {
        "kind": "text",
        "source": {"path": str(STORIES)},
        "validation": {"last_documents": 16},
        "max_documents": 160,
        "tokenizer": {"train": {"vocab_size": 300}},
        "seq_len": SEQ_LEN,
        **overrides,
    }


AR_SPEC = {
    "name": "judge-ar",
    "task": text_section(),
    "noise": {"kind": "masked"},
    "loss": {"kind": "ar"},
    "backbone": {"kind": "causal", "layers": 1, "heads": 2, "width": 16},
    "sampler": {"kind": "autoregressive"},
    "train": {"steps": 1, "storage": "runs"},
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def task(cache) -> TextTask:
    task = build_task(text_section(), cache_dir=cache)
    task.prepare()
    return task


def test_windows() -> None:
    ids = list(range(7))
    assert windows(ids, 3, "truncate") == [[0, 1, 2]]
    assert windows(ids, 3, "chunk") == [[0, 1, 2], [3, 4, 5], [6]]
    assert windows([], 3, "chunk") == [] and windows([], 3, "truncate") == []


class FixedLaw(nn.Module):
    """A judge network whose next-token distribution is the same ``probs`` at every position."""

    def __init__(self, probs: torch.Tensor):
        super().__init__()
        self.logits = nn.Parameter(probs.log())

    def forward(self, zt, t, fixed=None, valid=None, causal=False):
        assert causal
        return self.logits.expand(*zt.shape, -1)


def test_gen_ppl_is_token_weighted_hand_example(task: TextTask) -> None:
    """Sample A: one token of probability 1/2; sample B: three tokens of probability 1/10.
    gen PPL = exp((ln 2 + 3 ln 10) / 4) = 2000 ** (1/4) ~ 6.687, not the mean of per-sample PPLs
    (2 + 10) / 2 = 6."""
    probs = torch.full((task.vocab_size,), 0.4 / (task.vocab_size - 2))
    a, b = 50, 60
    probs[a], probs[b] = 0.5, 0.1
    judge = Judge("fixed", FixedLaw(probs), task.tokenizer, context=SEQ_LEN, overflow="truncate", batch_size=1)
    nll = judge.nll([[a], [b, b, b]])
    assert nll.tokens == 4 and nll.sequences == 2
    assert nll.nats == pytest.approx(math.log(2) + 3 * math.log(10), rel=1e-6)
    assert nll.perplexity == pytest.approx(2000 ** 0.25, rel=1e-6)
    # Windows: truncation drops tokens, chunking keeps them all (each window from a fresh start).
    short = Judge("fixed", FixedLaw(probs), task.tokenizer, context=2, overflow="truncate", batch_size=4)
    assert short.nll([[a], [b, b, b]]).tokens == 3
    chunked = Judge("fixed", FixedLaw(probs), task.tokenizer, context=2, overflow="chunk", batch_size=4)
    assert chunked.nll([[a], [b, b, b]]).nats == pytest.approx(nll.nats, rel=1e-6)


def test_retokenization_round_trip(task: TextTask, cache) -> None:
    docs = STORIES.read_text().split("\n\n")[:3]
    source = task.tokenizer
    ids = [i for doc in source.encode_documents(docs) for i in doc]  # documents back to back, eos after each
    assert retokenize(ids, source, source) == ids  # same tokenizer: identity
    other = build_task(text_section(tokenizer={"train": {"vocab_size": 280}}), cache_dir=cache)
    other.prepare()
    judge_ids = retokenize(ids, source, other.tokenizer)
    assert judge_ids != ids
    pieces = other.tokenizer.decode(judge_ids)
    assert pieces == "".join(docs)  # same text; eos (a special token) is skipped by decode
    assert judge_ids.count(other.tokenizer.eos_id) == 3
    # Specials other than eos (mask, pad) are dropped; eos boundaries are kept.
    noisy = [source.mask_id, *source.encode_documents(docs[:1])[0], source.pad_id]
    assert retokenize(noisy, source, source) == source.encode_documents(docs[:1])[0]


def write_judge_run(folder: Path, spec: dict, *, seed: int = 0, hash_of: dict | None = None) -> tuple[Path, nn.Module]:
    """A judge spec file and a checkpoint in the layout `difflab run` writes, under ``folder``."""
    path = folder / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    resolved = load_spec(path)
    task = build_task(resolved.spec.task, cache_dir=folder / "cache")
    task.prepare()
    torch.manual_seed(seed)
    model = backbones.build(resolved.spec.backbone, vocab_size=task.vocab_size, seq_len=task.seq_len)
    nn.init.normal_(model.head.weight, std=0.3)
    signed = resolved.hash if hash_of is None else load_spec(write_spec_file(folder, hash_of)).hash
    step_dir = folder / "runs" / f"{resolved.spec.name}-{resolved.short_hash}" / "step_00000001"
    step_dir.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "ema": None, "step": 1, "spec_hash": signed}, step_dir / "state.pt")
    return path, model


def write_spec_file(folder: Path, spec: dict) -> Path:
    path = folder / "other.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_judge_loads_from_the_run_folder_and_scores_like_the_ar_loss(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path, model = write_judge_run(tmp_path, AR_SPEC)
    judge = load_judge(JudgeConfig(spec=path), tmp_path / "cache")
    assert judge.name.startswith("judge-ar-") and judge.name.endswith("step 1") and judge.context == SEQ_LEN
    task = build_task(load_spec(path).spec.task, cache_dir=tmp_path / "cache")
    rows = next(task.eval_batches(4, 1)).x0
    ar = losses.build({"kind": "ar"}, noise=noise.build({"kind": "masked"}, vocab_size=task.vocab_size, mask_id=task.mask_id))
    with torch.no_grad():
        want = ar.objective(model.eval(), Batch.unconditional(rows), torch.zeros(4)).elbo
    got = judge.nll(rows.tolist())
    assert got.tokens == rows.numel()
    assert got.nats == pytest.approx(float(want.sum()), rel=1e-5)
    # Explicit checkpoint paths: the run folder, the step folder, the state file.
    run = tmp_path / "runs" / next(p.name for p in (tmp_path / "runs").iterdir())
    for where in (run, run / "step_00000001", run / "step_00000001" / "state.pt"):
        assert load_judge(JudgeConfig(spec=path, checkpoint=where), tmp_path / "cache").nll(rows.tolist()).nats == pytest.approx(got.nats)


def test_judge_errors(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_spec_file(tmp_path, AR_SPEC)
    with pytest.raises(JudgeError, match="no checkpoint"):
        load_judge(JudgeConfig(spec=path), tmp_path / "cache")
    other = {**AR_SPEC, "name": "signed-by-another", "train": {"steps": 2}}
    signed_path, _ = write_judge_run(tmp_path, other, hash_of=AR_SPEC)
    with pytest.raises(JudgeError, match="another spec"):
        load_judge(JudgeConfig(spec=signed_path), tmp_path / "cache")
    good_path, _ = write_judge_run(tmp_path, AR_SPEC)
    with pytest.raises(JudgeError, match="seq_len"):
        load_judge(JudgeConfig(spec=good_path, context=SEQ_LEN + 1), tmp_path / "cache")
    diffusion = {**AR_SPEC, "name": "not-ar", "loss": {"kind": "mdlm"}, "backbone": {"kind": "dit", "width": 16, "heads": 2, "layers": 1},
                 "sampler": {"kind": "ancestral"}}
    with pytest.raises(JudgeError, match="backbone causal, loss ar"):
        load_judge(JudgeConfig(spec=write_spec_file(tmp_path, diffusion)), tmp_path / "cache")


def test_task_reports_judge_ppl_before_and_after_self_correction(tmp_path, monkeypatch) -> None:
    """The untrained judge (zero-initialised head) is uniform over its vocabulary, so every gen PPL
    is exactly its vocabulary size; changes and entropies come from the samples themselves."""
    monkeypatch.chdir(tmp_path)
    spec_path = write_spec_file(tmp_path, AR_SPEC)
    resolved = load_spec(spec_path)
    judge_task = build_task(resolved.spec.task, cache_dir=tmp_path / "cache")
    judge_task.prepare()
    torch.manual_seed(0)
    judge_model = backbones.build(resolved.spec.backbone, vocab_size=judge_task.vocab_size, seq_len=SEQ_LEN)
    step_dir = tmp_path / "runs" / f"judge-ar-{resolved.short_hash}" / "step_00000003"
    step_dir.mkdir(parents=True)
    torch.save({"model": judge_model.state_dict(), "ema": None, "step": 3, "spec_hash": resolved.hash}, step_dir / "state.pt")

    task = build_task(text_section(judge={"spec": str(spec_path), "overflow": "chunk"}), cache_dir=tmp_path / "cache")
    task.prepare()  # checks the judge
    process = noise.build({"kind": "masked"}, vocab_size=task.vocab_size, mask_id=task.mask_id)
    torch.manual_seed(1)
    model = backbones.build({"kind": "dit", "layers": 1, "heads": 2, "width": 16, "cond_dim": 8}, vocab_size=task.vocab_size, seq_len=SEQ_LEN)
    nn.init.normal_(model.final.linear.weight, std=1.0)
    corrector = samplers.build(
        {"kind": "self_correction", "base": {"kind": "ancestral", "steps": 4}, "max_iters": 5, "tokens_per_step": 2, "temperature": 1.0}
    )
    plain = samplers.build({"kind": "ancestral", "steps": 4})
    result = task.evaluate(model.eval(), process, {"sc": corrector, "plain": plain}, num_samples=5, batch_size=3)
    m = result.metrics
    vocab = judge_task.vocab_size
    for prefix in ("data", "sc", "sc/base", "plain"):
        assert m[f"{prefix}/gen_ppl"] == pytest.approx(vocab, rel=1e-5), prefix
        assert m[f"{prefix}/gen_ppl_tokens"] > 0
    assert m["bytes_per_token"] == pytest.approx(task.bytes_per_token())
    assert 0 < m["sc/changes"] <= 10 and m["sc/correction_iterations"] <= 5
    assert 0.0 <= m["sc/converged"] <= 1.0 and 0.0 <= m["sc/init_acc"] <= 1.0
    assert m["sc/nfe"] == pytest.approx(4 + m["sc/correction_iterations"])
    assert {"samples/sc.txt", "samples/sc.base.txt", "samples/plain.txt", "gen_ppl.txt"} <= set(result.artifacts)
    statement = result.artifacts["gen_ppl.txt"]
    assert f"judge judge-ar-{resolved.short_hash} step 3" in statement and "chunked into windows of 32" in statement
    assert "tokenizer (the sampled one)" in statement
    assert len(result.samples) == 10


class Replay(Sampler):
    """Returns the given rows as its samples."""

    def __init__(self, rows: torch.Tensor):
        self.rows = rows

    def generate(self, model, noise, batch, steps=None) -> Generation:
        return Generation(self.rows[: len(batch)], torch.ones(len(batch), dtype=torch.long))


def test_judge_without_checkpoint_yet_is_stated_not_fatal(tmp_path, monkeypatch) -> None:
    """prepare() rejects a judge that is not an AR text run; a judge that has no checkpoint yet
    (it may train alongside) leaves gen PPL out and says why."""
    monkeypatch.chdir(tmp_path)
    diffusion = {**AR_SPEC, "name": "not-ar", "loss": {"kind": "mdlm"}}
    wrong = build_task(text_section(judge={"spec": str(write_spec_file(tmp_path, diffusion))}), cache_dir=tmp_path / "cache")
    with pytest.raises(JudgeError, match="loss ar"):
        wrong.prepare()
    task = build_task(text_section(judge={"spec": str(write_spec_file(tmp_path, AR_SPEC))}), cache_dir=tmp_path / "cache")
    task.prepare()
    rows = next(task.eval_batches(2, 1)).x0
    with pytest.warns(UserWarning, match="no checkpoint"):
        result = task.evaluate(nn.Identity(), None, {"replay": Replay(rows)}, num_samples=2, batch_size=2)
    assert "replay/gen_ppl" not in result.metrics and "replay/unigram_entropy" in result.metrics
    assert result.artifacts["gen_ppl.txt"].startswith("no generative PPL: judge: no checkpoint")
