"""The ``hf`` backbone with tiny random transformers configs (no network): forward shapes,
padding not attended, optional time conditioning, a local pretrained folder (logits cut or
embeddings grown to the task's vocabulary), and the tokenizer's own mask token as the mask."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers

from components import backbones
from components.registry import BuildError
from components.tasks import build

TINY = {
    "modernbert": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                   "max_position_embeddings": 64, "global_attn_every_n_layers": 1},
    "bert": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
             "max_position_embeddings": 64},
}


def tiny(model_type: str, **extra) -> dict:
    return {"kind": "hf", "config": {"model_type": model_type, **TINY[model_type]}, **extra}


@pytest.mark.parametrize("model_type", sorted(TINY))
def test_forward_shapes_and_padding(model_type: str) -> None:
    torch.manual_seed(0)
    model = backbones.build(tiny(model_type), vocab_size=70, seq_len=32).eval()
    zt = torch.randint(0, 70, (3, 20))
    valid = torch.ones(3, 20, dtype=torch.bool)
    valid[:, 12:] = False
    logits = model(zt, torch.rand(3), valid=valid)
    assert logits.shape == (3, 20, 70) and logits.dtype == torch.float32
    # Padding is not attended: changing padded tokens leaves the real positions' logits alone.
    other = zt.clone()
    other[:, 12:] = (other[:, 12:] + 1) % 70
    again = model(other, torch.rand(3), valid=valid)
    assert torch.allclose(logits[:, :12], again[:, :12], atol=1e-5)
    assert not torch.allclose(model(other, torch.rand(3))[:, :12], logits[:, :12], atol=1e-5)
    assert model.flops_per_token(32) > 6 * model.num_parameters()


def test_time_conditioning() -> None:
    torch.manual_seed(0)
    zt = torch.randint(0, 70, (2, 10))
    plain = backbones.build(tiny("modernbert"), vocab_size=70, seq_len=32).eval()
    assert torch.equal(plain(zt, torch.tensor([0.1, 0.1])), plain(zt, torch.tensor([0.9, 0.9])))
    timed = backbones.build(tiny("modernbert", time_conditioning=True), vocab_size=70, seq_len=32).eval()
    with torch.no_grad():
        timed.time_emb.mlp[-1].bias.normal_()  # the zero-mean init would hide small differences
    assert not torch.allclose(timed(zt, torch.tensor([0.1, 0.1])), timed(zt, torch.tensor([0.9, 0.9])))


def test_pretrained_folder_vocab_cut_and_grown(tmp_path: Path) -> None:
    from transformers import AutoConfig, AutoModelForMaskedLM

    config = AutoConfig.for_model("bert", vocab_size=80, **TINY["bert"])
    torch.manual_seed(0)
    reference = AutoModelForMaskedLM.from_config(config).eval()
    reference.save_pretrained(tmp_path)
    zt = torch.randint(0, 70, (2, 10))
    cut = backbones.build({"kind": "hf", "pretrained": str(tmp_path)}, vocab_size=70, seq_len=32).eval()
    with torch.no_grad():
        expected = reference(input_ids=zt).logits[..., :70]
    assert torch.allclose(cut(zt, torch.zeros(2)), expected, atol=1e-5)  # the saved weights, cut to 70
    grown = backbones.build({"kind": "hf", "pretrained": str(tmp_path)}, vocab_size=90, seq_len=32)
    assert grown(torch.randint(0, 90, (2, 10)), torch.zeros(2)).shape == (2, 10, 90)


def test_bad_sections() -> None:
    with pytest.raises(BuildError, match="exactly one of pretrained"):
        backbones.build({"kind": "hf"}, vocab_size=10, seq_len=8)
    with pytest.raises(BuildError, match="model_type"):
        backbones.build({"kind": "hf", "config": {"hidden_size": 8}}, vocab_size=10, seq_len=8)
    with pytest.raises(ValueError, match="max_position_embeddings 64"):
        backbones.build(tiny("bert"), vocab_size=10, seq_len=128)
    with pytest.raises(ValueError, match="cannot build a masked LM"):
        backbones.build({"kind": "hf", "pretrained": "/no/such/folder"}, vocab_size=10, seq_len=8)


def test_the_tokenizers_mask_token_is_the_diffusion_mask(tmp_path: Path) -> None:
    """A BERT-style tokenizer.json with its own [PAD] and [MASK]: the chat task keeps their ids,
    so the diffusion mask is the encoder's mask token; RoBERTa-style names are chosen by the spec."""
    vocab = {"[PAD]": 0, "[UNK]": 1, "[MASK]": 2, "<pad>": 3, "<mask>": 4, "hi": 5, "there": 6}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(["[PAD]", "[MASK]", "<pad>", "<mask>"])
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hi there"}]}] * 4
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    section = {"kind": "chat", "source": {"path": str(data)}, "validation": {"last_documents": 1},
               "tokenizer": {"file": str(path)}, "seq_len": 16}
    bert = build(section, cache_dir=tmp_path / "cache")
    assert (bert.mask_id, bert.tokenizer.pad_id) == (2, 0)
    roberta = build({**section, "mask_token": "<mask>", "pad_token": "<pad>"}, cache_dir=tmp_path / "cache")
    assert (roberta.mask_id, roberta.tokenizer.pad_id) == (4, 3)
    # The added template tokens follow the tokenizer's own ids, which the encoder's embeddings cover.
    assert sorted([bert.tokenizer.start_id, bert.tokenizer.end_id, bert.tokenizer.eos_id]) == [7, 8, 9]
    assert bert.vocab_size == 10
