"""Any Hugging Face masked-LM encoder (ModernBERT, BERT, RoBERTa, ...) as a denoiser, through
``transformers.AutoModelForMaskedLM``.

``pretrained`` loads a hub model or a local folder (``from_pretrained``); ``config`` builds a
randomly initialised one from ``AutoConfig.for_model(model_type, **fields)``. The task's vocabulary
must contain the tokenizer the model was trained with (a chat or text task with
``tokenizer: {hf: <same name>}``, whose added tokens come after the model's): the input
embeddings are grown to ``vocab_size`` when the task has more ids, and logits are cut to
``vocab_size`` when the model has more (ModernBERT pads its vocabulary to a multiple of 64). With ``config``, special-token ids of the
model type's defaults that fall outside the task's vocabulary are unset unless given. The
diffusion mask is the task's ``mask_id``, which for such a tokenizer is the tokenizer's own mask
token (``[MASK]``; set ``task.mask_token: <mask>`` for RoBERTa's).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from components.backbones.attention import attended_keys
from components.backbones.base import Backbone
from components.backbones.registry import BACKBONES
from components.backbones.time_embedding import TimestepEmbedding
from components.registry import SpecModel

SPECIAL_IDS = ("pad_token_id", "bos_token_id", "eos_token_id", "cls_token_id", "sep_token_id")


class HfConfig(SpecModel):
    """``backbone: {kind: hf, pretrained: answerdotai/ModernBERT-base}`` or
    ``{kind: hf, config: {model_type: modernbert, hidden_size: 256, ...}}``."""

    kind: Literal["hf"] = "hf"
    pretrained: str | None = Field(None, min_length=1, description="hub name or local folder for from_pretrained")
    revision: str | None = Field(None, description="hub revision of pretrained (branch, tag or commit)")
    config: dict[str, Any] | None = Field(
        None, description="random initialisation: model_type plus config fields (vocab_size is the task's)"
    )
    time_conditioning: bool = Field(False, description="add an embedding of t to the input embeddings")
    attention: Literal["sdpa", "eager"] = Field("sdpa", description="transformers attn_implementation")

    @model_validator(mode="after")
    def _one_source(self) -> "HfConfig":
        if (self.pretrained is None) == (self.config is None):
            raise ValueError("give exactly one of pretrained (hub name or folder) or config ({model_type: ..., ...})")
        if self.config is not None and not isinstance(self.config.get("model_type"), str):
            raise ValueError("config needs model_type (e.g. modernbert, bert, roberta)")
        if self.revision is not None and self.pretrained is None:
            raise ValueError("revision applies to pretrained only")
        return self


def load_masked_lm(config: HfConfig, vocab_size: int) -> torch.nn.Module:
    """The transformers model a config names; ValueError naming the model when it cannot be
    loaded or is not a masked LM."""
    from transformers import AutoConfig, AutoModelForMaskedLM

    try:
        if config.pretrained is not None:
            return AutoModelForMaskedLM.from_pretrained(
                config.pretrained, revision=config.revision, attn_implementation=config.attention
            )
        fields = {k: v for k, v in config.config.items() if k != "model_type"}  # type: ignore[union-attr]
        model_type = config.config["model_type"]  # type: ignore[index]
        defaults = AutoConfig.for_model(model_type)
        for name in SPECIAL_IDS:  # the model type's defaults index its own vocabulary, not the task's
            if name not in fields and isinstance(getattr(defaults, name, None), int) and getattr(defaults, name) >= vocab_size:
                fields[name] = None
        model_config = AutoConfig.for_model(model_type, **{**fields, "vocab_size": vocab_size})
        return AutoModelForMaskedLM.from_config(model_config, attn_implementation=config.attention)
    except (OSError, ValueError, KeyError, TypeError) as err:
        name = config.pretrained or config.config["model_type"]  # type: ignore[index]
        raise ValueError(f"backbone (hf): cannot build a masked LM from {name!r}: {err}") from err


@BACKBONES.register(HfConfig)
class HfMaskedLM(Backbone):
    """forward(zt: Long[B, L], t: Float[B] in [0, 1], fixed: Bool[B, L] | None,
    valid: Bool[B, L] | None) -> Float32[B, L, vocab_size].

    The encoder reads the input embeddings of ``zt`` (plus a TimestepEmbedding of t with
    ``time_conditioning``) and attends only to valid positions (``attention_mask``)."""

    def __init__(self, config: HfConfig, *, vocab_size: int, seq_len: int):
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        self.seq_len = seq_len
        self.model = load_masked_lm(config, vocab_size)
        if self.model.get_input_embeddings().num_embeddings < vocab_size:
            self.model.resize_token_embeddings(vocab_size)
        hidden = self.model.config.hidden_size
        self.time_emb = TimestepEmbedding(hidden) if config.time_conditioning else None
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is not None and seq_len > limit:
            raise ValueError(f"backbone (hf): task seq_len {seq_len} exceeds the model's max_position_embeddings {limit}")

    def forward(
        self,
        zt: torch.Tensor,
        t: torch.Tensor,
        fixed: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        embeds = self.model.get_input_embeddings()(zt)
        if self.time_emb is not None:
            embeds = embeds + self.time_emb(t)[:, None, :].to(embeds.dtype)
        mask = torch.ones_like(zt) if valid is None else attended_keys(valid).long()
        logits = self.model(inputs_embeds=embeds, attention_mask=mask).logits
        return logits[..., : self.vocab_size].float()

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token: 6 * (non-embedding parameters + hidden * vocab_size, the
        head) + 12 * layers * hidden * seq_len (attention scores)."""
        cfg = self.model.config
        return 6.0 * (self.num_parameters() + cfg.hidden_size * self.vocab_size) + 12.0 * cfg.num_hidden_layers * cfg.hidden_size * seq_len
