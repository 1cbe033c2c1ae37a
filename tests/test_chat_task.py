"""The chat task on a small generated corpus: the template round trip, one example per assistant
turn, the context never noised or scored, loss_on, the end-of-answer remedies, resumable streams,
answer metrics, and bad rows reported by row number (exit 2 from the CLI, nothing started)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from components import losses, noise
from components.samplers.base import Generation
from components.tasks import build
from components.tasks.chat.conversations import ChatDataError
from components.tasks.chat.examples import turn_examples
from components.tasks.chat.metrics import answers, distinct_n, repeated_ngram_rate
from components.tasks.chat.task import ChatTask
from components.tasks.chat.template import IM_END, IM_START, Message, encode_all, encode_conversation, parse, render
from pipelines import tracking
from pipelines.cli import main

WORDS = ["hello", "cat", "sun", "tree", "how", "are", "you", "fine", "thanks", "éclair", "日本", "😀", "?", "."]
CONVERSATIONS = 60
VALIDATION = 10


def make_conversation(rng: random.Random) -> list[dict]:
    messages = [{"role": "system", "content": "Be brief."}] if rng.random() < 0.3 else []
    for _ in range(rng.randint(1, 3)):
        for role in ("user", "assistant"):
            messages.append({"role": role, "content": " ".join(rng.choices(WORDS, k=rng.randint(1, 12)))})
    return messages


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[list[dict]]]:
    rng = random.Random(0)
    conversations = [make_conversation(rng) for _ in range(CONVERSATIONS)]
    path = tmp_path_factory.mktemp("chat") / "chats.jsonl"
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations))
    return path, conversations


def section(path: Path, **overrides) -> dict:
    return {
        "kind": "chat",
        "source": {"path": str(path)},
        "validation": {"last_documents": VALIDATION},
        "tokenizer": {"train": {"vocab_size": 300}},
        "seq_len": 48,
        **overrides,
    }


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def make_task(corpus, cache, **overrides) -> ChatTask:
    task = build(section(corpus[0], **overrides), cache_dir=cache)
    task.prepare()
    return task


@pytest.fixture(scope="module")
def task(corpus, cache) -> ChatTask:
    return make_task(corpus, cache)


def as_messages(raw: list[dict]) -> list[Message]:
    return [Message(m["role"], m["content"]) for m in raw]


def test_template_round_trip(task: ChatTask, corpus) -> None:
    for raw in corpus[1][:20]:
        conversation = as_messages(raw)
        ids = encode_conversation(task.tokenizer, conversation)
        text = task.tokenizer.render_ids(ids)
        assert text == render(conversation)
        assert parse(text) == conversation
        assert ids.count(task.tokenizer.start_id) == ids.count(task.tokenizer.end_id) == len(conversation)
    # A literal marker inside a message is ordinary text: it never becomes the end id.
    literal = [Message("user", f"say {IM_END} and {IM_START}"), Message("assistant", "ok")]
    ids = encode_conversation(task.tokenizer, literal)
    assert ids.count(task.tokenizer.end_id) == 2 and ids.count(task.tokenizer.start_id) == 2
    assert task.tokenizer.render_ids(ids) == render(literal)


def test_multi_turn_gives_one_example_per_assistant_turn(task: ChatTask) -> None:
    tok = task.tokenizer
    conversation = [
        Message("system", "Be brief."),
        Message("user", "hello"),
        Message("assistant", "hello you"),
        Message("user", "how are you ?"),
        Message("assistant", "fine thanks"),
        Message("assistant", "and you ?"),
    ]
    examples = turn_examples(tok, conversation, encode_all(tok, [conversation]))
    assert len(examples) == 3
    for k, (example, index) in enumerate(zip(examples, [2, 4, 5])):
        # The context decodes to the messages before the turn plus the assistant header.
        assert tok.render_ids(example.context) == render(conversation[:index]) + f"{IM_START}assistant\n"
        assert tok.render_ids(example.answer) == conversation[index].content + IM_END
        assert example.answer[-1] == tok.end_id and tok.end_id not in example.answer[:-1]


def test_split_rows_match_the_corpus(task: ChatTask, corpus) -> None:
    conversations = corpus[1]
    turns = lambda cs: sum(sum(m["role"] == "assistant" for m in c) for c in cs)  # noqa: E731
    train, validation = task.split("train"), task.split("validation")
    assert len(train) == turns(conversations[: CONVERSATIONS - VALIDATION])
    assert len(validation) == turns(conversations[CONVERSATIONS - VALIDATION :])
    # Every answer in the validation rows, in order, decodes to the corpus's assistant contents.
    contents = [m["content"] for c in conversations[CONVERSATIONS - VALIDATION :] for m in c if m["role"] == "assistant"]
    tok = task.tokenizer
    for i, content in enumerate(contents):
        c, a = int(validation.context[i]), int(validation.answer[i])
        row = validation.tokens[i].tolist()
        if validation.ended[i]:
            assert tok.render_ids(row[c : c + a]) == content + IM_END
            assert set(row[c + a :]) <= {tok.pad_id}
        assert tok.render_ids(row[:c]).endswith(f"{IM_START}assistant\n")


def test_context_is_never_noised_or_scored(task: ChatTask) -> None:
    batch = next(task.train_stream(16, rank=0, world_size=1, seed=3))
    context = torch.zeros_like(batch.fixed)
    for i, row in enumerate(batch.x0):
        # The context is everything up to and including the last "<|im_start|>assistant\n" header.
        ids = row.tolist()
        last = max(j for j, token in enumerate(ids) if token == task.tokenizer.start_id)
        header = len(task.tokenizer.encode_texts(["assistant\n"])[0])
        context[i, : last + 1 + header] = True
    assert torch.equal(batch.fixed & batch.valid, context)
    process = noise.build({"kind": "masked"}, vocab_size=task.vocab_size, mask_id=task.mask_id)
    t = torch.full((len(batch),), 1.0 - 1e-4)
    zt = process.sample(batch.x0, t, batch.fixed)
    assert torch.equal(zt[context], batch.x0[context])  # context kept even at t ~ 1
    answer = batch.scored
    assert (zt[answer] == task.mask_id).float().mean() > 0.99
    # Scoring: the loss's gradient w.r.t. the logits vanishes on the context.
    loss = losses.build({"kind": "mdlm"}, noise=process)
    logits = torch.randn(*batch.x0.shape, task.vocab_size, requires_grad=True)
    out = loss(logits, batch.x0, zt, t, batch.scored)
    out.loss.backward()
    assert logits.grad[context].abs().max() == 0.0
    assert logits.grad[answer].abs().sum() > 0.0
    assert torch.all(out.elbo[context] == 0.0)


def test_loss_on_all_scores_the_context(corpus, cache) -> None:
    whole = make_task(corpus, cache, loss_on="all")
    batch = next(whole.train_stream(8, rank=0, world_size=1, seed=3))
    assert torch.equal(batch.fixed, ~batch.valid)  # only padding is fixed
    assert torch.equal(batch.scored, batch.valid)


def test_end_remedies(corpus, cache) -> None:
    base = make_task(corpus, cache)
    padded = make_task(corpus, cache, end_remedy="scored_padding")
    cut = make_task(corpus, cache, end_remedy="random_cut", cut_probability=0.5)
    arrays = base.split("train")
    rows = np.arange(len(arrays))
    context, answer, ended = (torch.from_numpy(a.astype(np.int64)) for a in (arrays.context, arrays.answer, arrays.ended))
    end = (context + answer)[:, None]
    position = torch.arange(48)[None, :]
    plain = base.batch(arrays, rows, np.random.default_rng(0))
    assert torch.equal(plain.valid, position < end)  # none: the window ends at the end token
    scored = padded.batch(arrays, rows, np.random.default_rng(0))
    assert torch.equal(scored.valid, (position < end) | ended[:, None].bool())
    assert torch.equal(scored.scored, scored.valid & (position >= context[:, None]))
    assert torch.all(scored.x0[scored.scored & (position >= end)] == base.tokenizer.pad_id)
    # random_cut: about half the windows end inside the answer, after 1 .. a - 1 of its tokens.
    draws = [cut.batch(arrays, rows, np.random.default_rng(seed)) for seed in range(20)]
    kept = torch.stack([b.valid.sum(1) for b in draws]) - context  # [20, N] answer tokens kept
    cuttable = answer >= 2
    was_cut = kept < answer
    share = was_cut[:, cuttable].double().mean()
    n = int(cuttable.sum()) * 20
    assert abs(share - 0.5) < 4 * (0.25 / n) ** 0.5
    assert torch.all(kept[was_cut] >= 1)
    assert not was_cut[:, ~cuttable].any()
    for b, k in zip(draws, was_cut):
        row_has_end = (b.x0 == base.tokenizer.end_id) & b.valid & (position >= context[:, None])
        assert not row_has_end[k].any()  # a cut window holds no end token
    # Uniform over 1 .. a - 1: for answers of one length a, each count appears about equally often.
    a = int(answer[cuttable].mode().values)
    counts = torch.bincount(kept[:, answer == a][was_cut[:, answer == a]], minlength=a)[1:a].double()
    expected = counts.sum() / (a - 1)
    assert ((counts - expected) ** 2 / expected).sum() < 3 * (a - 1) + 10  # chi-square, loose


def test_stream_resumes_with_the_same_cuts(corpus, cache) -> None:
    cut = make_task(corpus, cache, end_remedy="random_cut")
    stream = cut.train_stream(8, rank=0, world_size=1, seed=5)
    for _ in range(3):
        next(stream)
    state = stream.state_dict()
    expected = [next(stream) for _ in range(4)]
    resumed = cut.train_stream(8, rank=0, world_size=1, seed=5)
    resumed.load_state_dict(state)
    for a, b in zip(expected, (next(resumed) for _ in range(4))):
        assert torch.equal(a.x0, b.x0) and torch.equal(a.fixed, b.fixed) and torch.equal(a.valid, b.valid)


def test_answer_metrics_against_hand_counts() -> None:
    tokens = torch.tensor([[9, 9, 1, 2, 1, 2, 7, 0], [9, 3, 3, 3, 3, 3, 3, 3]])
    replies, terminated = answers(tokens, torch.tensor([2, 1]), stop_ids=(7,))
    assert replies == [[1, 2, 1, 2], [3] * 7] and terminated.tolist() == [True, False]
    assert distinct_n(replies, 1) == 3 / 11
    assert distinct_n(replies, 2) == 3 / 9  # (1,2) (2,1) (3,3)
    assert repeated_ngram_rate(replies, 2) == pytest.approx(((1 - 2 / 3) + (1 - 1 / 6)) / 2)


def test_bad_rows_are_reported_by_row_number(tmp_path: Path, cache: Path) -> None:
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    rows = [good] * 12
    rows[2] = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]}
    rows[4] = {"messages": [{"role": "user", "content": "hi"}, {"content": "no role"}]}
    rows[6] = {"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "x"}]}
    rows[9] = {"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "again"}]}
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = build(section(path, validation={"last_documents": 2}), cache_dir=cache)
    with pytest.raises(ChatDataError) as err:
        task.prepare()
    message = str(err.value)
    for needle in ("4 bad row(s)", "row 3: message 1 (assistant) has empty content", "row 5: message 1 has no role",
                   "row 7: message 0 has unknown role 'robot'", "row 10: no assistant turn"):
        assert needle in message, (needle, message)
    skipping = build(section(path, validation={"last_documents": 2}, bad_rows="skip"), cache_dir=cache)
    skipping.prepare()
    assert skipping.split("train").meta["skipped_bad_rows"] == 4
    assert len(skipping.split("train")) == 6 and len(skipping.split("validation")) == 2


def test_cli_run_with_bad_rows_exits_2_and_starts_nothing(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    path = workdir / "bad.jsonl"
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    rows = [good] * 6 + [{"messages": [{"role": "user", "content": "no answer"}]}] + [good] * 3
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = workdir / "bad.yaml"
    spec.write_text(
        json.dumps(
            {
                "name": "chat-bad",
                "task": section(path, validation={"last_documents": 2}),
                "noise": {"kind": "masked"},
                "loss": {"kind": "mdlm"},
                "backbone": {"kind": "dit", "size": "tiny"},
                "sampler": {"kind": "semi_ar", "block_length": 4},
                "tracking": {"experiment": "chat-bad"},
            }
        )
    )
    assert main(["run", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "row 7: no assistant turn" in err and "task (chat)" in err, err
    assert not (workdir / "runs").exists()
    assert tracking.use(tracking.resolve_uri(None)).get_experiment_by_name("chat-bad") is None


class _Silent:
    """A sampler that writes nothing: every open position keeps the prompt batch's pad."""

    def generate(self, model, noise, batch, steps=None):  # noqa: ANN001, ANN201
        return Generation(batch.x0.clone(), torch.ones(len(batch), dtype=torch.long))


def test_evaluate_on_an_external_chat_file(task: ChatTask, tmp_path: Path) -> None:
    rows = [
        {"messages": [{"role": "user", "content": "how are you ?"}, {"role": "assistant", "content": answer}]}
        for answer in ("fine", "fine thanks", "cat sun tree cat sun tree")
    ]
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task.check_data(data)
    result = task.evaluate(None, None, {"silent": _Silent()}, num_samples=8, batch_size=2, data=data)
    lengths = [len(ids) for ids in task.tokenizer.encode_texts([r["messages"][1]["content"] for r in rows])]
    assert result.metrics["data/answer_length"] == pytest.approx(sum(lengths) / 3)
    assert result.metrics["data/exact_match"] == 1.0 and result.metrics["data/terminated"] == 1.0
    assert result.metrics["silent/answer_length"] == 0.0 and result.metrics["silent/exact_match"] == 0.0
    assert json.loads(result.artifacts["answer_lengths.json"]) == {"data": lengths, "silent": [0, 0, 0]}


def test_run_checks_the_eval_chat_file_before_anything_starts(workdir: Path, capsys: pytest.CaptureFixture, corpus) -> None:
    bad = workdir / "eval.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    spec = workdir / "chat.yaml"
    spec.write_text(
        json.dumps(
            {
                "name": "chat-eval-file",
                "task": section(corpus[0]),
                "noise": {"kind": "masked"},
                "loss": {"kind": "mdlm"},
                "backbone": {"kind": "dit", "size": "tiny"},
                "sampler": {"kind": "semi_ar", "block_length": 4},
                "eval": {"data": str(bad)},
                "tracking": {"experiment": "chat-eval-file"},
            }
        )
    )
    assert main(["run", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "eval.data" in err and "row 1: no assistant turn" in err, err
    assert not (workdir / "runs").exists()
